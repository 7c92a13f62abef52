"""Cross-stack parity: what training computes is what ComfyUI renders.

One Flux with the real block structure (1 double + 1 single block at FLUX.1's width: both stock
BFL loaders fix the width to 3072) is written as a BFL single file, loaded by ComfyUI's stock
diffusion-model loader and by training's `load_transformer` (diffusers' from_single_file). The same
experts go in on both sides, training's injection (core `inject_moe`) against the pack's Apply in
merge and dynamic mode, and both get the same noisy latent, text, timestep, guidance and Kontext
references, in the official layout (with and without style tokens) and MegaStyle's.
"""

from __future__ import annotations

import json

import pytest
import torch

from comfy_harness.tiny_flux import flux_forward, flux_sample
from comfy_harness.tiny_model_files import cached_model_file, write_flux_unet_file
from styleexpert_core import FluxShape, MoEConfig, StyleExpertCheckpoint, inject_moe
from styleexpert_core.keys import attention_projection_modules
from styleexpert_core.moe_lora import ExpertTensors
from test_nodes_inprocess import FakeVAE, run
from training.stage2.flow_matching import KontextBatch, kontext_velocity
from training.stage2.flux import BUNDLED_CONFIG_DIR, image_ids, load_transformer, pack_latents

pytestmark = [pytest.mark.comfyui, pytest.mark.slow]

SHAPE = FluxShape(3072, 1, 1)
MODULES = attention_projection_modules(SHAPE) + [
    "transformer_blocks.0.norm1.linear", "transformer_blocks.0.ff_context.net.2", "single_transformer_blocks.0.proj_mlp",
    "single_transformer_blocks.0.proj_out", "norm_out.linear", "proj_out"]  # plain, fused-slice and swapped targets
CONFIG = MoEConfig(num_experts=4, rank=4, top_k=2, cond_dim=24, alignment="official", routing_precision="bf16")
SIGMA, GUIDANCE = 0.7, 3.5
LAYOUTS = ["official", "official+style", "megastyle"]


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def unpack_latents(tokens: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Inverse of training's pack_latents: [B, (h/2)(w/2), 4C] -> [B, C, h, w]."""
    b, _, c4 = tokens.shape
    return tokens.view(b, h // 2, w // 2, c4 // 4, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(b, c4 // 4, h, w)


@pytest.fixture(scope="module")
def bfl_file():
    return cached_model_file("flux_dev_width_d1s1_bf16_seed0.safetensors",
                             lambda p: write_flux_unet_file(p, dtype=torch.bfloat16))


@pytest.fixture(scope="module")
def comfy_flux(comfy, bfl_file):
    import comfy.sd
    return comfy.sd.load_diffusion_model(str(bfl_file), model_options={"dtype": torch.float32})  # UNETLoader's call


@pytest.fixture(scope="module")
def inputs():
    g = torch.Generator().manual_seed(0)
    return dict(x=torch.randn(1, 16, 8, 8, generator=g), context=torch.randn(1, 8, 4096, generator=g),
                pooled=torch.randn(1, 768, generator=g), content=torch.rand(1, 64, 64, 3, generator=g),
                style=torch.rand(1, 64, 64, 3, generator=g), style_latent=torch.randn(1, CONFIG.cond_dim, generator=g))


@pytest.fixture(scope="module")
def trained(bfl_file, tmp_path_factory, inputs):
    """(training's model with the experts injected, the checkpoint holding the same experts)."""
    config = json.loads((BUNDLED_CONFIG_DIR / "config.json").read_text()) | {"num_layers": 1, "num_single_layers": 1}
    config_dir = tmp_path_factory.mktemp("flux_d1s1")
    (config_dir / "config.json").write_text(json.dumps(config))
    model = load_transformer(str(bfl_file), dtype=torch.float32, config_dir=config_dir).eval()
    context, wrapped = inject_moe(model, MODULES, CONFIG, dtype=torch.float32)
    g = torch.Generator().manual_seed(1)
    layers = {}
    for name, layer in wrapped.items():
        i, o, e, r = layer.base.in_features, layer.base.out_features, CONFIG.num_experts, CONFIG.rank
        layers[name] = ExpertTensors(torch.randn(e, r, i, generator=g) / r, torch.randn(e, o, r, generator=g) * 0.02,
                                     torch.randn(1, r, i, generator=g) / r, torch.randn(1, o, r, generator=g) * 0.02,
                                     torch.randn(e, CONFIG.cond_dim, generator=g))
        layer.moe.load_tensors(layers[name])
    context.set(inputs["style_latent"])
    return model, StyleExpertCheckpoint(CONFIG, layers)


def comfy_model(pack, comfy_flux, trained, inputs, layout: str, mode: str | None):
    """(ComfyUI MODEL through Reference Latents and Apply, its conditioning)."""
    payloads = __import__(pack["StyleExpertLoader"].__module__.rsplit(".", 1)[0] + ".payloads",
                          fromlist=["LoadedStyleExpert"])
    refs = {"official": dict(content=inputs["content"]), "megastyle": dict(style=inputs["style"]),
            "official+style": dict(content=inputs["content"], style=inputs["style"])}[layout]
    cond = [[inputs["context"], {"pooled_output": inputs["pooled"], "guidance": GUIDANCE}]]
    model, cond = run(pack["StyleExpertReferenceLatents"], model=comfy_flux, conditioning=cond, vae=FakeVAE(),
                      layout=layout.removesuffix("+style"), **refs).result
    if mode is not None:
        expert = payloads.LoadedStyleExpert(trained[1], "parity")
        style = payloads.StyleLatent(inputs["style_latent"], None)
        model = run(pack["StyleExpertApply"], model=model, styleexpert=expert, style=style, mode=mode).result[0]
    return model, cond


def comfy_velocity(model, cond, x, sigma):
    refs = cond[0][1]["reference_latents"]
    denoised = flux_forward(model, x, sigma, cond[0][0], cond[0][1]["pooled_output"], guidance=GUIDANCE,
                            ref_latents=refs, ref_latents_method="index")
    return (x - denoised) / sigma


def training_velocity(model, comfy_base, inputs, layout: str, x, sigma):
    """Training's own model call (kontext_velocity) for the official layout; MegaStyle's ids by hand."""
    latent_in = comfy_base.model.process_latent_in  # the Flux latent scale and shift both sides use
    vae = FakeVAE()
    content, style = (latent_in(vae.encode(inputs[k])) for k in ("content", "style"))
    sigma_t = torch.tensor([sigma])
    with torch.no_grad():
        if layout != "megastyle":
            batch = KontextBatch(target=x, content=content, text_seq=inputs["context"], pooled=inputs["pooled"],
                                 style_latent=inputs["style_latent"], style_ref=style if "+style" in layout else None)
            v = kontext_velocity(model, pack_latents(x), batch, sigma_t, guidance=GUIDANCE)
        else:  # the style at index 0, right of the 4-token-wide target
            style_ids = image_ids(8, 8)
            style_ids[:, 2] += 4
            v = model(hidden_states=torch.cat([pack_latents(x), pack_latents(style)], 1),
                      encoder_hidden_states=inputs["context"], pooled_projections=inputs["pooled"], timestep=sigma_t,
                      img_ids=torch.cat([image_ids(8, 8), style_ids]), txt_ids=torch.zeros(8, 3),
                      guidance=torch.tensor([GUIDANCE]), return_dict=False)[0][:, :16]
    return unpack_latents(v, 8, 8)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_model_outputs_agree_across_stacks(pack, comfy_flux, trained, inputs, layout):
    x = inputs["x"]
    ours = training_velocity(trained[0], comfy_flux, inputs, layout, x, SIGMA)
    plain = comfy_velocity(*comfy_model(pack, comfy_flux, trained, inputs, layout, None), x, SIGMA)
    effect = rel_err(plain, ours)
    assert effect > 1e-2  # the experts matter at this tolerance
    for mode in ("merge", "dynamic"):
        theirs = comfy_velocity(*comfy_model(pack, comfy_flux, trained, inputs, layout, mode), x, SIGMA)
        print(f"parity {layout} {mode}: relative difference {rel_err(theirs, ours):.2e} (experts change the "
              f"output by {effect:.2e})")  # the figures docs/DESIGN.md quotes (pytest -s)
        assert rel_err(theirs, ours) <= 1e-4, (layout, mode)


def test_euler_sampling_agrees_across_stacks(pack, comfy_flux, trained, inputs):
    import comfy.sample
    import comfy.samplers

    model, cond = comfy_model(pack, comfy_flux, trained, inputs, "official+style", "merge")
    empty = torch.zeros(1, 16, 8, 8)
    theirs = flux_sample(model, empty, cond, steps=3, seed=0)
    # The same sigmas and noise, Euler on training's velocity (training has no sampler of its own).
    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "simple", 3).tolist()
    base = model.model
    x = sigmas[0] * comfy.sample.prepare_noise(empty, 0) + (1 - sigmas[0]) * base.process_latent_in(empty)
    for sigma, following in zip(sigmas, sigmas[1:]):
        x = x + (following - sigma) * training_velocity(trained[0], comfy_flux, inputs, "official+style", x, sigma)
    ours = base.process_latent_out(x)
    print(f"parity euler 3 steps, official+style, merge: relative difference {rel_err(theirs, ours):.2e}")
    assert rel_err(theirs, ours) <= 1e-3
