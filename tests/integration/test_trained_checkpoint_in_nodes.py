"""A checkpoint exported by training/ (diffusers Flux + injected experts) loads and applies in the nodes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from comfy_harness.tiny_flux import tiny_flux_patcher
from styleexpert_core import MoEConfig, inject_moe
from test_nodes_inprocess import forward, run

pytestmark = pytest.mark.comfyui


def test_training_export_loads_and_applies(pack, comfy):
    from training.checkpoints import experts_from_state_dict, export_experts
    from training.demo.backbones import demo_flux
    from training.stage2.flux import moe_target_modules

    model = demo_flux(width=64, double=2, single=2, text_dim=16)  # same widths as the tiny ComfyUI Flux
    config = MoEConfig(num_experts=4, rank=2, top_k=2, cond_dim=24, alignment="paper")
    targets = moe_target_modules(model, "attention")
    _, wrapped = inject_moe(model, targets, config)
    with torch.no_grad():
        for layer in wrapped.values():
            layer.moe.B.normal_(std=0.05)  # as if trained: B starts at zero
    folder = Path(comfy.folder_paths.get_folder_paths("styleexpert")[0])
    export_experts(folder / "from_training.safetensors", config, experts_from_state_dict(model.state_dict()))

    out = run(pack["StyleExpertLoader"], ckpt_name="from_training.safetensors")
    expert = out.result[0]
    assert sorted(expert.checkpoint.layers) == sorted(targets)
    assert "alignment paper" in out.ui.as_dict()["text"][0]
    payloads = __import__(type(expert).__module__, fromlist=["StyleLatent"])
    style = payloads.StyleLatent(torch.randn(1, 24), None)
    base = tiny_flux_patcher()
    apply = pack["StyleExpertApply"]
    merged = forward(run(apply, model=base, styleexpert=expert, style=style, mode="merge").result[0])
    dynamic = forward(run(apply, model=base, styleexpert=expert, style=style, mode="dynamic").result[0])
    assert (merged - forward(base)).abs().max() > 1e-4
    torch.testing.assert_close(merged, dynamic, rtol=1e-4, atol=1e-5)
