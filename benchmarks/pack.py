"""This repository's node pack imported as a package, the way ComfyUI imports it (nodes/ import
the core relatively), without ComfyUI: enough for modules that need only torch and the core."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACK = "styleexpert_pack"


def pack_module(name: str):
    """e.g. pack_module("nodes.dynamic_hooks")."""
    if PACK not in sys.modules:
        spec = importlib.util.spec_from_file_location(PACK, ROOT / "__init__.py", submodule_search_locations=[str(ROOT)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[PACK] = module
        spec.loader.exec_module(module)
    return importlib.import_module(f"{PACK}.{name}")
