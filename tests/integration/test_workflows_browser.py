"""Each example workflow (template) opens in the real frontend (headless Chromium): no problems but
the missing-models dialog offering each download, groups, no overlapping nodes; the template
browser shows them with titles and thumbnails."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote, unquote

import pytest

from comfy_harness.frontend_browser import dump_report
from comfy_harness.workflow_api import strip_meta, ui_to_api

pytestmark = [pytest.mark.comfyui, pytest.mark.browser, pytest.mark.slow]
WORKFLOWS = sorted((Path(__file__).resolve().parents[2] / "example_workflows").glob("*.json"))
PACK = "styleexpert"  # the pack's folder name in the test server's custom_nodes
# The offline test machine cannot ask huggingface.co for the file sizes the dialog shows.
OFFLINE_DOWNLOAD_NOISE = "Error fetching file size"


def test_pack_web_extension_and_templates_are_served(comfy_server):
    listed = json.loads(comfy_server.get("/extensions"))
    assert any(path.endswith("/styleexpert.js") for path in listed), listed
    templates = json.loads(comfy_server.get("/workflow_templates"))
    assert sorted(templates[PACK]) == sorted(p.stem for p in WORKFLOWS)
    for path in WORKFLOWS:  # the thumbnail the template browser asks for
        assert comfy_server.get(f"/api/workflow_templates/{PACK}/{quote(path.stem)}.jpg")[:3] == b"\xff\xd8\xff"


def test_template_browser_shows_titles_and_thumbnails(frontend, artifacts_dir):
    page = frontend.page
    served = []
    page.on("response", lambda response: served.append((unquote(response.url), response.status)))
    page.evaluate("() => window.app.extensionManager.command.execute('Comfy.BrowseTemplates')")
    page.get_by_text(PACK, exact=True).first.click()
    for path in WORKFLOWS:
        page.get_by_text(path.stem, exact=True).first.wait_for()
    # The cards show the thumbnails as blobs of what the server sent for <name>.jpg.
    page.wait_for_function("(n) => Array.from(document.querySelectorAll('.p-dialog img'))"
                           ".filter(img => img.naturalWidth > 0).length >= n", arg=len(WORKFLOWS))
    for path in WORKFLOWS:
        assert (f"{frontend.server_url}/api/workflow_templates/{PACK}/{path.stem}.jpg", 200) in served, served
    page.screenshot(path=str(artifacts_dir / "template_browser.png"))


def boxes_overlap(a, b) -> bool:
    (ax, ay, aw, ah), (bx, by, bw, bh) = a, b
    return ax < bx + bw and bx < ax + aw and ay < by + bh and by < ay + ah


def inside(box, frame) -> bool:
    return frame[0] <= box[0] and frame[1] <= box[1] and box[0] + box[2] <= frame[0] + frame[2] \
        and box[1] + box[3] <= frame[1] + frame[3]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_opens_cleanly_in_the_frontend(frontend, comfy_server, artifacts_dir, path):
    assert frontend.startup_problems == []
    # No images written here: the pack copied its example images into input/ when the server started.
    workflow = json.loads(path.read_text())
    report = frontend.load_workflow(workflow, screenshot=artifacts_dir / f"{path.stem}.png")
    # The test server has none of the real models: the dialog offers each one the loaders name.
    wanted = {(m["directory"], m["name"]) for n in workflow["nodes"] for m in n["properties"].get("models", [])}
    (dialog,) = report.dialogs
    assert all(f"{folder} / {name}" in dialog for folder, name in wanted), dialog
    assert "not allowed" not in dialog and "Invalid directory" not in dialog
    report.dialogs = []
    report.console_errors = [e for e in report.console_errors if OFFLINE_DOWNLOAD_NOISE not in e]
    assert report.problems() == [], dump_report(report)
    assert report.node_count == len(workflow["nodes"])
    assert report.screenshot.stat().st_size > 10_000
    # The frontend's own conversion agrees with the one the end-to-end tests run (ignoring
    # display-only widgets the frontend adds, such as PreviewAny's `preview`, that the server never reads).
    info = comfy_server.object_info()
    assert server_inputs(strip_meta(report.api_prompt), info) == strip_meta(ui_to_api(workflow, info, strict=True))


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_layout_has_groups_and_no_overlapping_nodes(frontend, path):
    """Node boxes as the editor drew them (sizes grown to fit their widgets), title bars included."""
    frontend.load_workflow(json.loads(path.read_text()))
    layout = frontend.layout()
    nodes, groups = layout["nodes"], layout["groups"]
    clashes = [(a["id"], b["id"]) for i, a in enumerate(nodes) for b in nodes[i + 1:] if boxes_overlap(a["box"], b["box"])]
    assert clashes == [], clashes
    assert not [(a["title"], b["title"]) for i, a in enumerate(groups) for b in groups[i + 1:]
                if boxes_overlap(a["box"], b["box"])]
    for node in nodes:
        homes = [g["title"] for g in groups if inside(node["box"], g["box"])]
        assert len(homes) == (0 if node["type"] == "Note" else 1), (node, homes)


def server_inputs(prompt: dict, info: dict) -> dict:
    def known(class_type):
        spec = info[class_type]["input"]
        return set(spec.get("required", {})) | set(spec.get("optional", {}))
    return {node_id: {**node, "inputs": {k: v for k, v in node["inputs"].items() if k in known(node["class_type"])}}
            for node_id, node in prompt.items()}

