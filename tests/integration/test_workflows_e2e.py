"""Every example workflow on a real headless ComfyUI server, plus bad inputs through the server.

Stand-ins, because the stock loaders cannot take tiny files for these: T5/CLIP-L text encoding
(StyleExpertTestConditioning) and the Flux diffusion model (StyleExpertTestTinyFlux, hidden 64).
Everything else is the real graph: the full-size SigLIP file through CLIPVisionLoader, a
16-channel VAE through VAELoader, our nodes, KSampler, VAEDecode, SaveImage.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from comfy_harness.server import PromptFailed
from comfy_harness.tiny_model_files import SIGLIP_NAME, TINY_VAE_NAME
from comfy_harness.workflow_api import (api_node, nodes_of_type, replace_nodes, set_inputs, substitute_diffusion_model,
                                        substitute_text_encoders, ui_to_api)
from styleexpert_core import ProjectorConfig, fold_checkpoint, save_baked_lora
from styleexpert_files import tiny_checkpoint, write_example_images, write_tiny_checkpoint

pytestmark = [pytest.mark.comfyui, pytest.mark.slow]
WORKFLOWS = sorted((Path(__file__).resolve().parents[2] / "workflows").glob("*.json"))
CHECKPOINT = "styleexpert.safetensors"


@pytest.fixture(scope="module")
def server(comfy_server):
    base = comfy_server.base_dir
    # A checkpoint whose experts fit the tiny test Flux and whose projector reads so400m SigLIP.
    ckpt = write_tiny_checkpoint(base / "models" / "styleexpert", CHECKPOINT, projector=ProjectorConfig())
    loras = base / "models" / "loras"
    loras.mkdir(parents=True, exist_ok=True)
    folded = fold_checkpoint(tiny_checkpoint(projector=ProjectorConfig()), torch.randn(3072))
    save_baked_lora(folded, loras / "styleexpert_baked.safetensors")
    write_example_images(base / "input")
    assert ckpt.is_file()
    return comfy_server


def runnable(workflow: dict, object_info: dict) -> dict:
    prompt = ui_to_api(workflow, object_info, strict=True)
    prompt = substitute_text_encoders(prompt)
    prompt = substitute_diffusion_model(prompt)
    prompt = set_inputs(prompt, "VAELoader", vae_name=TINY_VAE_NAME)
    prompt = set_inputs(prompt, "CLIPVisionLoader", clip_name=SIGLIP_NAME)
    prompt = set_inputs(prompt, "KSampler", steps=2)
    # Kontext's preferred resolutions are ~1 MP: keep the test images at 64 px instead.
    prompt = replace_nodes(prompt, "FluxKontextImageScale", "ImageScale", lambda _, old: {
        "image": old["inputs"]["image"], "upscale_method": "bilinear", "width": 64, "height": 64, "crop": "disabled"})
    return prompt


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_example_workflow_runs(server, path):
    workflow = json.loads(path.read_text())
    assert any(n["type"] == "Note" for n in workflow["nodes"]), "every example carries a note"
    info = server.object_info()
    prompt = runnable(workflow, info)
    history = server.run_prompt(prompt, timeout=600)
    assert history["status"]["status_str"] == "success"
    for node_id in nodes_of_type(prompt, "SaveImage"):
        images = server.output_images(history, node_id)
        batch = 2 if "dynamic" in path.stem else 1
        assert len(images) == batch
        arrays = [np.asarray(img, dtype=np.float32) for img in images]
        assert all(a.shape[:2] == (64, 64) for a in arrays)
        if batch == 2:  # two styles in one batch: the samples differ
            assert np.abs(arrays[0] - arrays[1]).mean() > 0.01
    if "routing" in path.stem:
        (preview,) = nodes_of_type(prompt, "StyleExpertRoutingPreview")
        assert history["outputs"][preview]["images"]
        (metrics,) = nodes_of_type(prompt, "StyleExpertMetrics")
        assert "style similarity" in history["outputs"][metrics]["text"][0]


def _loader_prompt(info, ckpt_name):
    return {"1": api_node(info, "StyleExpertLoader", ckpt_name=ckpt_name),
            "2": api_node(info, "StyleExpertTestInspect", value=["1", 0])}


@pytest.mark.bad_input
@pytest.mark.parametrize("case,expected", [
    ("truncated", "truncated or corrupt"),
    ("pickled", "refusing to unpickle"),
    ("flux", "not a StyleExpert checkpoint"),
    ("unknown_key", "unknown key 'extra.weight'"),
    ("missing_key", "lacks tensor"),
    ("wrong_shape", "'gate' has shape"),
    ("rank_above_16", "silently disables"),
])
def test_bad_files_show_a_clear_error_and_the_server_keeps_serving(server, case, expected):
    folder = server.base_dir / "models" / "styleexpert"
    good = folder / CHECKPOINT
    bad = folder / f"bad_{case}.safetensors"
    if case == "truncated":
        bad.write_bytes(good.read_bytes()[:1000])
    elif case == "pickled":
        torch.save({"x": torch.zeros(2)}, bad)
    elif case == "flux":
        save_file({"double_blocks.0.img_attn.qkv.weight": torch.zeros(4, 4)}, str(bad))
    elif case == "rank_above_16":  # an official-format file with rank 32: 16 // 32 == 0
        save_file({f"transformer_blocks.0.attn.to_q.lora_layer.{k}": torch.zeros(shape) for k, shape in (
            ("loraA", (4, 32, 64)), ("loraB", (4, 64, 32)), ("shared_A", (1, 32, 64)), ("shared_B", (1, 64, 32)),
            ("cond_gate.weight", (4, 3072)))}, str(bad))
    else:
        from safetensors import safe_open
        with safe_open(str(good), "pt") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
            meta = f.metadata()
        gate = "moe.transformer_blocks.0.attn.to_q.gate"
        if case == "unknown_key":
            tensors["extra.weight"] = torch.zeros(1)
        elif case == "missing_key":
            tensors.pop("moe.transformer_blocks.0.attn.to_q.shared_B")
        else:
            tensors[gate] = torch.zeros(6, 7)
        save_file(tensors, str(bad), metadata=meta)
    info = server.object_info()
    with pytest.raises(PromptFailed) as failure:
        server.run_prompt(_loader_prompt(info, bad.name))
    assert expected in str(failure.value)
    # The next prompt still runs.
    assert server.run_prompt(_loader_prompt(info, CHECKPOINT))["status"]["status_str"] == "success"


@pytest.mark.bad_input
def test_missing_file_is_rejected_before_running(server):
    from comfy_harness.server import PromptRejected
    info = server.object_info()
    with pytest.raises(PromptRejected, match="not in models/styleexpert"):
        server.post_prompt(_loader_prompt(info, "absent.safetensors"))


@pytest.mark.bad_input
def test_wrong_model_and_wrong_siglip_show_clear_errors(server):
    """A checkpoint for a different Flux width, and a non-SigLIP vision model: node errors, not crashes."""
    info = server.object_info()
    prompt = {
        "1": api_node(info, "StyleExpertLoader", ckpt_name=CHECKPOINT),
        "2": api_node(info, "StyleExpertTestTinyFlux", hidden_size=96, num_heads=2, axes_dim="16,16,16"),
        "3": api_node(info, "StyleExpertTestTinyClipVision"),
        "4": api_node(info, "StyleExpertTestImage"),
        "5": api_node(info, "StyleExpertEncodeStyle", styleexpert=["1", 0], clip_vision=["3", 0], images=["4", 0]),
        "6": api_node(info, "StyleExpertTestInspect", value=["5", 0]),
    }
    with pytest.raises(PromptFailed, match="expects 729 tokens of width 1152"):
        server.run_prompt(prompt)
    prompt["3"] = api_node(info, "CLIPVisionLoader", clip_name=SIGLIP_NAME)
    prompt["6"] = api_node(info, "StyleExpertApply", model=["2", 0], styleexpert=["1", 0], style=["5", 0])
    prompt["7"] = api_node(info, "StyleExpertTestInspect", value=["6", 0])
    with pytest.raises(PromptFailed, match="different model width"):
        server.run_prompt(prompt, timeout=300)
