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

