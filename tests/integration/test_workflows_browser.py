"""Each example workflow opens in the real frontend (headless Chromium) with no problems."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from comfy_harness.frontend_browser import dump_report
from comfy_harness.workflow_api import strip_meta, ui_to_api
from styleexpert_files import write_example_images

pytestmark = [pytest.mark.comfyui, pytest.mark.browser, pytest.mark.slow]
WORKFLOWS = sorted((Path(__file__).resolve().parents[2] / "workflows").glob("*.json"))


def test_pack_web_extension_is_served(comfy_server):
    listed = json.loads(comfy_server.get("/extensions"))
    assert any(path.endswith("/styleexpert.js") for path in listed), listed
    templates = json.loads(comfy_server.get("/workflow_templates"))
    assert sorted(templates["styleexpert"]) == sorted(p.stem for p in WORKFLOWS)


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_opens_cleanly_in_the_frontend(frontend, comfy_server, artifacts_dir, path):
    assert frontend.startup_problems == []
    write_example_images(comfy_server.base_dir / "input")  # the LoadImage nodes preview these
    workflow = json.loads(path.read_text())
    report = frontend.load_workflow(workflow, screenshot=artifacts_dir / f"{path.stem}.png")
    assert report.problems() == [], dump_report(report)
    assert report.node_count == len(workflow["nodes"])
    assert report.screenshot.stat().st_size > 10_000
    # The frontend's own conversion agrees with the one the end-to-end tests run (ignoring
    # display-only widgets the frontend adds, such as PreviewAny's `preview`, that the server never reads).
    info = comfy_server.object_info()
    assert server_inputs(strip_meta(report.api_prompt), info) == strip_meta(ui_to_api(workflow, info, strict=True))


def server_inputs(prompt: dict, info: dict) -> dict:
    def known(class_type):
        spec = info[class_type]["input"]
        return set(spec.get("required", {})) | set(spec.get("optional", {}))
    return {node_id: {**node, "inputs": {k: v for k, v in node["inputs"].items() if k in known(node["class_type"])}}
            for node_id, node in prompt.items()}


def test_loader_summary_is_shown_on_the_node(frontend, comfy_server, artifacts_dir):
    """Queue a prompt from the real frontend: the pack's JS shows the loader's summary on the node."""
    from styleexpert_core import ProjectorConfig
    from styleexpert_files import write_tiny_checkpoint
    name = "browser_readout.safetensors"
    write_tiny_checkpoint(comfy_server.base_dir / "models" / "styleexpert", name, projector=ProjectorConfig())
    workflow = {
        "last_node_id": 2, "last_link_id": 1, "version": 0.4, "groups": [], "config": {}, "extra": {},
        "links": [[1, 1, 0, 2, 0, "STYLEEXPERT"]],
        "nodes": [
            {"id": 1, "type": "StyleExpertLoader", "pos": [50, 50], "size": [360, 200], "flags": {}, "order": 0,
             "mode": 0, "inputs": [], "outputs": [{"name": "STYLEEXPERT", "type": "STYLEEXPERT", "links": [1]}],
             "properties": {}, "widgets_values": [name, "(none)"]},
            {"id": 2, "type": "StyleExpertTestInspect", "pos": [480, 50], "size": [300, 100], "flags": {},
             "order": 1, "mode": 0, "inputs": [{"name": "value", "type": "*", "link": 1}], "outputs": [],
             "properties": {}, "widgets_values": []},
        ],
    }
    report = frontend.load_workflow(workflow)
    assert report.missing_node_types == []
    page = frontend.page
    page.evaluate("() => window.app.queuePrompt(0, 1)")
    page.wait_for_function(
        "() => (window.app.graph.getNodeById(1).widgets || []).some("
        "w => w.name === 'styleexpert_info' && String(w.value).includes('experts x rank'))", timeout=120_000)
    text = page.evaluate("() => window.app.graph.getNodeById(1).widgets.find(w => w.name === 'styleexpert_info').value")
    assert "6 experts x rank 4, top_k 2 + shared" in text and "style projector: SigLIP layers" in text
    # The readout is display only: the saved workflow keeps just the two real widget values.
    saved = page.evaluate("() => window.app.graph.serialize().nodes.find(n => n.id === 1).widgets_values")
    assert saved == [name, "(none)"]
    page.screenshot(path=str(artifacts_dir / "loader_readout.png"))
