"""Lay out a throwaway ComfyUI --base-directory: model folders, linked packs and model files, user settings."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

MODEL_FOLDERS = (
    "checkpoints",
    "clip_vision",
    "diffusion_models",
    "loras",
    "model_patches",
    "styleexpert",
    "text_encoders",
    "vae",
    "vae_approx",
)
# Settings the frontend reads from <base>/user/default/comfy.settings.json.
FRONTEND_SETTINGS = {
    # Skip the first-run template browser so a test's workflow is the only thing on screen.
    "Comfy.TutorialCompleted": True,
    # Frontend 1.27.10 with a fresh user dir: registering NavigationMode sets these two before
    # they are registered and throws "Cannot read properties of undefined (reading 'id')";
    # storing the values it would set makes that a no-op.
    "Comfy.Canvas.NavigationMode": "legacy",
    "Comfy.Canvas.LeftMouseClickBehavior": "panning",
    "Comfy.Canvas.MouseWheelScroll": "zoom",
}


def prepare_base_directory(
    base_dir: Path,
    custom_nodes: Mapping[str, Path] | None = None,
    model_files: Mapping[str, Path] | None = None,
    frontend_settings: Mapping | None = None,
) -> Path:
    """Lay out a --base-directory: models/<folder>/, custom_nodes/<name> -> pack (symlink), user settings.

    `model_files` maps "<folder>/<file name>" to a file to link there, e.g.
    {"vae/tiny.safetensors": path}. Symlinks keep the repo's .git and the cached weights out of
    the copy; ComfyUI follows them for both packs and model files.
    """
    base_dir = Path(base_dir)
    for folder in MODEL_FOLDERS:
        (base_dir / "models" / folder).mkdir(parents=True, exist_ok=True)
    for folder in ("custom_nodes", "input", "output", "temp", "user"):
        (base_dir / folder).mkdir(parents=True, exist_ok=True)
    for name, pack_dir in (custom_nodes or {}).items():
        _symlink(base_dir / "custom_nodes" / name, Path(pack_dir).resolve())
    for relative, source in (model_files or {}).items():
        _symlink(base_dir / "models" / relative, Path(source).resolve())
    settings_path = base_dir / "user" / "default" / "comfy.settings.json"
    settings_path.parent.mkdir(parents=True, exist_ok=True)
    settings_path.write_text(json.dumps({**FRONTEND_SETTINGS, **(frontend_settings or {})}, indent=1))
    return base_dir


def _symlink(link: Path, target: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(target, target_is_directory=target.is_dir())
