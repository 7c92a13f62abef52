"""POST /styleexpert/routing_preview on a real ComfyUI server: the routing chart of a style image
before any sampling, the same fingerprint the Routing Preview node shows, and JSON errors."""

from __future__ import annotations

import io
import json
import urllib.error
import urllib.request

import pytest
from PIL import Image

from comfy_harness.server import output_text
from comfy_harness.tiny_model_files import SIGLIP_NAME
from comfy_harness.workflow_api import api_node
from styleexpert_core import ProjectorConfig
from styleexpert_files import write_example_images, write_tiny_checkpoint

pytestmark = [pytest.mark.comfyui, pytest.mark.slow]  # so400m SigLIP on CPU
CHECKPOINT = "route_styleexpert.safetensors"
ROUTE = "/styleexpert/routing_preview"


@pytest.fixture(scope="module")
def server(comfy_server):
    base = comfy_server.base_dir
    write_tiny_checkpoint(base / "models" / "styleexpert", CHECKPOINT, projector=ProjectorConfig())  # so400m input
    write_example_images(base / "input")
    return comfy_server


def post(server, body) -> tuple[int, dict, bytes]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(server.url + ROUTE, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_route_draws_the_chart_the_node_shows(server):
    body = {"ckpt_name": CHECKPOINT, "clip_name": SIGLIP_NAME, "image": "style.png"}
    status, headers, png = post(server, body)
    assert status == 200 and headers["Content-Type"] == "image/png", png[:300]
    chart = Image.open(io.BytesIO(png))
    assert chart.width >= 560 and chart.height >= 4 * 20  # 2 double + 2 single blocks, one row each
    fingerprint = headers["X-StyleExpert-Fingerprint"]
    assert fingerprint.startswith("style fingerprint | double: #")
    info = server.object_info()
    entry = server.run_prompt({
        "1": api_node(info, "StyleExpertLoader", ckpt_name=CHECKPOINT),
        "2": api_node(info, "CLIPVisionLoader", clip_name=SIGLIP_NAME),
        "3": api_node(info, "LoadImage", image="style.png"),
        "4": api_node(info, "StyleExpertEncodeStyle", styleexpert=["1", 0], clip_vision=["2", 0], images=["3", 0]),
        "5": api_node(info, "StyleExpertRoutingPreview", styleexpert=["1", 0], style=["4", 0]),
    }, timeout=300)
    assert output_text(entry, "5") == [fingerprint]
    other = post(server, {**body, "image": "style_b.png"})
    assert other[0] == 200 and other[2] != png  # another style image, another chart


@pytest.mark.bad_input
@pytest.mark.parametrize("body, message", [
    (b"not json", "must be JSON"),
    ({"ckpt_name": "missing.safetensors", "clip_name": SIGLIP_NAME, "image": "style.png"}, "not in models/styleexpert"),
    ({"ckpt_name": CHECKPOINT, "clip_name": SIGLIP_NAME, "image": "nowhere.png"}, "upload the style image"),
    ({"ckpt_name": CHECKPOINT, "image": "style.png"}, "'clip_name' is missing"),
    ({"ckpt_name": CHECKPOINT, "clip_name": SIGLIP_NAME, "image": "style.png", "top_k": "2"}, "'top_k' must be"),
])
def test_route_errors_are_json_and_the_server_lives_on(server, body, message):
    status, headers, data = post(server, body)
    assert status == 400 and headers["Content-Type"].startswith("application/json")
    assert message in json.loads(data)["error"]
    assert server.get_json("/system_stats")["system"]  # still serving
