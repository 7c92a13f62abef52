"""Tests of the harness itself: in-process ComfyUI, tiny models, server, workflow conversion, browser."""

from __future__ import annotations

import json
import logging
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from comfy_harness import tiny_model_files
from comfy_harness.frontend_browser import dump_report
from comfy_harness.in_process import PackImportError
from comfy_harness.server import CustomNodeImportError, PromptFailed, PromptRejected, inspected
from comfy_harness.tiny_flux import flux_forward, flux_sample, random_conditioning, tiny_flux_patcher
from comfy_harness.tiny_siglip import SiglipShape, tiny_siglip_model
from comfy_harness.workflow_api import (
    TINY_FLUX_INPUTS,
    WorkflowConversionError,
    api_node,
    nodes_of_type,
    strip_meta,
    substitute_text_encoders,
    ui_to_api,
)

log = logging.getLogger(__name__)
UI_WORKFLOW = Path(__file__).parent / "data" / "tiny_flux_ui_workflow.json"


def seeded(seed: int, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# -- in-process ComfyUI ----------------------------------------------------------------------


def test_comfy_is_imported_from_the_checkout_not_from_the_pack(comfy):
    assert Path(comfy.nodes.__file__) == comfy.root / "nodes.py"
    assert sys.modules["nodes"] is comfy.nodes
    assert comfy.model_management.get_torch_device().type == "cpu"
    assert Path(comfy.folder_paths.models_dir) == comfy.base_dir / "models"
    assert "ReferenceLatent" in comfy.nodes.NODE_CLASS_MAPPINGS  # comfy_extras nodes are registered


def _write_pack(root: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def test_load_pack_handles_a_v3_pack_with_its_own_nodes_package(load_pack, tmp_path):
    # Same shape as this repository: __init__.py does `from .nodes import ...`.
    pack = _write_pack(
        tmp_path / "throwaway_pack",
        {
            "__init__.py": "from .nodes import comfy_entrypoint\n",
            "nodes/__init__.py": "from .probe import comfy_entrypoint\n",
            "nodes/helpers.py": "def double(x):\n    return 2 * x\n",
            "nodes/probe.py": """
            from comfy_api.latest import ComfyExtension, io
            from .helpers import double

            class Probe(io.ComfyNode):
                @classmethod
                def define_schema(cls):
                    return io.Schema(
                        node_id="StyleExpertHarnessProbe", inputs=[io.Int.Input("value")], outputs=[io.Int.Output()]
                    )

                @classmethod
                def execute(cls, value):
                    return io.NodeOutput(double(value))

            class Extension(ComfyExtension):
                async def get_node_list(self):
                    return [Probe]

            async def comfy_entrypoint():
                return Extension()
        """,
        },
    )
    registered = load_pack(pack)
    assert list(registered) == ["StyleExpertHarnessProbe"]
    assert registered["StyleExpertHarnessProbe"].execute(value=21).result == (42,)
    assert load_pack(pack)["StyleExpertHarnessProbe"] is not registered["StyleExpertHarnessProbe"]  # reload re-executes


def test_load_pack_raises_with_comfyuis_traceback(load_pack, tmp_path):
    pack = _write_pack(tmp_path / "broken_pack", {"__init__.py": "import styleexpert_no_such_module\n"})
    with pytest.raises(PackImportError, match="styleexpert_no_such_module"):
        load_pack(pack)


def test_pack_registers_styleexpert_nodes(pack):
    assert pack, "the pack loaded but registered no nodes"
    assert all(node_id.startswith("StyleExpert") for node_id in pack), sorted(pack)


# -- tiny models -----------------------------------------------------------------------------


def test_tiny_flux_forward_is_deterministic_and_sees_reference_latents(comfy):
    x, context, pooled, reference = (
        seeded(1, 1, 16, 8, 8),
        seeded(2, 1, 4, 32),
        seeded(3, 1, 32),
        seeded(4, 1, 16, 8, 8),
    )
    first, second = tiny_flux_patcher(seed=0), tiny_flux_patcher(seed=0)

    with_ref = flux_forward(first, x, 0.5, context, pooled, ref_latents=[reference], ref_latents_method="index")
    assert with_ref.shape == x.shape and torch.isfinite(with_ref).all()
    assert torch.equal(
        with_ref, flux_forward(second, x, 0.5, context, pooled, ref_latents=[reference], ref_latents_method="index")
    )
    assert not torch.allclose(with_ref, flux_forward(first, x, 0.5, context, pooled))
    assert not torch.allclose(
        with_ref, flux_forward(tiny_flux_patcher(seed=1), x, 0.5, context, pooled, ref_latents=[reference])
    )


def test_flux_forward_applies_the_patchers_wrappers(comfy, tiny_flux):
    calls = []

    def wrapper(executor, *args, **kwargs):
        calls.append(executor.class_obj.__class__.__name__)
        return executor(*args, **kwargs)

    patched = tiny_flux.clone()
    patched.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, "harness", wrapper)
    flux_forward(patched, seeded(1, 1, 16, 8, 8), 0.5, seeded(2, 1, 4, 32), seeded(3, 1, 32))
    assert calls == ["Flux"]


def test_tiny_flux_sampling_is_deterministic(tiny_flux):
    latent = torch.zeros(1, 16, 8, 8)
    positive = random_conditioning(1, reference_latents=[seeded(4, 1, 16, 8, 8)], reference_latents_method="index")
    started = time.perf_counter()
    first = flux_sample(tiny_flux, latent, positive, steps=2, seed=3)
    log.info("tiny Flux, 2 sampling steps: %.2f s", time.perf_counter() - started)
    assert first.shape == latent.shape and torch.isfinite(first).all()
    assert torch.equal(first, flux_sample(tiny_flux, latent, positive, steps=2, seed=3))
    assert not torch.equal(first, flux_sample(tiny_flux, latent, positive, steps=2, seed=4))


def test_tiny_siglip_gives_all_hidden_states(tiny_siglip, tmp_path):
    images = torch.rand(2, 48, 80, 3, generator=torch.Generator().manual_seed(0))
    output = tiny_siglip.encode_image(images, crop=False)
    hidden = output["all_hidden_states"]
    assert hidden.shape == (2, 27, 16, 32)  # [B, layers, tokens, width]
    assert torch.equal(output["penultimate_hidden_states"], hidden[:, -2])
    again = tiny_siglip_model(tmp_path, SiglipShape(), seed=0).encode_image(images, crop=False)
    assert torch.equal(hidden, again["all_hidden_states"])


# -- server ----------------------------------------------------------------------------------
# Tests of the harness run on a server without this pack, so that they do not depend on the
# pack's state; it holds a deliberately broken pack instead, to test the import check.

BROKEN_PACK = "styleexpert_harness_broken_pack"


@pytest.fixture(scope="module")
def harness_server(comfy_server_factory, tmp_path_factory, flux_unet_file, tiny_vae_file, siglip_file):
    broken = _write_pack(
        tmp_path_factory.mktemp("broken") / BROKEN_PACK, {"__init__.py": "raise ImportError('deliberately broken')\n"}
    )
    return comfy_server_factory(
        custom_nodes={BROKEN_PACK: broken},
        model_files=tiny_model_files.server_model_files(flux_unet_file, tiny_vae_file, siglip_file),
        include_pack=False,
        check_imports=False,
    )


@pytest.fixture
def harness_frontend(browser, harness_server):
    page = browser.open(harness_server.url)
    yield page
    page.close()


def tiny_flux_prompt() -> dict:
    """Test image -> VAEEncode -> ReferenceLatent on seeded conditioning -> KSampler on the tiny
    Flux -> VAEDecode -> PreviewImage, plus an inspect node on the conditioning."""
    return {
        "1": {
            "class_type": "StyleExpertTestTinyFlux",
            "inputs": dict(TINY_FLUX_INPUTS),
        },
        "2": {
            "class_type": "StyleExpertTestConditioning",
            "inputs": {"seed": 1, "tokens": 4, "context_dim": 32, "pooled_dim": 32, "guidance": 3.5},
        },
        "3": {"class_type": "VAELoader", "inputs": {"vae_name": tiny_model_files.TINY_VAE_NAME}},
        "4": {"class_type": "StyleExpertTestImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "seed": 5}},
        "5": {"class_type": "VAEEncode", "inputs": {"pixels": ["4", 0], "vae": ["3", 0]}},
        "6": {"class_type": "ReferenceLatent", "inputs": {"conditioning": ["2", 0], "latent": ["5", 0]}},
        "7": {"class_type": "ConditioningZeroOut", "inputs": {"conditioning": ["2", 0]}},
        "8": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "9": {
            "class_type": "KSampler",
            "inputs": {
                "model": ["1", 0],
                "positive": ["6", 0],
                "negative": ["7", 0],
                "latent_image": ["8", 0],
                "seed": 0,
                "steps": 2,
                "cfg": 1.0,
                "sampler_name": "euler",
                "scheduler": "simple",
                "denoise": 1.0,
            },
        },
        "10": {"class_type": "VAEDecode", "inputs": {"samples": ["9", 0], "vae": ["3", 0]}},
        "11": {"class_type": "PreviewImage", "inputs": {"images": ["10", 0]}},
        "12": {"class_type": "StyleExpertTestInspect", "inputs": {"value": ["6", 0]}},
    }


def test_server_lists_core_nodes_test_nodes_and_model_files(harness_server):
    log.info("ComfyUI server start-up: %.1f s", harness_server.startup_seconds)
    info = harness_server.object_info()
    for node_id in (
        "KSampler",
        "UNETLoader",
        "VAELoader",
        "CLIPVisionLoader",
        "CLIPVisionEncode",
        "ReferenceLatent",
        "FluxKontextMultiReferenceLatentMethod",
        "StyleExpertTestConditioning",
        "StyleExpertTestTinyFlux",
        "StyleExpertTestTinyClipVision",
        "StyleExpertTestImage",
        "StyleExpertTestInspect",
    ):
        assert node_id in info, node_id
    assert tiny_model_files.TINY_VAE_NAME in info["VAELoader"]["input"]["required"]["vae_name"][0]
    assert tiny_model_files.FLUX_UNET_NAME in info["UNETLoader"]["input"]["required"]["unet_name"][0]
    assert tiny_model_files.SIGLIP_NAME in info["CLIPVisionLoader"]["input"]["required"]["clip_name"][0]


def test_server_import_check_names_the_broken_pack(harness_server):
    (failed,) = harness_server.failed_custom_node_imports()
    assert failed.endswith(BROKEN_PACK)
    with pytest.raises(CustomNodeImportError, match="deliberately broken"):
        harness_server.check_custom_nodes_imported()


def test_comfy_server_serves_this_pack(comfy_server, pack):
    # comfy_server (the node tests' server) fails at start-up if the pack did not import.
    info = comfy_server.object_info()
    assert set(pack) <= set(info)
    assert "StyleExpertTestConditioning" in info


def test_tiny_prompt_runs_end_to_end(harness_server):
    started = time.perf_counter()
    entry = harness_server.run_prompt(tiny_flux_prompt(), timeout=120)
    log.info("tiny end-to-end prompt: %.2f s", time.perf_counter() - started)
    assert entry["status"]["status_str"] == "success"
    (image,) = harness_server.output_images(entry, "11")
    assert image.size == (64, 64)
    conditioning = inspected(entry, "12")
    assert conditioning[0][0]["shape"] == [1, 4, 32]
    assert conditioning[0][1]["reference_latents"][0]["shape"] == [1, 16, 8, 8]


def test_rejected_prompt_raises_with_node_errors(harness_server):
    prompt = tiny_flux_prompt()
    prompt["9"]["inputs"]["sampler_name"] = "no_such_sampler"
    with pytest.raises(PromptRejected, match="no_such_sampler") as raised:
        harness_server.post_prompt(prompt)
    assert "9" in raised.value.node_errors


def test_failed_prompt_raises_with_the_node_exception(harness_server):
    prompt = tiny_flux_prompt()
    prompt["1"]["inputs"]["axes_dim"] = "8,8,8"  # sums to 24, not hidden/heads = 32
    with pytest.raises(PromptFailed, match="axes_dim"):
        harness_server.run_prompt(prompt, timeout=60)


def test_unet_loader_detects_the_flux_file(harness_server):
    prompt = {
        "1": {
            "class_type": "UNETLoader",
            "inputs": {"unet_name": tiny_model_files.FLUX_UNET_NAME, "weight_dtype": "default"},
        },
        "2": {
            "class_type": "StyleExpertTestConditioning",
            "inputs": {"seed": 1, "tokens": 4, "context_dim": 4096, "pooled_dim": 768, "guidance": 3.5},
        },
        "3": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "4": {
            "class_type": "KSampler",
            "inputs": {
                "model": ["1", 0],
                "positive": ["2", 0],
                "negative": ["2", 0],
                "latent_image": ["3", 0],
                "seed": 0,
                "steps": 1,
                "cfg": 1.0,
                "sampler_name": "euler",
                "scheduler": "simple",
                "denoise": 1.0,
            },
        },
        "5": {"class_type": "StyleExpertTestInspect", "inputs": {"value": ["1", 0]}},
        "6": {"class_type": "StyleExpertTestInspect", "inputs": {"value": ["4", 0]}},
    }
    started = time.perf_counter()
    entry = harness_server.run_prompt(prompt, timeout=180)
    log.info("UNETLoader (FLUX.1-width, 1+1 blocks) + 1 step: %.2f s", time.perf_counter() - started)
    model = inspected(entry, "5")
    assert model["class"] == "Flux"
    assert {k: model["unet_config"][k] for k in ("hidden_size", "depth", "depth_single_blocks", "context_in_dim")} == {
        "hidden_size": 3072,
        "depth": 1,
        "depth_single_blocks": 1,
        "context_in_dim": 4096,
    }
    assert inspected(entry, "6")["samples"]["shape"] == [1, 16, 8, 8]


def test_tiny_clip_vision_node_encodes_in_the_server(harness_server):
    info = harness_server.object_info()
    prompt = {
        "1": api_node(info, "StyleExpertTestTinyClipVision"),  # defaults: 27 layers, 16 tokens, width 32
        "2": api_node(info, "StyleExpertTestImage", width=96, height=64, batch_size=2, seed=1),
        "3": api_node(info, "CLIPVisionEncode", clip_vision=["1", 0], image=["2", 0], crop="none"),
        "4": api_node(info, "StyleExpertTestInspect", value=["3", 0]),
    }
    output = inspected(harness_server.run_prompt(prompt), "4")
    assert output["all_hidden_states"]["shape"] == [2, 27, 16, 32]


def test_clip_vision_loader_encodes_with_the_full_size_siglip_file(harness_server):
    prompt = {
        "1": {"class_type": "CLIPVisionLoader", "inputs": {"clip_name": tiny_model_files.SIGLIP_NAME}},
        "2": {"class_type": "StyleExpertTestImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "seed": 1}},
        "3": {"class_type": "CLIPVisionEncode", "inputs": {"clip_vision": ["1", 0], "image": ["2", 0], "crop": "none"}},
        "4": {"class_type": "StyleExpertTestInspect", "inputs": {"value": ["3", 0]}},
    }
    started = time.perf_counter()
    output = inspected(harness_server.run_prompt(prompt, timeout=300), "4")
    log.info("CLIPVisionLoader + one so400m SigLIP encode on CPU: %.1f s", time.perf_counter() - started)
    assert output["all_hidden_states"]["shape"] == [1, 27, 729, 1152]


# -- UI workflow -> API prompt ---------------------------------------------------------------


def test_ui_to_api_maps_widgets_links_and_frontend_only_nodes(harness_server):
    prompt = ui_to_api(json.loads(UI_WORKFLOW.read_text()), harness_server.object_info(), strict=True)
    assert sorted(prompt, key=int) == [
        "1",
        "2",
        "3",
        "4",
        "5",
        "6",
        "7",
        "8",
        "9",
        "12",
    ]  # no note/primitive/reroute/muted/bypassed
    assert prompt["6"]["inputs"] == {
        "seed": 42,
        "steps": 2,
        "cfg": 1,
        "sampler_name": "euler",
        "scheduler": "simple",
        "denoise": 1,  # "fixed" skipped
        "model": ["1", 0],  # through the Reroute
        "positive": ["5", 0],
        "negative": ["4", 0],  # through the bypassed ConditioningZeroOut
        "latent_image": ["7", 0],
    }
    assert prompt["3"]["_meta"]["title"] == "Positive prompt"


def test_ui_to_api_widget_rules():
    object_info = {
        "Sampler": {
            "input": {
                "required": {
                    "seed": ["INT", {}],
                    "count": ["INT", {"control_after_generate": True}],
                    "steps": ["INT", {}],
                    "image": [["a.png", "b.png"], {"image_upload": True}],
                    "model": ["MODEL"],
                    "mode": ["COMBO", {"options": ["x", "y"]}],
                    "forced": ["FLOAT", {"forceInput": True}],
                },
                "optional": {"added_later": ["FLOAT", {"default": 0.25}]},
            },
            "display_name": "Sampler",
        },
    }
    node = {
        "id": 1,
        "type": "Sampler",
        "mode": 0,
        "inputs": [],
        "widgets_values": [7, "randomize", 3, "fixed", 20, "b.png", "image", "y"],
    }
    prompt = ui_to_api({"nodes": [node], "links": []}, object_info)
    assert prompt["1"]["inputs"] == {
        "seed": 7,
        "count": 3,
        "steps": 20,
        "image": "b.png",
        "mode": "y",
        "added_later": 0.25,
    }
    with pytest.raises(WorkflowConversionError, match="unknown"):
        ui_to_api({"nodes": [{**node, "type": "Nope"}], "links": []}, object_info)
    with pytest.raises(WorkflowConversionError, match="widgets_values"):
        ui_to_api(
            {"nodes": [{**node, "widgets_values": node["widgets_values"] + [1, 2]}], "links": []},
            object_info,
            strict=True,
        )


def test_ui_workflow_runs_with_text_encoders_substituted(harness_server):
    prompt = ui_to_api(json.loads(UI_WORKFLOW.read_text()), harness_server.object_info())
    prompt = substitute_text_encoders(prompt, context_dim=32, pooled_dim=32)
    assert nodes_of_type(prompt, "CLIPTextEncode") == [] and nodes_of_type(prompt, "DualCLIPLoader") == []
    assert prompt["3"]["inputs"]["seed"] != prompt["4"]["inputs"]["seed"]  # different texts, different noise
    entry = harness_server.run_prompt(prompt)
    (image,) = harness_server.output_images(entry, "12")
    assert image.size == (64, 64)


# -- browser ---------------------------------------------------------------------------------


@pytest.mark.browser
def test_frontend_loads_the_workflow_cleanly_and_agrees_with_ui_to_api(harness_frontend, harness_server, artifacts_dir):
    workflow = json.loads(UI_WORKFLOW.read_text())
    assert harness_frontend.startup_problems == []
    report = harness_frontend.load_workflow(workflow, screenshot=artifacts_dir / "harness_tiny_flux_workflow.png")
    assert report.problems() == [], dump_report(report)
    assert report.node_count == len(workflow["nodes"])
    assert report.screenshot.stat().st_size > 10_000
    assert strip_meta(report.api_prompt) == strip_meta(ui_to_api(workflow, harness_server.object_info(), strict=True))


@pytest.mark.browser
def test_frontend_reports_missing_node_types(harness_frontend):
    workflow = json.loads(UI_WORKFLOW.read_text())
    workflow["nodes"][0]["type"] = "StyleExpertNoSuchNode"
    report = harness_frontend.load_workflow(workflow)
    assert report.missing_node_types == ["StyleExpertNoSuchNode"]
    assert any("StyleExpertNoSuchNode" in dialog for dialog in report.dialogs)
