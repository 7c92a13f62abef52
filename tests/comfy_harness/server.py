"""Run a real ComfyUI server (python main.py --cpu ...) in a throwaway base directory and talk to it over HTTP."""

from __future__ import annotations

import ctypes
import io
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

log = logging.getLogger(__name__)


class ServerStartError(RuntimeError):
    pass


class CustomNodeImportError(RuntimeError):
    pass


class PromptRejected(RuntimeError):
    """HTTP 400 from POST /prompt; `node_errors` is ComfyUI's per-node validation report."""

    def __init__(self, error: dict, node_errors: dict):
        self.error, self.node_errors = error, node_errors
        super().__init__(format_prompt_errors(error, node_errors))


class PromptFailed(RuntimeError):
    """The prompt ran and ComfyUI reported status "error" (an exception in a node)."""

    def __init__(self, prompt_id: str, history_entry: dict):
        self.prompt_id, self.history_entry = prompt_id, history_entry
        super().__init__(f"prompt {prompt_id} failed:\n{format_execution_messages(history_entry)}")


class ComfyServer:
    """One `python main.py --cpu` process. Use as a context manager or call start()/stop()."""

    def __init__(
        self,
        comfy_root: Path,
        base_dir: Path,
        *,
        python: str = sys.executable,
        port: int | None = None,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ):
        self.comfy_root = Path(comfy_root)
        self.base_dir = Path(base_dir)
        self.python = python
        self.port = port or free_port()
        self.extra_args = list(extra_args)
        self.env = env
        self.log_path = self.base_dir / "server.log"
        self.process: subprocess.Popen | None = None
        self.startup_seconds: float | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [
            self.python,
            "main.py",
            "--cpu",
            "--listen",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--disable-auto-launch",
            "--base-directory",
            str(self.base_dir),
            "--disable-api-nodes",
            "--database-url",
            "sqlite:///:memory:",
            *self.extra_args,
        ]

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, timeout: float = 180.0) -> ComfyServer:
        env = dict(os.environ if self.env is None else self.env)
        # The repo root on PYTHONPATH would put our `nodes/` package within reach of `import nodes`.
        env.pop("PYTHONPATH", None)
        env.setdefault("PYTHONUNBUFFERED", "1")
        self.base_dir.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        with open(self.log_path, "wb") as log_file:  # the child keeps its own descriptor
            self.process = subprocess.Popen(
                self.command(),
                cwd=self.comfy_root,
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_terminate_with_parent,  # noqa: PLW1509 (see below)
            )
        try:
            self._wait_until_ready(timeout)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.perf_counter() - started
        log.info("ComfyUI server on %s ready in %.1f s (log: %s)", self.url, self.startup_seconds, self.log_path)
        return self

    def stop(self, grace: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            log.warning("ComfyUI server pid %s ignored SIGTERM for %.0f s; killing it", self.process.pid, grace)
            self.process.kill()
            self.process.wait(grace)

    def __enter__(self) -> ComfyServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _wait_until_ready(self, timeout: float) -> None:
        # main.py loads every node before it opens the HTTP port, so an answer means "ready".
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerStartError(
                    f"ComfyUI exited with code {self.process.returncode} during start-up:\n{self.log_tail()}"
                )
            try:
                self.get_json("/system_stats", timeout=2)
                return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.25)
        raise ServerStartError(f"ComfyUI did not answer on {self.url} within {timeout:.0f} s:\n{self.log_tail()}")

    # -- log -------------------------------------------------------------------------------

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 120) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def failed_custom_node_imports(self) -> list[str]:
        """Paths ComfyUI listed as '(IMPORT FAILED): <path>' in its custom-node import summary."""
        return re.findall(r"\(IMPORT FAILED\): (.+)$", self.log_text(), flags=re.MULTILINE)

    def check_custom_nodes_imported(self) -> None:
        failed = self.failed_custom_node_imports()
        if failed:
            raise CustomNodeImportError(
                f"ComfyUI could not import custom node pack(s) {failed}; server log:\n{self.log_tail(200)}"
            )

    # -- HTTP ------------------------------------------------------------------------------

    def get(self, path: str, params: Mapping | None = None, timeout: float = 30) -> bytes:
        url = self.url + path + ("?" + urllib.parse.urlencode(params) if params else "")
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.read()

    def get_json(self, path: str, params: Mapping | None = None, timeout: float = 30):
        return json.loads(self.get(path, params, timeout))

    def post_json(self, path: str, body, timeout: float = 30):
        request = urllib.request.Request(
            self.url + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            data = response.read()
        return json.loads(data) if data else None

    def object_info(self, node_class: str | None = None) -> dict:
        info = self.get_json(f"/object_info/{node_class}" if node_class else "/object_info", timeout=60)
        return info[node_class] if node_class else info

    def post_prompt(
        self,
        prompt: Mapping,
        *,
        client_id: str | None = None,
        extra_data: Mapping | None = None,
        allow_node_errors: bool = False,
    ) -> str:
        """Queue an API-format prompt; returns its prompt_id.

        Raises PromptRejected on HTTP 400 (no output validated) and, unless allow_node_errors,
        also when some outputs failed validation (ComfyUI then runs only the valid ones).
        """
        body = {"prompt": prompt, "client_id": client_id or uuid.uuid4().hex}
        if extra_data:
            body["extra_data"] = dict(extra_data)
        try:
            answer = self.post_json("/prompt", body)
        except urllib.error.HTTPError as error:
            if error.code != 400:
                raise
            report = json.loads(error.read() or b"{}")
            raise PromptRejected(report.get("error", {}), report.get("node_errors", {})) from None
        if answer.get("node_errors") and not allow_node_errors:
            # ComfyUI queues the outputs that validated and silently drops the others.
            raise PromptRejected(
                {
                    "type": "partially_invalid_prompt",
                    "message": f"queued as {answer['prompt_id']} without the invalid outputs",
                },
                answer["node_errors"],
            )
        return answer["prompt_id"]

    def wait_history(self, prompt_id: str, timeout: float = 120.0, *, raise_on_error: bool = True) -> dict:
        """Poll /history/<id> until the prompt finished; returns its history entry.

        Raises PromptFailed when ComfyUI reports status "error" (unless raise_on_error=False),
        TimeoutError (with the server log tail) when it does not finish in time.
        """
        deadline = time.monotonic() + timeout
        while True:
            entry = self.get_json(f"/history/{prompt_id}").get(prompt_id)
            if entry and entry.get("status", {}).get("completed") is not None:
                if raise_on_error and entry["status"].get("status_str") != "success":
                    raise PromptFailed(prompt_id, entry)
                return entry
            if self.process is not None and self.process.poll() is not None:
                raise ServerStartError(f"ComfyUI exited while running {prompt_id}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"prompt {prompt_id} did not finish within {timeout:.0f} s:\n{self.log_tail()}")
            time.sleep(0.1)

    def run_prompt(self, prompt: Mapping, timeout: float = 120.0) -> dict:
        return self.wait_history(self.post_prompt(prompt), timeout)

    def get_image(self, filename: str, subfolder: str = "", type: str = "output"):
        """GET /view as a PIL image (PreviewImage writes type="temp", SaveImage type="output")."""
        from PIL import Image

        data = self.get("/view", {"filename": filename, "subfolder": subfolder, "type": type})
        image = Image.open(io.BytesIO(data))
        image.load()
        return image

    def output_images(self, history_entry: dict, node_id: str | int) -> list:
        results = history_entry["outputs"].get(str(node_id), {}).get("images", [])
        return [self.get_image(r["filename"], r.get("subfolder", ""), r.get("type", "output")) for r in results]

    def interrupt(self) -> None:
        self.post_json("/interrupt", {})

    def free(self, unload_models: bool = True, free_memory: bool = True) -> None:
        self.post_json("/free", {"unload_models": unload_models, "free_memory": free_memory})


def output_text(history_entry: dict, node_id: str | int) -> list[str]:
    """The `text` UI output of a node (e.g. PreviewAny, StyleExpertTestInspect)."""
    return list(history_entry["outputs"].get(str(node_id), {}).get("text", []))


def inspected(history_entry: dict, node_id: str | int):
    """The JSON summary a StyleExpertTestInspect node reported."""
    texts = output_text(history_entry, node_id)
    if not texts:
        raise KeyError(f"node {node_id} reported no text; outputs: {sorted(history_entry['outputs'])}")
    return json.loads(texts[0])


def format_prompt_errors(error: Mapping, node_errors: Mapping) -> str:
    lines = [f"{error.get('type', 'error')}: {error.get('message', '')} {error.get('details', '')}".strip()]
    for node_id, report in node_errors.items():
        for item in report.get("errors", []):
            lines.append(
                f"  node {node_id} ({report.get('class_type')}): {item.get('type')}: {item.get('message')}"
                f" {item.get('details', '')}".rstrip()
            )
    return "\n".join(lines)


def format_execution_messages(history_entry: Mapping) -> str:
    lines = []
    for event, data in history_entry.get("status", {}).get("messages", []):
        if event == "execution_error":
            lines.append(
                f"{data.get('node_type')} (node {data.get('node_id')}): {data.get('exception_type')}: "
                f"{data.get('exception_message')}\n{''.join(data.get('traceback', []))}"
            )
        elif event in ("execution_interrupted",):
            lines.append(f"{event}: {data}")
    return "\n".join(lines) or json.dumps(history_entry.get("status"), indent=1)


# SIGTERM the server when the test process dies, even by SIGKILL, so an interrupted run leaves
# no server behind. prctl is resolved here, before any fork: the function that runs in the
# child between fork and exec only makes one foreign call (no imports, no Python locks).
try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux
    _prctl = None
_PR_SET_PDEATHSIG = 1


def _terminate_with_parent() -> None:
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
