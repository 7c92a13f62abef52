"""Drive the real ComfyUI frontend (comfyui-frontend-package 1.27.10) in headless Debian Chromium.

Uses python playwright with the system browser (`executable_path`), never `playwright install`.
Requests to hosts other than the test server are aborted (the frontend asks api.comfy.org
about node packs; the test machines are offline), and the console noise that causes is kept
apart from real problems.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

CHROMIUM_ENV = "STYLEEXPERT_CHROMIUM"
DEFAULT_CHROMIUM = "/usr/bin/chromium"
CHROMIUM_INSTALL_HINT = "apt-get update && apt-get install -y chromium"
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
# 404s a fresh user directory produces on every start (no user.css, no saved workflows/templates).
_BENIGN_MISSING = re.compile(r"/(user\.css|api/user\.css|api/userdata[/?])")


def chromium_executable() -> str:
    return os.environ.get(CHROMIUM_ENV, DEFAULT_CHROMIUM)


def browser_problem() -> str | None:
    """Why the browser tests cannot run here, or None."""
    executable = chromium_executable()
    if not (Path(executable).is_file() or shutil.which(executable)):
        return f"no Chromium at {executable} ({CHROMIUM_ENV} overrides); install it with `{CHROMIUM_INSTALL_HINT}`"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as error:
        return f"python playwright is not importable ({error}); it is in requirements-dev.txt"
    return None


@dataclass
class WorkflowLoadReport:
    """What happened while the frontend loaded one workflow."""

    node_count: int
    missing_node_types: list[str]
    dialogs: list[str]
    toasts: list[str]
    console_errors: list[str]
    page_errors: list[str]
    blocked_requests: list[str] = field(default_factory=list)  # external hosts; not problems
    screenshot: Path | None = None
    api_prompt: dict | None = None  # the frontend's own graphToPrompt().output

    def problems(self) -> list[str]:
        found = []
        if self.missing_node_types:
            found.append(f"missing node types: {self.missing_node_types}")
        found += [f"dialog: {text}" for text in self.dialogs]
        found += [f"toast: {text}" for text in self.toasts]
        found += [f"console error: {text}" for text in self.console_errors]
        found += [f"page error: {text}" for text in self.page_errors]
        return found


class FrontendBrowser:
    """Headless Chromium via playwright; use as a context manager, one per test session."""

    def __init__(self, executable: str | None = None, viewport=(1600, 1000), timeout_ms: int = 90_000):
        self.executable = executable or chromium_executable()
        self.viewport = {"width": viewport[0], "height": viewport[1]}
        self.timeout_ms = timeout_ms
        self._playwright = None
        self._browser = None

    def __enter__(self) -> FrontendBrowser:
        from playwright.sync_api import sync_playwright

        self._playwright = sync_playwright().start()
        self._browser = self._playwright.chromium.launch(executable_path=self.executable, args=list(CHROMIUM_ARGS))
        return self

    def __exit__(self, *exc) -> None:
        if self._browser is not None:
            self._browser.close()
        if self._playwright is not None:
            self._playwright.stop()

    def open(self, server_url: str) -> FrontendPage:
        """A fresh browser context on the server's UI, waited until the app and its graph exist."""
        context = self._browser.new_context(viewport=self.viewport)
        context.set_default_timeout(self.timeout_ms)
        return FrontendPage(context, server_url.rstrip("/"), self.timeout_ms)


class FrontendPage:
    def __init__(self, context, server_url: str, timeout_ms: int):
        self.context = context
        self.server_url = server_url
        self.blocked_requests: list[str] = []
        self._console: list[tuple[str, str, str]] = []  # (type, text, url)
        self._page_errors: list[str] = []
        context.route("**/*", self._route)
        self.page = context.new_page()
        self.page.on("console", lambda m: self._console.append((m.type, m.text, (m.location or {}).get("url", ""))))
        self.page.on("pageerror", lambda error: self._page_errors.append(f"{error.name}: {error.message}"))
        self.page.goto(server_url)
        # window.app is set by GraphView; vueAppReady flips once extensions and settings are loaded.
        self.page.wait_for_function(
            "() => !!(window.app && window.app.vueAppReady && window.app.graph && window.app.canvas)",
            timeout=timeout_ms,
        )
        console_errors, page_errors = self._problems_since(0, 0)
        self.startup_problems = console_errors + page_errors  # before any workflow was loaded

    def _route(self, route) -> None:
        url = route.request.url
        if url.startswith((self.server_url, "data:", "blob:")):
            route.continue_()
        else:
            self.blocked_requests.append(url)
            route.abort()

    def load_workflow(
        self, workflow: dict, *, screenshot: Path | None = None, settle_ms: int = 1000
    ) -> WorkflowLoadReport:
        """app.loadGraphData(workflow) as the editor does when a file is opened; report what went wrong."""
        console_mark, error_mark = len(self._console), len(self._page_errors)
        blocked_mark = len(self.blocked_requests)
        self.page.evaluate("async (wf) => { await window.app.loadGraphData(wf); }", workflow)
        self.page.wait_for_timeout(settle_ms)  # dialogs and toasts are shown asynchronously
        missing = self.page.evaluate("() => window.app.graph.nodes.filter(n => n.has_errors).map(n => n.type)")
        dialogs = self.page.evaluate(
            "() => Array.from(document.querySelectorAll('.p-dialog')).map(d => d.innerText.trim()).filter(Boolean)"
        )
        toasts = self.page.evaluate(
            "() => Array.from(document.querySelectorAll('.p-toast-message'))"
            ".map(t => t.innerText.trim()).filter(Boolean)"
        )
        console_errors, page_errors = self._problems_since(console_mark, error_mark)
        if screenshot is not None:
            screenshot = Path(screenshot)
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            viewport = self.page.viewport_size
            self.page.set_viewport_size({"width": 2560, "height": 1440})
            self._fit_graph_in_view()
            self.page.screenshot(path=str(screenshot))
            self.page.set_viewport_size(viewport)
        return WorkflowLoadReport(
            node_count=self.page.evaluate("() => window.app.graph.nodes.length"),
            missing_node_types=sorted(set(missing)),
            dialogs=dialogs,
            toasts=toasts,
            console_errors=console_errors,
            page_errors=page_errors,
            blocked_requests=self.blocked_requests[blocked_mark:],
            screenshot=screenshot,
            api_prompt=self.graph_to_prompt(),
        )

    def _fit_graph_in_view(self) -> None:
        """Zoom so the whole graph shows (as the editor's "fit view"), for readable screenshots."""
        self.page.evaluate(
            """() => {
                const nodes = window.app.graph.nodes;
                if (!nodes.length || !window.app.canvas.ds.fitToBounds) return;
                const xs = nodes.map(n => n.pos[0]), ys = nodes.map(n => n.pos[1] - 30);
                const x2 = nodes.map(n => n.pos[0] + n.size[0]), y2 = nodes.map(n => n.pos[1] + n.size[1]);
                const [x, y] = [Math.min(...xs), Math.min(...ys)];
                const ds = window.app.canvas.ds;
                ds.fitToBounds([x, y, Math.max(...x2) - x, Math.max(...y2) - y]);
                // Below ~0.6 the canvas drops text (low-quality mode): keep it readable instead.
                if (ds.scale < 0.62) { ds.scale = 0.62; ds.offset = [-x + 20, -y + 40]; }
                window.app.canvas.setDirty(true, true);
            }"""
        )
        self.page.wait_for_timeout(300)

    def layout(self) -> dict:
        """Where the editor drew the current graph: {"nodes": [{id, type, mode, box}], "groups": [{title, box}]};
        boxes are [x, y, width, height] in graph units, a node's title bar included."""
        return self.page.evaluate(
            """() => {
                const title = window.LiteGraph.NODE_TITLE_HEIGHT;
                const nodes = window.app.graph.nodes.map(n => ({id: n.id, type: n.type, mode: n.mode,
                    box: [n.pos[0], n.pos[1] - title, n.size[0], n.size[1] + title]}));
                const groups = window.app.graph.groups.map(g => ({title: g.title, box: Array.from(g._bounding)}));
                return {nodes, groups};
            }"""
        )

    def graph_to_prompt(self) -> dict:
        """The frontend's own conversion of the current graph to an API prompt."""
        return self.page.evaluate("async () => (await window.app.graphToPrompt()).output")

    def current_workflow(self) -> dict:
        """The current graph serialised the way "Save" writes it (UI format)."""
        return self.page.evaluate("async () => (await window.app.graphToPrompt()).workflow")

    def close(self) -> None:
        self.context.close()

    def _problems_since(self, console_mark: int, error_mark: int) -> tuple[list[str], list[str]]:
        console_errors = [
            f"{text} ({url})"
            for kind, text, url in self._console[console_mark:]
            # errors located at other hosts come from the requests _route aborted
            if kind == "error" and (not url or url.startswith(self.server_url)) and not _BENIGN_MISSING.search(url)
        ]
        return console_errors, list(self._page_errors[error_mark:])


def dump_report(report: WorkflowLoadReport) -> str:
    """Readable summary for assertion messages."""
    return json.dumps({k: v for k, v in vars(report).items() if k != "api_prompt"}, indent=1, default=str)
