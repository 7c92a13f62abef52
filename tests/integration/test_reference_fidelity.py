"""Reference layout fidelity on real ComfyUI: style indices with a stock ReferenceLatent earlier in the
chain, MegaStyle's style at the target's size, and the text cut to the checkpoint's training length."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from comfy_harness.tiny_flux import flux_forward, random_conditioning
from styleexpert_core import save_native
from styleexpert_files import tiny_checkpoint
from test_nodes_inprocess import FakeVAE, inputs, run

pytestmark = pytest.mark.comfyui


def _ids_seen(patched, cond):
    """The img_ids the tiny Flux sees after every post-input patch of `patched`."""
    seen = {}
    probe = patched.clone()
    probe.set_model_post_input_patch(lambda d: seen.setdefault("ids", d["img_ids"].clone()) is not None and d)
    x, ctx, pooled, _ = inputs()
    flux_forward(probe, x, 0.5, ctx, pooled, ref_latents=cond[0][1]["reference_latents"], ref_latents_method="index")
    return seen["ids"][0]


def _stock_reference(cond, image):
    from comfy_extras.nodes_edit_model import ReferenceLatent
    return ReferenceLatent.execute(cond, {"samples": FakeVAE().encode(image)}).result[0]


def test_style_after_a_stock_reference_latent_gets_index_2_and_the_row_shift(pack, tiny_flux):
    content, style = torch.rand(1, 64, 64, 3), torch.rand(1, 64, 64, 3)
    cond = _stock_reference(random_conditioning(0), content)  # the content, added by the core node
    patched, cond = run(pack["StyleExpertReferenceLatents"], model=tiny_flux, conditioning=cond, vae=FakeVAE(),
                        style=style, layout="official").result
    assert len(cond[0][1]["reference_latents"]) == 2
    ids = _ids_seen(patched, cond)
    ref1, ref2 = ids[16:32], ids[32:48]
    assert torch.all(ref1[:, 0] == 1) and sorted(set(ref1[:, 1].tolist())) == [0, 1, 2, 3]
    assert torch.all(ref2[:, 0] == 2) and sorted(set(ref2[:, 1].tolist())) == [64, 65, 66, 67]


def test_official_layout_refuses_a_content_that_would_not_be_reference_1(pack, tiny_flux):
    cond = _stock_reference(random_conditioning(0), torch.rand(1, 64, 64, 3))
    with pytest.raises(Exception, match="content would not be reference 1"):
        run(pack["StyleExpertReferenceLatents"], model=tiny_flux, conditioning=cond, vae=FakeVAE(),
            content=torch.rand(1, 64, 64, 3), style=torch.rand(1, 64, 64, 3), layout="official")
    two = _stock_reference(cond, torch.rand(1, 64, 64, 3))
    with pytest.raises(Exception, match="already holds 2 reference"):
        run(pack["StyleExpertReferenceLatents"], model=tiny_flux, conditioning=two, vae=FakeVAE(),
            style=torch.rand(1, 64, 64, 3), layout="official")


def test_megastyle_style_after_a_stock_reference_moves_the_right_reference(pack, tiny_flux):
    cond = _stock_reference(random_conditioning(0), torch.rand(1, 64, 64, 3))
    patched, cond = run(pack["StyleExpertReferenceLatents"], model=tiny_flux, conditioning=cond, vae=FakeVAE(),
                        style=torch.rand(1, 64, 64, 3), layout="megastyle").result
    ids = _ids_seen(patched, cond)
    other, style = ids[16:32], ids[32:48]
    assert torch.all(other[:, 0] == 1) and sorted(set(other[:, 2].tolist())) == [0, 1, 2, 3]  # untouched
    assert torch.all(style[:, 0] == 0) and sorted(set(style[:, 2].tolist())) == [4, 5, 6, 7]


def test_megastyle_resizes_the_style_to_the_target_or_refuses_clearly(pack, tiny_flux):
    node = pack["StyleExpertReferenceLatents"]
    big_style = torch.rand(1, 96, 128, 3)
    patched, cond = run(node, model=tiny_flux, conditioning=random_conditioning(0), vae=FakeVAE(), style=big_style,
                        layout="megastyle").result
    with pytest.raises(Exception, match="needs the style at the target's size"):
        _ids_seen(patched, cond)
    target = {"samples": torch.zeros(1, 16, 8, 8)}
    out = run(node, model=tiny_flux, conditioning=random_conditioning(0), vae=FakeVAE(), style=big_style,
              layout="megastyle", target=target)
    patched, cond = out.result
    assert cond[0][1]["reference_latents"][0].shape[-2:] == (8, 8)
    assert "resized from 128x96 to 64x64" in out.ui.as_dict()["text"][0]
    ids = _ids_seen(patched, cond)
    assert sorted(set(ids[16:, 2].tolist())) == [4, 5, 6, 7]


@pytest.fixture(scope="module")
def experts_by_text_length(pack, comfy):
    folder = Path(comfy.folder_paths.get_folder_paths("styleexpert")[0])
    folder.mkdir(parents=True, exist_ok=True)
    loaded = {}
    for length in ("128", "unknown"):
        ckpt = tiny_checkpoint()
        ckpt.info["text_length"] = length
        save_native(ckpt, folder / f"text_{length}.safetensors")
        loaded[length] = run(pack["StyleExpertLoader"], ckpt_name=f"text_{length}.safetensors").result[0]
    return loaded


def test_text_is_cut_to_the_checkpoints_training_length(pack, tiny_flux, experts_by_text_length):
    node = pack["StyleExpertReferenceLatents"]
    cond = random_conditioning(0, tokens=256)
    common = dict(model=tiny_flux, conditioning=cond, vae=FakeVAE(), content=torch.rand(1, 64, 64, 3))
    out = run(node, styleexpert=experts_by_text_length["128"], **common)
    assert out.result[1][0][0].shape[1] == 128 and torch.equal(out.result[1][0][0], cond[0][0][:, :128])
    assert "text trimmed to 128 tokens" in out.ui.as_dict()["text"][0]
    kept = run(node, styleexpert=experts_by_text_length["128"], text_length="keep", **common).result[1]
    unknown = run(node, styleexpert=experts_by_text_length["unknown"], **common).result[1]
    unconnected = run(node, **common).result[1]
    assert kept[0][0].shape[1] == unknown[0][0].shape[1] == unconnected[0][0].shape[1] == 256
