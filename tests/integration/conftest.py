"""ComfyUI integration tests of this pack; the fixtures come from the harness (tests/comfy_harness/README.md)."""

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent

if (HERE / "__init__.py").exists():
    # As a package, these modules would be imported under a package name: the helpers here
    # (styleexpert_files, test_nodes_inprocess) could no longer be imported by their plain names.
    raise pytest.UsageError(f"{HERE} must not contain __init__.py (see conftest.py)")
