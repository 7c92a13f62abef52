"""The artist-facing nodes on real ComfyUI in process: StyleExpert Stylize (the detailed chain in one node),
the style library (Save / Load Style), numbered Bake files, the predictor-only dropdown, and the
tooltips and naming of every node."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from comfy_harness.tiny_flux import random_conditioning, tiny_flux_patcher
from styleexpert_files import tiny_checkpoint, write_tiny_checkpoint
from test_nodes_inprocess import FakeVAE, forward, run

pytestmark = pytest.mark.comfyui
STYLE_IMAGES = torch.rand(2, 56, 56, 3, generator=torch.Generator().manual_seed(21))
CONTENT = torch.rand(1, 64, 48, 3, generator=torch.Generator().manual_seed(22))


def folder(comfy, key: str) -> Path:
    return Path(comfy.folder_paths.get_folder_paths(key)[0])


@pytest.fixture(scope="module")
def ckpt_name(comfy):
    return write_tiny_checkpoint(folder(comfy, "styleexpert"), "artist_nodes.safetensors", seed=4).name


@pytest.fixture(scope="module")
def expert(pack, ckpt_name):
    return run(pack["StyleExpertLoader"], ckpt_name=ckpt_name).result[0]


@pytest.fixture(scope="module")
def style(pack, expert, tiny_siglip):
    return run(pack["StyleExpertEncodeStyle"], styleexpert=expert, clip_vision=tiny_siglip, images=STYLE_IMAGES,
               mode="mean").result[0]


def test_every_node_is_named_styleexpert_and_every_socket_has_a_tooltip(pack):
    missing = []
    for node_id, node in sorted(pack.items()):
        schema = node.GET_SCHEMA()
        assert node_id.startswith("StyleExpert") and schema.display_name.startswith("StyleExpert "), node_id
        missing += [f"{node_id} input {i.id}" for i in schema.inputs if not (i.tooltip or "").strip()]
        missing += [f"{node_id} output {o.display_name or o.id}" for o in schema.outputs
                    if not (o.tooltip or "").strip()]
    assert missing == []
    assert {"StyleExpertStylize", "StyleExpertSaveStyle", "StyleExpertLoadStyle"} <= set(pack)
    assert pack["StyleExpertStylize"].GET_SCHEMA().display_name == "StyleExpert Stylize"


def test_stylize_equals_the_detailed_chain(pack, expert, style, ckpt_name, tiny_siglip):
    """Load -> Encode (mean) -> Apply (merge) -> Reference Latents (official) gives what Stylize gives."""
    base, vae = tiny_flux_patcher(), FakeVAE()
    cond = random_conditioning(3)
    model, positive, latent = run(pack["StyleExpertStylize"], model=base, clip_vision=tiny_siglip, vae=vae,
                                  conditioning=cond, content=CONTENT, style=STYLE_IMAGES, ckpt_name=ckpt_name,
                                  strength=0.8).result
    applied = run(pack["StyleExpertApply"], model=base, styleexpert=expert, style=style, mode="merge",
                  strength=0.8).result[0]
    detailed, detailed_positive = run(pack["StyleExpertReferenceLatents"], model=applied, conditioning=cond, vae=vae,
                                      content=CONTENT, layout="official", styleexpert=expert).result
    (context, options), = positive
    (expected_context, expected_options), = detailed_positive
    assert torch.equal(context, expected_context)
    refs = options["reference_latents"]
    assert len(refs) == 1 and torch.equal(refs[0], expected_options["reference_latents"][0])
    assert options["reference_latents_method"] == "index"
    # A latent of the content's size (64x48 px -> 8x6), ready for the stock sampler.
    assert latent["samples"].shape == (1, 16, 8, 6) and not latent["samples"].any()
    torch.testing.assert_close(forward(model), forward(detailed), rtol=1e-5, atol=1e-6)
    assert (forward(model) - forward(base)).abs().max() > 1e-3


@pytest.mark.bad_input
@pytest.mark.parametrize("case", ["missing_file", "no_projector", "references_already", "empty_style", "tiny_content"])
def test_stylize_refuses_bad_input_clearly(pack, comfy, ckpt_name, tiny_siglip, case):
    node = pack["StyleExpertStylize"]
    inputs = dict(model=tiny_flux_patcher(), clip_vision=tiny_siglip, vae=FakeVAE(),
                  conditioning=random_conditioning(3), content=CONTENT, style=STYLE_IMAGES, ckpt_name=ckpt_name,
                  strength=1.0)
    if case == "missing_file":
        assert "is not in models/styleexpert" in node.validate_inputs(ckpt_name="gone.safetensors")
        return
    if case == "no_projector":
        from safetensors.torch import save_file
        ckpt = tiny_checkpoint(seed=5)
        official = ("loraA", "loraB", "shared_A", "shared_B", "cond_gate.weight")
        moe = {f"transformer.{m}.lora_layer.{n}": t.clone() for m, layer in ckpt.layers.items()
               for n, t in zip(official, layer.as_dict().values())}
        save_file(moe, str(folder(comfy, "styleexpert") / "stylize_moe_only.safetensors"))
        inputs["ckpt_name"], match = "stylize_moe_only.safetensors", "has no style projector.*convert-official"
    elif case == "references_already":
        inputs["conditioning"] = random_conditioning(3, reference_latents=[torch.zeros(1, 16, 8, 8)])
        match = "already holds 1 reference latent"
    elif case == "empty_style":
        inputs["style"], match = torch.zeros(0, 56, 56, 3), "no style image"
    else:
        inputs["content"], match = torch.rand(1, 8, 8, 3), "content image is empty or smaller than 16 px"
    with pytest.raises(Exception, match=match):
        run(node, **inputs)


def test_saved_style_loads_back_with_its_thumbnail(pack, comfy, expert, style):
    saved_a = run(pack["StyleExpertSaveStyle"], style=style, images=STYLE_IMAGES, name="ink wash")
    saved_b = run(pack["StyleExpertSaveStyle"], style=style, images=STYLE_IMAGES[:1], name="ink wash")
    names = [saved_a.result[0], saved_b.result[0]]
    assert names == ["ink wash_00001_.safetensors", "ink wash_00002_.safetensors"]  # a new file each time
    assert saved_a.ui["images"] and "saved models/styleexpert_styles/ink wash_00001_" in saved_a.ui["text"][0]
    listed = comfy.folder_paths.get_filename_list("styleexpert_styles")
    assert set(names) <= set(listed) and not set(names) & set(comfy.folder_paths.get_filename_list("styleexpert"))
    options = pack["StyleExpertLoadStyle"].GET_SCHEMA().inputs[0].options
    assert set(names) <= set(options)  # the dropdown lists them without a restart
    loaded = run(pack["StyleExpertLoadStyle"], style_name=names[0])
    latent = loaded.result[0]
    assert torch.equal(latent.values, style.values) and latent.encoder_id == style.encoder_id
    image = loaded.ui.as_dict()["images"][0]
    thumb = Path(comfy.folder_paths.get_temp_directory()) / image["subfolder"] / image["filename"]
    assert thumb.is_file() and image["type"] == "temp"
    base = tiny_flux_patcher()
    same = [forward(run(pack["StyleExpertApply"], model=base, styleexpert=expert, style=s).result[0])
            for s in (style, latent)]
    torch.testing.assert_close(same[0], same[1], rtol=0, atol=0)


@pytest.mark.bad_input
def test_style_library_refuses_bad_input_clearly(pack, comfy, style):
    with pytest.raises(Exception, match="not a usable file name"):
        run(pack["StyleExpertSaveStyle"], style=style, images=STYLE_IMAGES, name="../escape")
    with pytest.raises(Exception, match="empty or not RGB"):
        run(pack["StyleExpertSaveStyle"], style=style, images=torch.zeros(0, 8, 8, 3), name="empty")
    assert "save a style with StyleExpert Save Style" in pack["StyleExpertLoadStyle"].validate_inputs(
        style_name="missing.safetensors")
    from safetensors.torch import save_file
    save_file({"other": torch.zeros(2)}, str(folder(comfy, "styleexpert_styles") / "not_a_style.safetensors"))
    with pytest.raises(Exception, match="not a saved StyleExpert style"):
        run(pack["StyleExpertLoadStyle"], style_name="not_a_style.safetensors")


def test_bake_numbers_its_files_and_the_lora_list_shows_them_at_once(pack, comfy, expert, style):
    loras = folder(comfy, "loras")
    before = set(comfy.folder_paths.get_filename_list("loras"))
    first = run(pack["StyleExpertBakeLoRA"], styleexpert=expert, style=style, filename="numbered bake",
                strength=1.0).result[0]
    first_bytes = (loras / first).read_bytes()
    second = run(pack["StyleExpertBakeLoRA"], styleexpert=expert, style=style, filename="numbered bake",
                 strength=0.5).result[0]  # another strength: a second file, the first untouched
    assert [first, second] == ["numbered bake_00001_.safetensors", "numbered bake_00002_.safetensors"]
    assert (loras / first).read_bytes() == first_bytes
    assert set(comfy.folder_paths.get_filename_list("loras")) - before == {first, second}
    assert not [p for p in loras.iterdir() if p.name.startswith(".")]  # no temp file left behind


def test_predictor_dropdown_lists_only_predictors(pack, comfy, ckpt_name):
    from safetensors.torch import save_file
    mlp = {"layers.0.weight": torch.zeros(8, 32), "layers.0.bias": torch.zeros(8),
           "layers.2.weight": torch.zeros(1, 8), "layers.2.bias": torch.zeros(1)}
    save_file(mlp, str(folder(comfy, "styleexpert") / "dropdown_predictor.safetensors"))
    spec = next(i for i in pack["StyleExpertMetrics"].GET_SCHEMA().inputs if i.id == "aesthetic_predictor")
    assert "dropdown_predictor.safetensors" in spec.options and spec.options[0] == "(none)"
    assert ckpt_name not in spec.options
    assert ckpt_name in comfy.folder_paths.get_filename_list("styleexpert")
