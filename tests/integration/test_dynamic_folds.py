"""Dynamic mode folds each style once and adds the deltas in place, computing what merge mode
computes: every kind of slice (fused q|k|v, linear1's q|k|v|mlp, whole layers, norm_out's swapped
halves), in fp32 to 1e-5 (real ComfyUI in process, tiny Flux)."""

from __future__ import annotations

from importlib import import_module
from pathlib import Path

import pytest
import torch

from comfy_harness.tiny_flux import flux_forward, random_conditioning, tiny_flux_patcher
from styleexpert_core import ExpertTensors, MoEConfig, StyleExpertCheckpoint, save_native
from styleexpert_core.keys import block_linear_features, diffusers_to_bfl
from styleexpert_files import TINY_FLUX

pytestmark = pytest.mark.comfyui
STRENGTHS = {"strength": 0.8, "shared_strength": 0.7, "routed_strength": 1.3, "double_blocks": 0.6,
             "single_blocks": 1.5}
COND_DIM = 8


def run(node_class, **inputs):
    from comfy_api.latest import io
    return node_class.PREPARE_CLASS_CLONE({io.Hidden.unique_id: "1"}).execute(**inputs)


def every_linear_checkpoint(alignment: str) -> StyleExpertCheckpoint:
    """Experts on every block linear and on norm_out (whose output halves swap)."""
    config = MoEConfig(num_experts=5, rank=3, top_k=2, cond_dim=COND_DIM, alignment=alignment)
    g = torch.Generator().manual_seed(3)
    h = TINY_FLUX.hidden_size
    features = {m: block_linear_features(m, TINY_FLUX) for m in diffusers_to_bfl(TINY_FLUX) if "blocks." in m}
    layers = {}
    for module, (d_in, d_out) in {**features, "norm_out.linear": (h, 2 * h)}.items():
        layers[module] = ExpertTensors(
            torch.randn(5, 3, d_in, generator=g) / 3, torch.randn(5, d_out, 3, generator=g) * 0.05,
            torch.randn(1, 3, d_in, generator=g) / 3, torch.randn(1, d_out, 3, generator=g) * 0.05,
            torch.randn(5, COND_DIM, generator=g))
    return StyleExpertCheckpoint(config, layers)


@pytest.fixture(scope="module", params=["official", "paper"])
def expert(request, pack, comfy):
    folder = Path(comfy.folder_paths.get_folder_paths("styleexpert")[0])
    name = f"dynamic_folds_{request.param}.safetensors"
    save_native(every_linear_checkpoint(request.param), folder / name)
    return run(pack["StyleExpertLoader"], ckpt_name=name).result[0]


def style_latents(expert, count: int):
    payloads = import_module(type(expert).__module__)
    values = torch.randn(count, COND_DIM, generator=torch.Generator().manual_seed(11))
    return payloads.StyleLatent(values, expert.encoder_id)


def forward(model, batch: int = 1):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch, 16, 8, 8, generator=g)
    ref = torch.randn(1, 16, 8, 8, generator=g).expand(batch, -1, -1, -1)
    cond = random_conditioning(1, batch=batch)
    return flux_forward(model, x, 0.7, cond[0][0], cond[0][1]["pooled_output"], ref_latents=[ref],
                        ref_latents_method="index")


def apply(pack, model, expert, style, mode):
    return run(pack["StyleExpertApply"], model=model, styleexpert=expert, style=style, mode=mode,
               **STRENGTHS).result[0]


def test_every_slice_kind_is_covered(expert):
    targets = [diffusers_to_bfl(TINY_FLUX)[m] for m in expert.checkpoint.layers]
    assert {t.length for t in targets if t.offset is not None} == {64, 256}  # q|k|v slices and linear1's mlp
    assert any(t.transform == "swap_halves" for t in targets)
    assert any(t.offset is None and t.transform is None for t in targets)


def test_dynamic_equals_merge_in_fp32(pack, expert):
    style = style_latents(expert, 1)
    base = tiny_flux_patcher()
    merged = forward(apply(pack, base, expert, style, "merge"))
    dynamic = forward(apply(pack, base, expert, style, "dynamic"))
    assert not torch.allclose(merged, forward(base), atol=1e-3)  # the experts change the output
    torch.testing.assert_close(dynamic, merged, rtol=1e-5, atol=1e-5)


def test_mixed_batch_gives_each_sample_its_style(pack, expert):
    styles = style_latents(expert, 2)
    base = tiny_flux_patcher()
    mixed = forward(apply(pack, base, expert, styles, "dynamic"), batch=4)  # sample i gets style i % 2
    for i in range(2):
        one = type(styles)(styles.values[i:i + 1], styles.encoder_id)
        alone = forward(apply(pack, base, expert, one, "merge"), batch=4)
        torch.testing.assert_close(mixed[i::2], alone[i::2], rtol=1e-5, atol=1e-5)


def test_each_style_is_folded_once_not_per_step(pack, expert, monkeypatch):
    hooks_module = import_module(f"{type(expert).__module__.rsplit('.', 1)[0]}.dynamic_hooks")
    calls = []
    real = hooks_module.fold_layers

    def counting(layers, *args, **kwargs):
        calls.append(len(layers))
        return real(layers, *args, **kwargs)

    monkeypatch.setattr(hooks_module, "fold_layers", counting)
    model = apply(pack, tiny_flux_patcher(), expert, style_latents(expert, 2), "dynamic")
    for _ in range(3):
        forward(model, batch=2)
    # One fold per patched module and style, made in the first call; fused layers fold together.
    assert sum(calls) == 2 * len(expert.checkpoint.layers)
    assert len(calls) == 2 * len({diffusers_to_bfl(TINY_FLUX)[m].module for m in expert.checkpoint.layers})


def test_no_hook_is_left_on_the_model(pack, expert):
    model = apply(pack, tiny_flux_patcher(), expert, style_latents(expert, 1), "dynamic")
    forward(model)
    assert not any(m._forward_hooks for m in model.model.diffusion_model.modules())
