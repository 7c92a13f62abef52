"""In the real frontend: the Routing Preview node shows the routing chart of its style image before
anything is queued, and redraws it when the Load Image upstream picks another image."""

from __future__ import annotations

import pytest

from comfy_harness.tiny_model_files import SIGLIP_NAME
from styleexpert_core import ProjectorConfig
from styleexpert_files import write_example_images, write_tiny_checkpoint

pytestmark = [pytest.mark.comfyui, pytest.mark.browser, pytest.mark.slow]  # so400m SigLIP on CPU
CHECKPOINT = "live_routing.safetensors"
STATUS = ("() => { const w = window.app.graph.getNodeById(5).widgets.find(w => w.name === 'styleexpert_live_routing');"
          " return w ? [w.element.querySelector('.styleexpert-live-status').textContent,"
          " w.element.querySelector('.styleexpert-live-chart').getAttribute('src') || ''] : null; }")


def node(id_, type_, pos, inputs, outputs, widgets):
    return {"id": id_, "type": type_, "pos": pos, "size": [340, 160], "flags": {}, "order": id_ - 1, "mode": 0,
            "inputs": [{"name": n, "type": t, "link": link} for n, t, link in inputs],
            "outputs": [{"name": n, "type": t, "links": links} for n, t, links in outputs],
            "properties": {}, "widgets_values": widgets}


WORKFLOW = {
    "last_node_id": 5, "last_link_id": 5, "version": 0.4, "groups": [], "config": {}, "extra": {},
    "links": [[1, 1, 0, 5, 0, "STYLEEXPERT"], [2, 1, 0, 4, 0, "STYLEEXPERT"], [3, 2, 0, 4, 1, "CLIP_VISION"],
              [4, 3, 0, 4, 2, "IMAGE"], [5, 4, 0, 5, 1, "STYLE_LATENT"]],
    "nodes": [
        node(1, "StyleExpertLoader", [40, 40], [], [("STYLEEXPERT", "STYLEEXPERT", [1, 2])], [CHECKPOINT, "(none)"]),
        node(2, "CLIPVisionLoader", [40, 260], [], [("CLIP_VISION", "CLIP_VISION", [3])], [SIGLIP_NAME]),
        node(3, "LoadImage", [40, 440], [], [("IMAGE", "IMAGE", [4]), ("MASK", "MASK", [])], ["style.png", "image"]),
        node(4, "StyleExpertEncodeStyle", [420, 260],
             [("styleexpert", "STYLEEXPERT", 2), ("clip_vision", "CLIP_VISION", 3), ("images", "IMAGE", 4)],
             [("STYLE_LATENT", "STYLE_LATENT", [5])], ["mean"]),
        node(5, "StyleExpertRoutingPreview", [800, 40],
             [("styleexpert", "STYLEEXPERT", 1), ("style", "STYLE_LATENT", 5)],
             [("heatmap", "IMAGE", []), ("routing", "STRING", [])], [0, 0, "from checkpoint"]),
    ],
}


def test_routing_chart_is_live_before_sampling(frontend, comfy_server, artifacts_dir):
    write_tiny_checkpoint(comfy_server.base_dir / "models" / "styleexpert", CHECKPOINT, projector=ProjectorConfig())
    write_example_images(comfy_server.base_dir / "input")
    history_before = len(comfy_server.get_json("/history"))
    # The files appeared after the page opened: refresh the lists (what R does), since the live view
    # asks only for files the server lists.
    frontend.page.evaluate("async () => { await window.app.refreshComboInNodes(); }")
    report = frontend.load_workflow(WORKFLOW)
    assert report.missing_node_types == [] and report.page_errors == []
    page = frontend.page
    page.wait_for_function(f"() => {{ const s = ({STATUS})(); return s && s[1].startsWith('blob:'); }}",
                           timeout=600_000)
    first_text, first_src = page.evaluate(STATUS)
    assert first_text.startswith("style fingerprint | double: #")
    width, natural = page.evaluate("() => [window.app.graph.getNodeById(5).size[0], document.querySelector("
                                   "'.styleexpert-live-chart').naturalWidth]")
    assert natural >= 560 and width >= natural  # the node grew to show the chart at its own size
    page.set_viewport_size({"width": 2000, "height": 1100})  # the whole graph, the chart at its own size
    page.screenshot(path=str(artifacts_dir / "routing_live_preview.png"))
    page.evaluate("() => { window.app.graph.getNodeById(3).widgets.find(w => w.name === 'image').value ="
                  " 'style_b.png'; }")
    page.wait_for_function(f"() => {{ const s = ({STATUS})(); return s && s[1] !== {first_src!r}"
                           " && s[1].startsWith('blob:'); }", timeout=600_000)
    assert page.evaluate(STATUS)[0].startswith("style fingerprint | ")
    saved = page.evaluate("() => window.app.graph.serialize().nodes.find(n => n.id === 5).widgets_values")
    assert saved == [0, 0, "from checkpoint"]  # the live view is never saved with the workflow
    assert len(comfy_server.get_json("/history")) == history_before  # nothing was queued
