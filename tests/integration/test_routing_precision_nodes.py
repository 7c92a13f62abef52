"""Routing precision through the nodes: an official checkpoint encodes and routes in bf16 as released,
merge, dynamic and Bake agree on it, and the Apply/Bake override reaches the core."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from comfy_harness.tiny_flux import tiny_flux_patcher
from styleexpert_core import Strengths, fold_checkpoint
from styleexpert_files import tiny_checkpoint
from test_nodes_inprocess import forward, run

pytestmark = pytest.mark.comfyui


@pytest.fixture(scope="module")
def official(pack, comfy):
    """The tiny checkpoint written as the official release pair, loaded by the Loader node."""
    from safetensors.torch import save_file
    ckpt = tiny_checkpoint(seed=4)
    names = {"A": "loraA", "B": "loraB", "shared_A": "shared_A", "shared_B": "shared_B", "gate": "cond_gate.weight"}
    folder = Path(comfy.folder_paths.get_folder_paths("styleexpert")[0])
    folder.mkdir(parents=True, exist_ok=True)
    save_file({f"{m}.lora_layer.{names[n]}": t.clone() for m, layer in ckpt.layers.items()
               for n, t in layer.as_dict().items()}, str(folder / "precision_moe.safetensors"))
    save_file({f"proj_model.{k}": v.contiguous() for k, v in ckpt.projector.items()},
              str(folder / "precision_encoder.safetensors"))
    return run(pack["StyleExpertLoader"], ckpt_name="precision_moe.safetensors",
               projector_name="precision_encoder.safetensors").result[0]


def test_official_checkpoint_encodes_in_bf16_and_merge_equals_dynamic(pack, official, tiny_siglip):
    images = torch.rand(1, 56, 56, 3, generator=torch.Generator().manual_seed(2))
    style = run(pack["StyleExpertEncodeStyle"], styleexpert=official, clip_vision=tiny_siglip, images=images).result[0]
    assert official.checkpoint.config.routing_precision == "bf16"
    assert next(official.projector().parameters()).dtype == torch.bfloat16
    assert torch.equal(style.values, style.values.bfloat16().float())  # the release's router input
    base = tiny_flux_patcher()
    merged = forward(run(pack["StyleExpertApply"], model=base, styleexpert=official, style=style).result[0])
    dynamic = forward(run(pack["StyleExpertApply"], model=base, styleexpert=official, style=style,
                          mode="dynamic").result[0])
    torch.testing.assert_close(merged, dynamic, rtol=1e-4, atol=1e-5)


def test_routing_precision_override_reaches_merge_and_bake(pack, official, comfy):
    latent = torch.randn(1, official.checkpoint.config.cond_dim, generator=torch.Generator().manual_seed(3))
    payloads = __import__(pack["StyleExpertLoader"].__module__.rsplit(".", 1)[0] + ".payloads",
                          fromlist=["StyleLatent"])
    style = payloads.StyleLatent(latent, official.encoder_id)
    base = tiny_flux_patcher()
    kept = forward(run(pack["StyleExpertApply"], model=base, styleexpert=official, style=style).result[0])
    fp32 = forward(run(pack["StyleExpertApply"], model=base, styleexpert=official, style=style,
                       routing_precision="fp32").result[0])
    assert not torch.equal(kept, fp32)  # bf16 scores vs fp32 scores
    loras = Path(comfy.folder_paths.get_folder_paths("loras")[0])
    run(pack["StyleExpertBakeLoRA"], styleexpert=official, style=style, filename="precision_fp32", overwrite=True,
        routing_precision="fp32")
    from styleexpert_core.formats import read_safetensors
    baked, _ = read_safetensors(loras / "precision_fp32.safetensors")
    module = next(iter(official.checkpoint.layers))
    up, _ = fold_checkpoint(official.checkpoint, latent, strengths=Strengths(), routing_precision="fp32")[module]
    assert torch.equal(baked[f"transformer.{module}.lora_B.weight"], up)
