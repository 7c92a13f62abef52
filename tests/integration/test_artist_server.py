"""The artist-facing nodes on a real headless ComfyUI server: Stylize wired to the stock KSampler, the
style library, and the preview pictures ComfyUI's Model Library shows for checkpoints and saved styles."""

from __future__ import annotations

import io
import json
import urllib.parse

import numpy as np
import pytest
from PIL import Image

from comfy_harness.server import PromptRejected
from comfy_harness.tiny_model_files import TINY_VAE_NAME
from comfy_harness.workflow_api import TINY_FLUX_INPUTS, api_node
from styleexpert_core.cli import main
from styleexpert_files import write_example_images, write_tiny_checkpoint

pytestmark = [pytest.mark.comfyui, pytest.mark.slow]
CHECKPOINT = "artist_server.safetensors"


@pytest.fixture(scope="module")
def server(comfy_server):
    base = comfy_server.base_dir
    # Experts that fit the tiny test Flux, a projector that reads the tiny SigLIP stand-in (the
    # so400m-size file takes minutes per image on a busy CPU; test_workflows_e2e runs it).
    write_tiny_checkpoint(base / "models" / "styleexpert", CHECKPOINT)
    write_example_images(base / "input")
    return comfy_server


def stylize_prompt(info: dict, strength: float) -> dict:
    return {
        "1": api_node(info, "StyleExpertTestTinyFlux", **TINY_FLUX_INPUTS),
        "2": api_node(info, "StyleExpertTestTinyClipVision"),
        "3": api_node(info, "VAELoader", vae_name=TINY_VAE_NAME),
        "4": api_node(info, "StyleExpertTestConditioning"),
        "5": api_node(info, "LoadImage", image="content.png"),
        "6": api_node(info, "LoadImage", image="style.png"),
        "7": api_node(info, "StyleExpertStylize", model=["1", 0], clip_vision=["2", 0], vae=["3", 0],
                      conditioning=["4", 0], content=["5", 0], style=["6", 0], ckpt_name=CHECKPOINT,
                      strength=strength),
        "8": api_node(info, "ConditioningZeroOut", conditioning=["7", 1]),
        "9": api_node(info, "KSampler", model=["7", 0], positive=["7", 1], negative=["8", 0], latent_image=["7", 2],
                      steps=2, cfg=1.0, seed=3, denoise=1.0),
        "10": api_node(info, "VAEDecode", samples=["9", 0], vae=["3", 0]),
        "11": api_node(info, "SaveImage", images=["10", 0], filename_prefix="stylize_test"),
    }


def test_stylize_outputs_go_straight_into_the_stock_sampler(server):
    info = server.object_info()
    images = {}
    for strength in (0.0, 1.0):
        history = server.run_prompt(stylize_prompt(info, strength), timeout=300)
        (image,) = server.output_images(history, "11")
        images[strength] = np.asarray(image, dtype=np.float32)
    assert images[1.0].shape[:2] == (64, 64)  # the content's size
    assert np.abs(images[1.0] - images[0.0]).mean() > 0.5  # the style changed the picture


@pytest.mark.bad_input
def test_stylize_with_a_missing_checkpoint_is_refused_before_running(server):
    info = server.object_info()
    prompt = stylize_prompt(info, 1.0)
    prompt["7"]["inputs"]["ckpt_name"] = "not_there.safetensors"
    with pytest.raises(PromptRejected) as rejected:
        server.post_prompt(prompt)
    assert "not_there.safetensors' is not in models/styleexpert" in json.dumps(rejected.value.node_errors)


def test_saved_styles_and_checkpoints_have_model_library_previews(server):
    info = server.object_info()
    saved = server.run_prompt({
        "1": api_node(info, "StyleExpertLoader", ckpt_name=CHECKPOINT),
        "2": api_node(info, "StyleExpertTestTinyClipVision"),
        "3": api_node(info, "LoadImage", image="style.png"),
        "4": api_node(info, "StyleExpertEncodeStyle", styleexpert=["1", 0], clip_vision=["2", 0], images=["3", 0]),
        "5": api_node(info, "StyleExpertSaveStyle", style=["4", 0], images=["3", 0], name="server style"),
    }, timeout=300)
    assert saved["outputs"]["5"]["images"]  # the thumbnail shows on the node
    style_file = "server style_00001_.safetensors"
    assert style_file in server.object_info("StyleExpertLoadStyle")["input"]["required"]["style_name"][1]["options"]
    loaded = server.run_prompt({
        "1": api_node(info, "StyleExpertLoadStyle", style_name=style_file),
        "2": api_node(info, "StyleExpertTestInspect", value=["1", 0]),
    })
    assert loaded["outputs"]["1"]["images"]  # Load Style shows the thumbnail too
    assert main(["preview", str(server.base_dir / "models" / "styleexpert" / CHECKPOINT)]) == 0
    for folder, name in (("styleexpert_styles", "server style_00001_.webp"), ("styleexpert", "artist_server.webp")):
        # What the Model Library asks for (the file name with .webp): the saved thumbnail, the card.
        body = server.get(f"/api/experiment/models/preview/{folder}/0/{urllib.parse.quote(name)}")
        with Image.open(io.BytesIO(body)) as picture:
            assert picture.format == "WEBP" and picture.size in ((256, 256), (384, 384))
