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
from styleexpert_core import ProjectorConfig
from styleexpert_files import write_tiny_checkpoint

pytestmark = [pytest.mark.comfyui, pytest.mark.slow]
FOLDER = Path(__file__).resolve().parents[2] / "example_workflows"
WORKFLOWS = sorted(FOLDER.glob("*.json"))
CHECKPOINT = "styleexpert.safetensors"


@pytest.fixture(scope="module")
def server(comfy_server):
    base = comfy_server.base_dir
    # A checkpoint whose experts fit the tiny test Flux and whose projector reads so400m SigLIP.
    ckpt = write_tiny_checkpoint(base / "models" / "styleexpert", CHECKPOINT, projector=ProjectorConfig())
    assert ckpt.is_file()
    return comfy_server


def test_the_pack_put_the_example_images_into_input(server):
    """The templates' Load Image nodes validate on a fresh install: the pack copied their images on start."""
    listed = server.object_info("LoadImage")["input"]["required"]["image"][0]
    for image in sorted((FOLDER / "images").glob("*.png")):
        assert (server.base_dir / "input" / image.name).read_bytes() == image.read_bytes()
        assert image.name in listed


def runnable(workflow: dict, object_info: dict) -> dict:
    prompt = ui_to_api(workflow, object_info, strict=True)
    prompt = substitute_text_encoders(prompt)
    prompt = substitute_diffusion_model(prompt)
    for class_type, values in (("VAELoader", {"vae_name": TINY_VAE_NAME}), ("CLIPVisionLoader", {"clip_name": SIGLIP_NAME}),
                               ("KSampler", {"steps": 2})):
        if nodes_of_type(prompt, class_type):  # the baked-LoRA workflow's first step has no sampler
            prompt = set_inputs(prompt, class_type, **values)
    # Kontext's preferred resolutions are ~1 MP: keep the test images at 64 px instead.
    prompt = replace_nodes(prompt, "FluxKontextImageScale", "ImageScale", lambda _, old: {
        "image": old["inputs"]["image"], "upscale_method": "bilinear", "width": 64, "height": 64, "crop": "disabled"})
    return prompt


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_example_workflow_runs(server, path):
    workflow = json.loads(path.read_text())
    assert any(n["type"] == "Note" for n in workflow["nodes"]), "every example carries a note"
    if any(n["type"] == "StyleExpertBakeLoRA" for n in workflow["nodes"]):
        workflow = bake_then_unmute(server, workflow)
    info = server.object_info()
    prompt = runnable(workflow, info)
    history = server.run_prompt(prompt, timeout=600)
    assert history["status"]["status_str"] == "success"
    (save,) = nodes_of_type(prompt, "SaveImage")
    images = server.output_images(history, save)
    batch = 2 if "batch" in path.stem else 1
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


def bake_then_unmute(server, workflow: dict) -> dict:
    """Runs the workflow as shipped (step 1 only: step 2 is muted), then returns it as the note tells the
    user to change it: step 2 unmuted, step 1 muted, the LoRA loader on the file step 1 wrote."""
    loras = server.base_dir / "models" / "loras"
    before = set(loras.glob("*.safetensors")) if loras.is_dir() else set()
    prompt = runnable(workflow, server.object_info())
    assert not nodes_of_type(prompt, "KSampler"), "step 2 must start muted"
    assert server.run_prompt(prompt, timeout=300)["status"]["status_str"] == "success"
    (baked,) = set(loras.glob("*.safetensors")) - before
    step1 = {n["id"] for n in workflow["nodes"] if n["mode"] == 0 and n["type"] != "Note"}
    for node in workflow["nodes"]:
        node["mode"] = 2 if node["id"] in step1 else 0
        if node["type"] == "LoraLoaderModelOnly":
            node["widgets_values"][0] = baked.name
    return workflow


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
