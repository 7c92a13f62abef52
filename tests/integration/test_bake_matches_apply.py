"""Bake (node and CLI) gives what Apply in merge mode gives, with every strength control set
(real ComfyUI in process, tiny Flux, the stock LoRA loader)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from comfy_harness.tiny_flux import flux_forward, random_conditioning, tiny_flux_patcher
from styleexpert_files import write_tiny_checkpoint

pytestmark = pytest.mark.comfyui
STRENGTHS = {"strength": 0.9, "shared_strength": 0.6, "routed_strength": 1.4, "double_blocks": 0.5,
             "single_blocks": 1.7}
ROUTING = {"top_k": 3, "alignment": "paper"}


def run(node_class, **inputs):
    from comfy_api.latest import io
    return node_class.PREPARE_CLASS_CLONE({io.Hidden.unique_id: "1"}).execute(**inputs)


def forward(model):
    g = torch.Generator().manual_seed(1)
    x, ref = torch.randn(1, 16, 8, 8, generator=g), torch.randn(1, 16, 8, 8, generator=g)
    cond = random_conditioning(1)
    return flux_forward(model, x, 0.7, cond[0][0], cond[0][1]["pooled_output"], ref_latents=[ref],
                        ref_latents_method="index")


@pytest.fixture(scope="module")
def expert(pack, comfy):
    folder = Path(comfy.folder_paths.get_folder_paths("styleexpert")[0])
    path = write_tiny_checkpoint(folder, "bake_matches_apply.safetensors", seed=2)
    return run(pack["StyleExpertLoader"], ckpt_name=path.name).result[0]


@pytest.fixture(scope="module")
def style(pack, expert, tiny_siglip):
    images = torch.rand(1, 56, 56, 3, generator=torch.Generator().manual_seed(8))
    return run(pack["StyleExpertEncodeStyle"], styleexpert=expert, clip_vision=tiny_siglip, images=images).result[0]


def stock_lora(comfy, model, name):
    return comfy.nodes.LoraLoaderModelOnly().load_lora_model_only(model, name, 1.0)[0]


def test_bake_node_with_strengths_equals_apply_merge_and_dynamic(pack, comfy, expert, style):
    name = run(pack["StyleExpertBakeLoRA"], styleexpert=expert, style=style, filename="bake strengths",
               overwrite=True, **STRENGTHS, **ROUTING).result[0]
    default = run(pack["StyleExpertBakeLoRA"], styleexpert=expert, style=style, filename="bake defaults",
                  overwrite=True).result[0]
    base = tiny_flux_patcher()
    baked = forward(stock_lora(comfy, base, name))
    merged = forward(run(pack["StyleExpertApply"], model=base, styleexpert=expert, style=style, mode="merge",
                         **STRENGTHS, **ROUTING).result[0])
    dynamic = forward(run(pack["StyleExpertApply"], model=base, styleexpert=expert, style=style, mode="dynamic",
                          **STRENGTHS, **ROUTING).result[0])
    torch.testing.assert_close(baked, merged, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(dynamic, merged, rtol=1e-4, atol=1e-5)
    assert (baked - forward(stock_lora(comfy, base, default))).abs().max() > 1e-3  # the controls took effect


def test_cli_bake_with_strengths_equals_apply_merge(pack, comfy, expert, style, tmp_path):
    from safetensors.torch import save_file
    from styleexpert_core.cli import main
    save_file({"style_latent": style.values}, str(tmp_path / "style.safetensors"))
    lora = Path(comfy.folder_paths.get_folder_paths("loras")[0]) / "cli_bake_strengths.safetensors"
    ckpt = Path(comfy.folder_paths.get_full_path("styleexpert", expert.name))
    flags = ["--strength", "0.9", "--shared-strength", "0.6", "--routed-strength", "1.4", "--double-blocks", "0.5",
             "--single-blocks", "1.7", "--top-k", "3", "--alignment", "paper"]
    assert main(["bake", "--checkpoint", str(ckpt), "--style-latent", str(tmp_path / "style.safetensors"),
                 "-o", str(lora), "--force", *flags]) == 0
    base = tiny_flux_patcher()
    merged = run(pack["StyleExpertApply"], model=base, styleexpert=expert, style=style, mode="merge",
                 **STRENGTHS, **ROUTING).result[0]
    torch.testing.assert_close(forward(stock_lora(comfy, base, lora.name)), forward(merged), rtol=1e-4, atol=1e-5)
