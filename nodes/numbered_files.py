"""New files named with a counter, as ComfyUI's own save nodes name them: `<name>_00001_.safetensors`."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import folder_paths

from ..styleexpert_core.errors import InputError
from ..styleexpert_core.safe_write import reserve_new_file

SAFE_NAME = re.compile(r"[\w\-. ]+")  # used with fullmatch: no trailing newline slips through


def base_file_name(filename: str, listing: str) -> str:
    """The name without `.safetensors`, or an error: no path parts, no hidden (dot) files, which
    `listing` (e.g. "the LoRA list") would never show."""
    name = filename.strip().removesuffix(".safetensors")
    if not name or not SAFE_NAME.fullmatch(name):
        raise InputError(f"{filename!r} is not a usable file name: use letters, digits, spaces, '-', '_' and '.'.")
    if name.startswith("."):
        raise InputError(f"{filename!r} starts with '.', which makes a hidden file {listing} never shows; "
                         "start the name with a letter or digit.")
    return name


def write_numbered(folder: str, name: str, write: Callable[[str], None], suffix: str = ".safetensors") -> str:
    """Call write(path) for the next free `<name>_<counter>_<suffix>` in `folder` and return the path.
    The name is reserved first, so a run never replaces a file (not even one written meanwhile by
    another queue); the reservation is removed again if writing fails."""
    os.makedirs(folder, exist_ok=True)
    full_folder, base, counter, _, _ = folder_paths.get_save_image_path(name, folder)
    while not reserve_new_file(path := os.path.join(full_folder, f"{base}_{counter:05}_{suffix}")):
        counter += 1
    try:
        write(path)
    except BaseException:
        Path(path).unlink(missing_ok=True)
        raise
    return path
