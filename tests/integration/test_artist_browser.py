"""The artist-facing UI in the real frontend (headless Chromium): readouts on the nodes that survive a
cached re-run in a new tab and a page reload, Load Style's thumbnail (after a run, and as soon as a
style is picked), the LoRA list refreshed after Bake, and a checkpoint clicked in the Model Library
placing a StyleExpert loader.

The screenshots `loader_readout.png` and `load_style_thumbnail.png` (tests/artifacts/) are the README's
pictures of the readouts and of Load Style's thumbnail."""

from __future__ import annotations

import pytest
import torch

from styleexpert_core.style_file import save_style, thumbnail_png
from styleexpert_files import write_tiny_checkpoint

pytestmark = [pytest.mark.comfyui, pytest.mark.browser, pytest.mark.slow]
CHECKPOINT, STYLE = "browser_readout.safetensors", "browser_style_00001_.safetensors"


def readout(page, node_id: int) -> str:
    return page.evaluate(f"() => String((window.app.graph.getNodeById({node_id}).widgets || [])"
                         ".find(w => w.name === 'styleexpert_info')?.value ?? '')")


def wait_for_readout(page, node_id: int, text: str, timeout: int = 120_000) -> None:
    page.wait_for_function(f"() => (window.app.graph.getNodeById({node_id})?.widgets || []).some("
                           f"w => w.name === 'styleexpert_info' && String(w.value).includes({text!r}))",
                           timeout=timeout)


def workflow() -> dict:
    """Load Checkpoint and Load Style into Bake LoRA: real nodes only, and quick on a CPU."""
    def node(id_, type_, pos, size, widgets, inputs=(), outputs=()):
        return {"id": id_, "type": type_, "pos": pos, "size": size, "flags": {}, "order": id_ - 1, "mode": 0,
                "inputs": list(inputs), "outputs": list(outputs), "properties": {}, "widgets_values": widgets}
    return {
        "last_node_id": 3, "last_link_id": 2, "version": 0.4, "groups": [], "config": {}, "extra": {},
        "links": [[1, 1, 0, 3, 0, "STYLEEXPERT"], [2, 2, 0, 3, 1, "STYLE_LATENT"]],
        "nodes": [
            node(1, "StyleExpertLoader", [40, 40], [380, 230], [CHECKPOINT, "(none)"],
                 outputs=[{"name": "STYLEEXPERT", "type": "STYLEEXPERT", "links": [1]}]),
            node(2, "StyleExpertLoadStyle", [40, 320], [380, 380], [STYLE],
                 outputs=[{"name": "STYLE_LATENT", "type": "STYLE_LATENT", "links": [2]}]),
            node(3, "StyleExpertBakeLoRA", [480, 40], [420, 330], ["readout_bake", 1.0, False],
                 inputs=[{"name": "styleexpert", "type": "STYLEEXPERT", "link": 1},
                         {"name": "style", "type": "STYLE_LATENT", "link": 2}],
                 outputs=[{"name": "lora_name", "type": "STRING", "links": []}]),
        ],
    }


def test_readouts_thumbnail_list_refresh_and_model_library(browser, comfy_server, artifacts_dir):
    models = comfy_server.base_dir / "models"
    write_tiny_checkpoint(models / "styleexpert", CHECKPOINT)
    (models / "styleexpert_styles").mkdir(parents=True, exist_ok=True)
    y, x = torch.meshgrid(torch.linspace(0, 1, 96), torch.linspace(0, 1, 96), indexing="ij")
    waves = torch.stack([0.5 + 0.5 * torch.sin(9 * x + 4 * y), 0.4 + 0.3 * torch.cos(7 * y), 0.6 - 0.4 * x], -1)
    rings = torch.stack([0.5 + 0.5 * torch.cos(30 * ((x - .5) ** 2 + (y - .5) ** 2) ** .5), 0.3 * y, 0.8 - 0.5 * y], -1)
    images = torch.stack([waves, rings]).clamp(0, 1)  # two "style references" that read well in the picture
    save_style(models / "styleexpert_styles" / STYLE, torch.randn(1, 48), "browser_style", None, thumbnail_png(images))
    frontend = browser.open(comfy_server.url)  # opened after the files were written: the lists hold them
    try:
        first_tab(browser, frontend, comfy_server, artifacts_dir)
    finally:
        frontend.close()


def first_tab(browser, frontend, comfy_server, artifacts_dir) -> None:
    models = comfy_server.base_dir / "models"
    page = frontend.page
    report = frontend.load_workflow(workflow())
    assert report.problems() == [], report
    page.evaluate("() => window.app.queuePrompt(0, 1)")
    wait_for_readout(page, 1, "experts x rank")
    wait_for_readout(page, 3, "wrote models/loras/readout_bake_00001_.safetensors")
    assert "6 experts x rank 4, top_k 2 + shared" in readout(page, 1)
    # Load Style shows the saved thumbnail (ComfyUI's preview images, as LoadImage shows its picture).
    page.wait_for_function("() => (window.app.nodeOutputs['2']?.images || []).length === 1", timeout=60_000)
    # The stock LoRA loader lists the baked file without a manual refresh.
    page.wait_for_function("() => window.LiteGraph.createNode('LoraLoaderModelOnly').widgets"
                           ".find(w => w.name === 'lora_name').options.values"
                           ".includes('readout_bake_00001_.safetensors')",
                           timeout=60_000)
    saved = page.evaluate("() => window.app.graph.serialize().nodes.find(n => n.id === 1)")
    assert saved["widgets_values"] == [CHECKPOINT, "(none)"]  # the readout is no widget value
    assert "experts x rank" in saved["properties"]["styleexpert_readout"]
    page.wait_for_timeout(500)
    page.screenshot(path=str(artifacts_dir / "loader_readout.png"))

    # A new tab re-queues the same workflow: ComfyUI serves the loader from its cache (no readout is
    # sent), and the node still shows its readout.
    kept = frontend.current_workflow()
    tab = browser.open(comfy_server.url)
    try:
        tab.load_workflow(kept)
        wait_for_readout(tab.page, 1, "experts x rank", 10_000)  # shown on load, before any run
        prompt_id = tab.page.evaluate("async () => (await window.app.queuePrompt(0, 1))?.prompt_id ?? null")
        history = comfy_server.wait_history(prompt_id) if prompt_id else wait_last(comfy_server)
        cached = [m[1]["nodes"] for m in history["status"]["messages"] if m[0] == "execution_cached"]
        assert cached and "1" in cached[0]
        wait_for_readout(tab.page, 1, "experts x rank", 10_000)
        assert not (models / "loras" / "readout_bake_00002_.safetensors").exists()  # cached: no second file
        model_library_click_places_a_loader(tab.page)
    finally:
        tab.close()

    page.reload()  # a page reload restores the workflow with its readouts
    page.wait_for_function("() => !!(window.app && window.app.vueAppReady && window.app.graph?.getNodeById(1))",
                           timeout=120_000)
    wait_for_readout(page, 1, "experts x rank", 10_000)


def wait_last(server) -> dict:
    """The newest history entry (queuePrompt returned no id)."""
    import time
    for _ in range(240):
        queue = server.get_json("/queue")
        if not queue["queue_running"] and not queue["queue_pending"]:
            break
        time.sleep(0.5)
    history = server.get_json("/history", {"max_items": 1})
    return next(iter(history.values()))


def model_library_click_places_a_loader(page) -> None:
    """Clicking a checkpoint in the frontend's Model Library adds a loader with that file picked."""
    provider = page.evaluate("() => { const s = document.querySelector('#vue-app').__vue_app__.config"
                             ".globalProperties.$pinia._s.get('modelToNode');"
                             " return s.getNodeProvider('styleexpert')?.nodeDef?.name ?? null; }")
    assert provider == "StyleExpertLoader"
    before = page.evaluate("() => window.app.graph.nodes.filter(n => n.type === 'StyleExpertLoader').length")
    page.click(".model-library-tab-button")
    page.get_by_text("styleexpert", exact=True).first.click()
    page.get_by_text(CHECKPOINT.removesuffix(".safetensors"), exact=True).first.click()
    page.wait_for_function(
        f"() => window.app.graph.nodes.filter(n => n.type === 'StyleExpertLoader').length > {before}")
    picked = page.evaluate("() => window.app.graph.nodes.filter(n => n.type === 'StyleExpertLoader').at(-1)"
                           ".widgets.find(w => w.name === 'ckpt_name').value")
    assert picked == CHECKPOINT


# ---- Load Style's thumbnail as soon as a style is picked, before anything is queued ----

THUMB_STYLES = {"thumb_red_00001_.safetensors": (220, 40, 30), "thumb_blue_00001_.safetensors": (30, 60, 210)}
THUMB_STATE = ("() => { const n = window.app.graph.nodes.find(n => n.type === 'StyleExpertLoadStyle');"
               " const img = n?.imgs?.[0]; if (!img) return null;"
               " const c = document.createElement('canvas'); c.width = c.height = 1;"
               " const ctx = c.getContext('2d'); ctx.drawImage(img, img.naturalWidth / 2, img.naturalHeight / 2, 1, 1,"
               " 0, 0, 1, 1); return {src: img.src, size: [img.naturalWidth, img.naturalHeight],"
               " rgb: Array.from(ctx.getImageData(0, 0, 1, 1).data.slice(0, 3)), node: Array.from(n.size)}; }")


def pick_in_dropdown(page, node_id: int, widget: str, value: str) -> None:
    """Click the node's combo on the canvas and the value in the menu it opens, as a user does."""
    x, y = page.evaluate(
        f"""() => {{
            const node = window.app.graph.getNodeById({node_id});
            const w = node.widgets.find(w => w.name === {widget!r});
            const [cx, cy] = window.app.canvas.ds.convertOffsetToCanvas(
                [node.pos[0] + node.size[0] / 2, node.pos[1] + w.y + window.LiteGraph.NODE_WIDGET_HEIGHT / 2]);
            const box = window.app.canvas.canvas.getBoundingClientRect();
            return [box.left + cx, box.top + cy];
        }}""")
    page.mouse.click(x, y)
    page.locator(".litecontextmenu .litemenu-entry", has_text=value).first.click()


def node_box(page, node_id: int, margin: int) -> dict:
    """The node's box on the page (title bar included) with a margin, for a screenshot of it alone."""
    return page.evaluate(
        f"""() => {{
            const node = window.app.graph.getNodeById({node_id}), ds = window.app.canvas.ds;
            const box = window.app.canvas.canvas.getBoundingClientRect();
            const [x, y] = ds.convertOffsetToCanvas([node.pos[0], node.pos[1] - window.LiteGraph.NODE_TITLE_HEIGHT]);
            return {{x: box.left + x - {margin}, y: box.top + y - {margin},
                     width: node.size[0] * ds.scale + 2 * {margin},
                     height: (node.size[1] + window.LiteGraph.NODE_TITLE_HEIGHT) * ds.scale + 2 * {margin}}};
        }}""")


def one_load_style(style: str) -> dict:
    return {"last_node_id": 1, "last_link_id": 0, "version": 0.4, "groups": [], "config": {}, "extra": {},
            "links": [], "nodes": [{"id": 1, "type": "StyleExpertLoadStyle", "pos": [80, 80], "size": [300, 100],
                                    "flags": {}, "order": 0, "mode": 0, "inputs": [], "properties": {},
                                    "outputs": [{"name": "STYLE_LATENT", "type": "STYLE_LATENT", "links": []}],
                                    "widgets_values": [style]}]}


def wait_for_thumbnail(page, name: str) -> dict:
    """The Load Style node's picture once it is the one of the style file `name`."""
    page.wait_for_function(f"() => ({THUMB_STATE})()?.src.includes({name!r})", timeout=30_000)
    return page.evaluate(THUMB_STATE)


def test_load_style_shows_the_picked_thumbnail_before_any_run(browser, comfy_server, artifacts_dir):
    styles = comfy_server.base_dir / "models" / "styleexpert_styles"
    styles.mkdir(parents=True, exist_ok=True)
    y, x = torch.meshgrid(torch.linspace(-1, 1, 256), torch.linspace(-1, 1, 256), indexing="ij")
    fade = (1 - 0.45 * (x ** 2 + y ** 2)).clamp(0, 1)[None, ..., None]  # 1 at the centre, the pixel checked
    for name, rgb in THUMB_STYLES.items():
        cover = torch.tensor(rgb, dtype=torch.float32).div(255) * fade
        save_style(styles / name, torch.randn(1, 48), name.split("_0")[0], None, thumbnail_png(cover))
    history_before = len(comfy_server.get_json("/history"))
    frontend = browser.open(comfy_server.url)  # opened after the files were written: the list holds them
    page = frontend.page
    errors: list[tuple[str, str]] = []  # (text, url); a fresh user directory's userdata 404s are no problem
    page.on("console", lambda m: errors.append((m.text, m.location.get("url", ""))) if m.type == "error"
            and "/api/userdata/" not in m.location.get("url", "") else None)
    page.on("pageerror", lambda error: errors.append((str(error), "")))
    try:
        # A workflow opened with a style picked shows that style's picture at once.
        assert frontend.load_workflow(one_load_style("thumb_red_00001_.safetensors")).problems() == []
        assert wait_for_thumbnail(page, "thumb_red_00001_.safetensors")["rgb"] != [0, 0, 0]
        # A node placed fresh shows its first style's picture.
        node_id = page.evaluate("() => { window.app.graph.clear(); window.app.canvas.ds.scale = 1;"
                                " window.app.canvas.ds.offset = [0, 0]; const n = window.LiteGraph.createNode("
                                "'StyleExpertLoadStyle'); n.pos = [80, 80]; window.app.graph.add(n); return n.id; }")
        wait_for_thumbnail(page, page.evaluate(f"() => window.app.graph.getNodeById({node_id}).widgets[0].value"))
        for name, rgb in THUMB_STYLES.items():  # the list starts with blue: each pick changes the picture
            pick_in_dropdown(page, node_id, "style_name", name)
            state = wait_for_thumbnail(page, name)
            assert state["size"] == [256, 256]
            assert max(abs(a - b) for a, b in zip(state["rgb"], rgb)) <= 12, (name, state["rgb"])
            assert state["node"][1] >= 256  # the node grew to show the picture
        page.wait_for_function(f"() => {{ const n = window.app.graph.getNodeById({node_id});"
                               " return n.widgets.some(w => w.name === '$$canvas-image-preview')"
                               " && n.size[1] >= n.computeSize()[1]; }")  # room for all of the preview
        page.wait_for_timeout(300)
        page.screenshot(path=str(artifacts_dir / "load_style_thumbnail.png"), clip=node_box(page, node_id, 24))
        # A workflow naming a style this machine lacks: no picture, and no request that fails.
        report = frontend.load_workflow(one_load_style("absent_style.safetensors"))
        assert report.page_errors == [] and report.console_errors == [], report
        page.wait_for_timeout(500)
        assert page.evaluate("() => window.app.graph.getNodeById(1).imgs?.length ?? 0") == 0
        assert errors == []
        assert len(comfy_server.get_json("/history")) == history_before  # nothing was queued
    finally:
        frontend.close()
