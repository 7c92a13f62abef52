"""Pictures of the example workflows from the real frontend: README images and template thumbnails.

    python scripts/render_workflow_images.py

Starts a headless ComfyUI server ($COMFYUI_ROOT, default ~/.cache/comfyui/ComfyUI) with this pack,
opens each example_workflows/*.json in headless Chromium (the test harness in tests/comfy_harness),
and writes docs/images/<name>.png (the whole graph, 2560x1440) and example_workflows/<name>.jpg
(the thumbnail ComfyUI's template browser shows beside <name>.json). The pack copies its example
images into the server's input folder on start, so the Load Image nodes show them.
Prints overlapping node boxes, if any (tests/integration/test_workflows_browser.py fails on them).
"""

from __future__ import annotations

import io
import sys
import tempfile
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from comfy_harness.base_directory import prepare_base_directory  # noqa: E402
from comfy_harness.checkout import locate_comfyui  # noqa: E402
from comfy_harness.frontend_browser import FrontendBrowser, dump_report  # noqa: E402
from comfy_harness.server import ComfyServer  # noqa: E402

WORKFLOWS = ROOT / "example_workflows"
README_IMAGES = ROOT / "docs" / "images"
THUMBNAIL_SIZE = 512  # the template browser shows thumbnails in square cards
CANVAS_COLOUR = (33, 33, 33)  # around the graph where it is not square
# Zoom the canvas onto the groups (the graph without its note) and return their box in page pixels.
FIT_GROUPS = """() => {
    const canvas = window.app.canvas, ds = canvas.ds, rect = canvas.canvas.getBoundingClientRect();
    const boxes = window.app.graph.groups.map(g => g._bounding);
    const gx = Math.min(...boxes.map(b => b[0])), gy = Math.min(...boxes.map(b => b[1]));
    const gw = Math.max(...boxes.map(b => b[0] + b[2])) - gx, gh = Math.max(...boxes.map(b => b[1] + b[3])) - gy;
    ds.fitToBounds([gx, gy, gw, gh]);
    canvas.setDirty(true, true);
    const x = v => (v + ds.offset[0]) * ds.scale + rect.left, y = v => (v + ds.offset[1]) * ds.scale + rect.top;
    return {x: x(gx), y: y(gy), width: gw * ds.scale, height: gh * ds.scale};
}"""


def image_name(workflow: Path) -> str:
    """docs/images file name of a workflow: its title in lower case, words joined by '_'."""
    return workflow.stem.lower().replace(" ", "_") + ".png"


def overlapping(boxes: list[dict]) -> list[tuple[int, int]]:
    """Pairs of node ids whose boxes ([x, y, w, h]) intersect."""
    pairs = []
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            (ax, ay, aw, ah), (bx, by, bw, bh) = a["box"], b["box"]
            if ax < bx + bw and bx < ax + aw and ay < by + bh and by < ay + ah:
                pairs.append((a["id"], b["id"]))
    return pairs


def thumbnail(page, target: Path) -> None:
    """The whole graph (its groups), centred on a square of the canvas colour: the cards are square."""
    page.set_viewport_size({"width": 2560, "height": 1440})
    page.wait_for_timeout(500)  # the canvas follows the new window size on its next frame
    region = page.evaluate(FIT_GROUPS)
    page.wait_for_timeout(300)
    graph = Image.open(io.BytesIO(page.screenshot(clip=region))).convert("RGB")
    side = max(graph.size)
    square = Image.new("RGB", (side, side), CANVAS_COLOUR)
    square.paste(graph, ((side - graph.width) // 2, (side - graph.height) // 2))
    square.resize((THUMBNAIL_SIZE, THUMBNAIL_SIZE), Image.LANCZOS).save(target, quality=85, optimize=True)


def main() -> int:
    import json

    checkout = locate_comfyui()
    if checkout.problem:
        print(checkout.problem, file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        # No missing-models dialog over the pictures: the server has none of the real models.
        base = prepare_base_directory(Path(tmp), {"styleexpert": ROOT},
                                      frontend_settings={"Comfy.Workflow.ShowMissingModelsWarning": False})
        with ComfyServer(checkout.root, base) as server, FrontendBrowser() as browser:
            for path in sorted(WORKFLOWS.glob("*.json")):
                page = browser.open(server.url)  # a fresh page: one workflow tab in the picture
                shot = README_IMAGES / image_name(path)
                report = page.load_workflow(json.loads(path.read_text()), screenshot=shot)
                if report.problems():
                    print(f"{path.name}: {dump_report(report)}", file=sys.stderr)
                thumbnail(page.page, path.with_suffix(".jpg"))
                clashes = overlapping(page.layout()["nodes"])
                print(f"{path.name}: {shot.relative_to(ROOT)}, {path.with_suffix('.jpg').name}"
                      + (f"; OVERLAPPING nodes {clashes}" if clashes else ""))
                page.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
