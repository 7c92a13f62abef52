"""The pack's nodes on real ComfyUI, in process, with a tiny Flux and a tiny SigLIP."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from comfy_harness.tiny_flux import flux_forward, model_transformer_options, random_conditioning, tiny_flux_patcher
from styleexpert_core import Strengths, fold_checkpoint, load_native
from styleexpert_core.keys import block_kind, diffusers_to_bfl
from styleexpert_files import TINY_FLUX, write_tiny_checkpoint

pytestmark = pytest.mark.comfyui
NODE_IDS = {"StyleExpertLoader", "StyleExpertEncodeStyle", "StyleExpertApply", "StyleExpertReferenceLatents",
            "StyleExpertRoutingPreview", "StyleExpertBlendStyles", "StyleExpertMetrics", "StyleExpertBakeLoRA",
            "StyleExpertStylize", "StyleExpertSaveStyle", "StyleExpertLoadStyle"}


def run(node_class, **inputs):
    """Execute a V3 node the way the executor does (class clone with hidden inputs)."""
    from comfy_api.latest import io
    clone = node_class.PREPARE_CLASS_CLONE({io.Hidden.unique_id: "1"})
    return clone.execute(**inputs)


@pytest.fixture(scope="module")
def ckpt_file(comfy):
    folder = Path(comfy.folder_paths.get_folder_paths("styleexpert")[0])
    return write_tiny_checkpoint(folder)


@pytest.fixture(scope="module")
def expert(pack, ckpt_file):
    return run(pack["StyleExpertLoader"], ckpt_name=ckpt_file.name).result[0]


@pytest.fixture(scope="module")
def styles(pack, expert, tiny_siglip):
    g = torch.Generator().manual_seed(5)
    images = torch.rand(2, 56, 56, 3, generator=g)
    return run(pack["StyleExpertEncodeStyle"], styleexpert=expert, clip_vision=tiny_siglip, images=images,
               mode="per image").result[0]


def inputs(seed=1, batch=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 16, 8, 8, generator=g)
    ref = torch.randn(1, 16, 8, 8, generator=g).expand(batch, -1, -1, -1)
    cond = random_conditioning(seed, batch=batch)
    return x, cond[0][0], cond[0][1]["pooled_output"], ref


def forward(model, batch=1, **kw):
    x, ctx, pooled, ref = inputs(batch=batch)
    return flux_forward(model, x, 0.7, ctx, pooled, ref_latents=[ref], ref_latents_method="index", **kw)


def apply(pack, model, expert, style, mode="merge", **kw):
    return run(pack["StyleExpertApply"], model=model, styleexpert=expert, style=style, mode=mode, **kw).result[0]


def single(style, i):
    return type(style)(style.values[i:i + 1], style.encoder_id)


def test_pack_registers_every_node(pack):
    assert NODE_IDS <= set(pack)


def test_loader_summary_and_encode_shapes(pack, ckpt_file, expert, styles):
    out = run(pack["StyleExpertLoader"], ckpt_name=ckpt_file.name)
    assert "6 experts x rank 4, top_k 2 + shared" in out.ui.as_dict()["text"][0]
    assert styles.values.shape == (2, 48) and torch.isfinite(styles.values).all()
    assert not torch.allclose(styles.values[0], styles.values[1])


def test_merge_changes_output_and_equals_dynamic(pack, expert, styles):
    base = tiny_flux_patcher()
    style = single(styles, 0)
    plain = forward(base)
    merged = forward(apply(pack, base, expert, style, "merge"))
    dynamic = forward(apply(pack, base, expert, style, "dynamic"))
    assert (merged - plain).abs().max() > 1e-3
    torch.testing.assert_close(merged, dynamic, rtol=1e-4, atol=1e-5)


def test_merge_equals_core_reference_forward(pack, expert, styles, ckpt_file):
    """Weights edited by hand from the core fold and the key table give the same forward."""
    base = tiny_flux_patcher()
    style = single(styles, 1)
    merged = forward(apply(pack, base, expert, style, "merge", strength=0.8, double_blocks=0.5))
    reference = tiny_flux_patcher()
    folded = fold_checkpoint(load_native(ckpt_file), style.values, strengths=Strengths(total=0.8))
    dm = reference.model.diffusion_model
    with torch.no_grad():
        for module, (up, down) in folded.items():
            t = diffusers_to_bfl(TINY_FLUX)[module]
            w = dm.get_submodule(t.module).weight
            factor = 0.5 if block_kind(module) == "double" else 1.0
            rows = slice(t.offset, t.offset + t.length) if t.offset is not None else slice(None)
            w[rows] += factor * (up @ down)
    torch.testing.assert_close(merged, forward(reference), rtol=1e-4, atol=1e-5)


def test_dynamic_routes_each_sample_by_its_own_style(pack, expert, styles):
    base = tiny_flux_patcher()
    mixed = forward(apply(pack, base, expert, styles, "dynamic"), batch=2)
    for i in range(2):
        alone = forward(apply(pack, base, expert, single(styles, i), "merge"), batch=2)
        torch.testing.assert_close(mixed[i], alone[i], rtol=1e-4, atol=1e-5)


def test_lowvram_path_equals_full_merge(pack, expert, styles, comfy):
    import comfy.model_management as mm
    style = single(styles, 0)
    full = forward(apply(pack, tiny_flux_patcher(), expert, style))
    mm.unload_all_models()
    model = apply(pack, tiny_flux_patcher(), expert, style)
    model.load(torch.device("cpu"), lowvram_model_memory=1)  # every module stays on the lowvram path
    lowvram_modules = [m for m in model.model.modules() if getattr(m, "weight_function", None)]
    assert lowvram_modules, "nothing took the lowvram path"
    x, ctx, pooled, ref = inputs()
    options = model_transformer_options(model)
    with torch.no_grad():
        out = model.model.apply_model(x, torch.full((1,), 0.7), c_crossattn=ctx, y=pooled,
                                      guidance=torch.full((1,), 3.5), transformer_options=options,
                                      ref_latents=[model.model.process_latent_in(ref)], ref_latents_method="index")
    model.unpatch_model()
    torch.testing.assert_close(out, full, rtol=1e-4, atol=1e-5)


def test_unpatch_restores_every_weight_after_100_cycles(pack, expert, styles):
    base = tiny_flux_patcher()
    original = {k: v.clone() for k, v in base.model.state_dict().items()}
    for i in range(100):
        model = apply(pack, base, expert, single(styles, i % 2), strength=1.0 + i / 100)
        model.patch_model()
        if i == 0:
            changed = [k for k, v in base.model.state_dict().items() if not torch.equal(v, original[k])]
            assert len(changed) > 10
        model.unpatch_model()
    for k, v in base.model.state_dict().items():
        assert torch.equal(v, original[k]), k


def test_baked_lora_through_stock_loader_equals_apply(pack, expert, styles, ckpt_file, comfy, tmp_path):
    from safetensors.torch import save_file
    from styleexpert_core.cli import main
    style = single(styles, 0)
    latent_file = tmp_path / "style.safetensors"
    save_file({"style_latent": style.values}, str(latent_file))
    lora = Path(comfy.folder_paths.get_folder_paths("loras")[0]) / "baked_tiny.safetensors"
    lora.parent.mkdir(parents=True, exist_ok=True)
    assert main(["bake", "--checkpoint", str(ckpt_file), "--style-latent", str(latent_file),
                 "-o", str(lora), "--force"]) == 0
    base = tiny_flux_patcher()
    stock = comfy.nodes.LoraLoaderModelOnly().load_lora_model_only(base, lora.name, 1.0)[0]
    assert sum(len(p) for p in stock.patches.values()) == len(expert.checkpoint.layers)  # fused layers share keys
    torch.testing.assert_close(forward(stock), forward(apply(pack, base, expert, style)), rtol=1e-4, atol=1e-5)


def test_clones_share_expert_weights(pack, expert, styles):
    model = apply(pack, tiny_flux_patcher(), expert, styles, "dynamic")
    clone = model.clone().clone()
    bank = expert.bank()
    for m in (model, clone):
        (extra,) = m.get_additional_models_with_key("styleexpert")
        assert extra.model is bank
        ptrs = {p.data_ptr() for p in extra.model.parameters()}
        assert ptrs == {t.data_ptr() for layer in expert.checkpoint.layers.values() for t in layer.as_dict().values()}
    wrappers = clone.wrappers["diffusion_model"]["styleexpert"]
    assert wrappers[0] is model.wrappers["diffusion_model"]["styleexpert"][0]


def test_official_reference_layout_ids(pack, tiny_flux, comfy):
    seen = {}
    model = tiny_flux
    vae = FakeVAE()
    content, style = torch.rand(1, 64, 64, 3), torch.rand(1, 64, 64, 3)
    cond = random_conditioning(0)
    patched, cond = run(pack["StyleExpertReferenceLatents"], model=model, conditioning=cond, vae=vae,
                        content=content, style=style, layout="official").result
    assert cond[0][1]["reference_latents_method"] == "index" and len(cond[0][1]["reference_latents"]) == 2
    patched.set_model_post_input_patch(lambda d: seen.setdefault("ids", d["img_ids"].clone()) is not None and d)
    x, ctx, pooled, _ = inputs()
    refs = cond[0][1]["reference_latents"]
    flux_forward(patched, x, 0.5, ctx, pooled, ref_latents=refs, ref_latents_method="index")
    ids = seen["ids"][0]
    noise, ref1, ref2 = ids[:16], ids[16:32], ids[32:48]
    assert torch.all(noise[:, 0] == 0) and torch.all(ref1[:, 0] == 1) and torch.all(ref2[:, 0] == 2)
    assert sorted(set(ref1[:, 1].tolist())) == [0, 1, 2, 3]
    assert sorted(set(ref2[:, 1].tolist())) == [64, 65, 66, 67]
    assert torch.equal(ref1[:, 2], ref2[:, 2])


def test_megastyle_layout_ids(pack, tiny_flux):
    seen = {}
    patched, cond = run(pack["StyleExpertReferenceLatents"], model=tiny_flux, conditioning=random_conditioning(0),
                        vae=FakeVAE(), style=torch.rand(1, 64, 64, 3), layout="megastyle").result
    patched.set_model_post_input_patch(lambda d: seen.setdefault("ids", d["img_ids"].clone()) is not None and d)
    x, ctx, pooled, _ = inputs()
    flux_forward(patched, x, 0.5, ctx, pooled, ref_latents=cond[0][1]["reference_latents"], ref_latents_method="index")
    ids = seen["ids"][0]
    style = ids[16:]
    assert torch.all(style[:, 0] == 0)
    assert sorted(set(style[:, 2].tolist())) == [4, 5, 6, 7]  # right of the 4-token-wide target
    assert sorted(set(style[:, 1].tolist())) == [0, 1, 2, 3]


class FakeVAE:
    """Stands in for a Flux VAE: 8x downscale to 16 channels, deterministic."""

    def encode(self, image):
        pooled = torch.nn.functional.avg_pool2d(image.movedim(-1, 1), 8)
        return pooled.repeat(1, 6, 1, 1)[:, :16]


def test_routing_preview_blend_and_metrics(pack, expert, styles, tiny_siglip):
    out = run(pack["StyleExpertRoutingPreview"], styleexpert=expert, style=styles, index=1)
    image, text = out.result
    layers = len(expert.checkpoint.layers)
    assert image.shape[0] == 1 and image.shape[2] >= 560 and image.shape[1] >= 4 * 20  # 2 double + 2 single blocks
    assert text.count("\n") == layers + 1 and "most used experts" in text
    assert text.startswith("style fingerprint | double: #") and out.ui["text"][0] == text.split("\n")[0]
    blended = run(pack["StyleExpertBlendStyles"], style_a=single(styles, 0), weight_a=3.0,
                  style_b=single(styles, 1), weight_b=1.0).result[0]
    torch.testing.assert_close(blended.values, 0.75 * styles.values[:1] + 0.25 * styles.values[1:])
    imgs = torch.rand(2, 56, 56, 3, generator=torch.Generator().manual_seed(3))
    res = run(pack["StyleExpertMetrics"], styleexpert=expert, clip_vision=tiny_siglip, output=imgs,
              style=imgs[:1], content=imgs[1:])
    s, c, sheet, _ = res.result
    assert -1.0 <= s <= 1.0 and -1.0 <= c <= 1.0 and sheet.shape[-1] == 3
    style_only = run(pack["StyleExpertMetrics"], styleexpert=expert, clip_vision=tiny_siglip, output=imgs,
                     style=imgs[:1]).result[2]
    assert sheet.shape[1] > style_only.shape[1]  # one more score: one more row of text, and its meaning
    same = run(pack["StyleExpertMetrics"], styleexpert=expert, clip_vision=tiny_siglip, output=imgs[:1],
               style=imgs[:1], content=imgs[:1]).result
    assert same[0] == pytest.approx(1.0, abs=1e-5) and same[1] == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("case", ["nan", "not_flux_width", "empty_image", "not_siglip", "two_styles_merge",
                                  "cond_dim_mismatch", "other_projector", "not_flux"])
def test_bad_inputs_raise_clear_errors(pack, expert, styles, tiny_siglip, case, comfy):
    from styleexpert_core.routing import check_style_latent  # noqa: F401  (same message source)
    if case == "nan":
        bad = type(styles)(torch.full((1, 48), float("nan")), styles.encoder_id)
        with pytest.raises(Exception, match="NaN"):
            apply(pack, tiny_flux_patcher(), expert, bad)
    elif case == "not_flux_width":
        with pytest.raises(Exception, match="different model width|does not have"):
            apply(pack, tiny_flux_patcher(hidden_size=96, num_heads=2, axes_dim=(16, 16, 16)), expert,
                  single(styles, 0))
    elif case == "empty_image":
        with pytest.raises(Exception, match="no style image"):
            run(pack["StyleExpertEncodeStyle"], styleexpert=expert, clip_vision=tiny_siglip,
                images=torch.zeros(0, 56, 56, 3))
    elif case == "not_siglip":
        fake = copy.copy(tiny_siglip)
        fake.return_all_hidden_states = False
        with pytest.raises(Exception, match="not SigLIP"):
            run(pack["StyleExpertEncodeStyle"], styleexpert=expert, clip_vision=fake, images=torch.rand(1, 56, 56, 3))
    elif case == "not_flux":
        import comfy.model_patcher
        other = torch.nn.Module()
        other.diffusion_model = torch.nn.Linear(4, 4)  # e.g. an SDXL/UNet-like MODEL
        patcher = comfy.model_patcher.ModelPatcher(other, load_device=torch.device("cpu"),
                                                   offload_device=torch.device("cpu"))
        with pytest.raises(Exception, match="trained for FLUX.1 Kontext"):
            apply(pack, patcher, expert, single(styles, 0))
    elif case == "cond_dim_mismatch":
        wrong = type(styles)(torch.zeros(1, 3072), None)
        with pytest.raises(Exception, match="routes on 48-d latents"):
            apply(pack, tiny_flux_patcher(), expert, wrong)
    elif case == "other_projector":
        foreign = type(styles)(styles.values[:1], "0123456789ab")
        with pytest.raises(Exception, match="different style projector"):
            apply(pack, tiny_flux_patcher(), expert, foreign)
    else:
        with pytest.raises(Exception, match="exactly one style latent"):
            apply(pack, tiny_flux_patcher(), expert, styles, "merge")


def test_bake_node_writes_a_lora_the_stock_loader_reads(pack, expert, styles, comfy):
    style = single(styles, 1)
    name = run(pack["StyleExpertBakeLoRA"], styleexpert=expert, style=style, filename="bake node test",
               strength=0.7, overwrite=True).result[0]
    assert name == "bake node test.safetensors"  # overwrite: exactly that name
    with pytest.raises(Exception, match="not a usable file name"):
        run(pack["StyleExpertBakeLoRA"], styleexpert=expert, style=style, filename="../escape")
    base = tiny_flux_patcher()
    stock = comfy.nodes.LoraLoaderModelOnly().load_lora_model_only(base, name, 1.0)[0]
    torch.testing.assert_close(forward(stock), forward(apply(pack, base, expert, style, strength=0.7)),
                               rtol=1e-4, atol=1e-5)


def test_metrics_optional_aesthetic_scorer(pack, expert, tiny_siglip, comfy):
    from safetensors.torch import save_file
    g = torch.Generator().manual_seed(9)
    mlp = {"layers.0.weight": torch.randn(8, 32, generator=g), "layers.0.bias": torch.randn(8, generator=g),
           "layers.2.weight": torch.randn(1, 8, generator=g), "layers.2.bias": torch.randn(1, generator=g)}
    folder = Path(comfy.folder_paths.get_folder_paths("styleexpert")[0])
    save_file(mlp, str(folder / "aesthetic_tiny.safetensors"))
    imgs = torch.rand(2, 56, 56, 3, generator=g)
    common = dict(styleexpert=expert, clip_vision=tiny_siglip, output=imgs, style=imgs[:1])
    out = run(pack["StyleExpertMetrics"], **common, aesthetic_clip_vision=tiny_siglip,
              aesthetic_predictor="aesthetic_tiny.safetensors")
    with torch.inference_mode():
        embeds = tiny_siglip.encode_image(imgs, crop=True)["image_embeds"].float().mean(1)
    embeds = torch.nn.functional.normalize(embeds, dim=-1)
    expected = ((embeds @ mlp["layers.0.weight"].t() + mlp["layers.0.bias"]) @ mlp["layers.2.weight"].t()
                + mlp["layers.2.bias"]).mean()
    assert out.result[3] == pytest.approx(float(expected), rel=1e-4)
    assert "aesthetic" in out.ui["text"][0]
    assert run(pack["StyleExpertMetrics"], **common).result[3] == 0.0  # not asked for: not computed
    with pytest.raises(Exception, match="needs its CLIP vision model"):
        run(pack["StyleExpertMetrics"], **common, aesthetic_predictor="aesthetic_tiny.safetensors")


def test_loader_reads_the_official_pair(pack, comfy):
    """The official release: an MoE file (`transformer.` prefix, lora_layer keys) + a projector file."""
    from safetensors.torch import save_file
    from styleexpert_files import tiny_checkpoint
    ckpt = tiny_checkpoint(seed=3)
    names = {"A": "loraA", "B": "loraB", "shared_A": "shared_A", "shared_B": "shared_B", "gate": "cond_gate.weight"}
    moe = {f"transformer.{m}.lora_layer.{names[n]}": t.clone() for m, layer in ckpt.layers.items()
           for n, t in layer.as_dict().items()}
    folder = Path(comfy.folder_paths.get_folder_paths("styleexpert")[0])
    save_file(moe, str(folder / "official_moe.safetensors"))
    torch.save({"model_state_dict": {f"proj_model.{k}": v for k, v in ckpt.projector.items()}},
               folder / "official_encoder.pt")
    out = run(pack["StyleExpertLoader"], ckpt_name="official_moe.safetensors", projector_name="official_encoder.pt")
    expert = out.result[0]
    assert expert.checkpoint.info["source"] == "official" and expert.checkpoint.config.alignment == "official"
    assert set(expert.checkpoint.layers) == set(ckpt.layers)
    assert expert.checkpoint.projector_config.to_dict() == ckpt.projector_config.to_dict()  # pack has its own core copy
    alone = run(pack["StyleExpertLoader"], ckpt_name="official_moe.safetensors").result[0]
    assert alone.checkpoint.projector is None  # experts only: encoding a style will say what is missing


def test_dynamic_sampling_with_cfg_matches_merge_per_sample(pack, expert, styles):
    """Real sampling with CFG (cond and uncond chunks in one call): sample i follows style i."""
    from comfy_harness.tiny_flux import flux_sample
    latent = torch.zeros(2, 16, 8, 8)
    positive = random_conditioning(4)
    base = tiny_flux_patcher()
    mixed = flux_sample(apply(pack, base, expert, styles, "dynamic"), latent, positive, steps=2, cfg=2.5, seed=7)
    for i in range(2):
        alone = flux_sample(apply(pack, base, expert, single(styles, i), "merge"), latent, positive, steps=2,
                            cfg=2.5, seed=7)
        torch.testing.assert_close(mixed[i], alone[i], rtol=1e-4, atol=1e-4)
    assert (mixed[0] - mixed[1]).abs().max() > 1e-4
