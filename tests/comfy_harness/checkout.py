"""Find the ComfyUI checkout the integration tests run against, and say loudly when there is none."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

COMFYUI_ROOT_ENV = "COMFYUI_ROOT"
REQUIRE_COMFYUI_ENV = "STYLEEXPERT_REQUIRE_COMFYUI"
DEFAULT_COMFYUI_ROOT = Path.home() / ".cache" / "comfyui" / "ComfyUI"
CHECKOUT_TOOL = "../shared/tools/comfyui-checkout"

# Files whose absence means "not a ComfyUI checkout" rather than "a broken one".
_MARKER_FILES = ("main.py", "nodes.py", "folder_paths.py", "comfyui_version.py", "comfy/model_management.py")


@dataclass(frozen=True)
class ComfyCheckout:
    root: Path
    problem: str | None  # None when the checkout looks usable
    version: str | None = None

    @property
    def usable(self) -> bool:
        return self.problem is None


def comfyui_required() -> bool:
    """CI sets STYLEEXPERT_REQUIRE_COMFYUI=1 so that a missing checkout fails instead of skipping."""
    return os.environ.get(REQUIRE_COMFYUI_ENV, "").strip().lower() in {"1", "true", "yes"}


def locate_comfyui() -> ComfyCheckout:
    configured = os.environ.get(COMFYUI_ROOT_ENV)
    root = Path(configured).expanduser() if configured else DEFAULT_COMFYUI_ROOT
    source = f"{COMFYUI_ROOT_ENV}={configured}" if configured else f"{COMFYUI_ROOT_ENV} unset, default"
    missing = [name for name in _MARKER_FILES if not (root / name).is_file()]
    if missing:
        what = (
            "no ComfyUI checkout"
            if not root.exists()
            else f"incomplete ComfyUI checkout (missing {', '.join(missing)})"
        )
        return ComfyCheckout(
            root=root,
            problem=(
                f"{what} at {root} ({source}); run {CHECKOUT_TOOL} <ComfyUI git dir> [{root}] "
                f"to lay one out, or point {COMFYUI_ROOT_ENV} at an existing ComfyUI 0.3.64 checkout"
            ),
        )
    return ComfyCheckout(root=root.resolve(), problem=None, version=_read_version(root))


def _read_version(root: Path) -> str | None:
    for line in (root / "comfyui_version.py").read_text().splitlines():
        if line.startswith("__version__"):
            return line.split("=", 1)[1].strip().strip("\"'")
    return None
