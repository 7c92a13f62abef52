"""Every test directory gets the ComfyUI test harness's fixtures (tests/comfy_harness/README.md)."""

import sys
from pathlib import Path

import pytest

# The harness is imported as `comfy_harness`, not `tests.comfy_harness`: ComfyUI owns a top-level
# `tests` package. Appended, so that it can never shadow ComfyUI's modules or the pack's.
_TESTS_DIR = str(Path(__file__).resolve().parent)
if _TESTS_DIR not in sys.path:
    sys.path.append(_TESTS_DIR)

pytest_plugins = ["comfy_harness.pytest_plugin"]


@pytest.fixture(scope="session")
def pack_folder_name() -> str:
    return "styleexpert"  # custom_nodes/styleexpert in test servers; the web extension is served under it
