"""What installing the pack brings: its runtime dependencies and the `styleexpert` command, nothing of ComfyUI's own."""

from __future__ import annotations

import tomllib
from pathlib import Path

from setuptools import find_packages

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _names(requirements) -> set[str]:
    names = set()
    for line in requirements:
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            names.add(line.split(";")[0].split("[")[0].split("=")[0].split(">")[0].split("<")[0].split("~")[0].strip())
    return names


def test_installing_the_pack_never_replaces_comfyuis_frontend():
    runtime = _names(PYPROJECT["project"]["dependencies"])
    assert not {name for name in runtime if name.startswith("comfyui")}, runtime
    # The tests still get the frontend they drive: the dev extra and requirements-dev.txt (scripts/setup_env.sh).
    assert "comfyui-frontend-package" in _names(PYPROJECT["project"]["optional-dependencies"]["dev"])
    assert "comfyui-frontend-package" in _names((ROOT / "requirements-dev.txt").read_text().splitlines())


def test_a_pip_install_ships_only_the_core_package():
    """`pip install .` must not add a top-level `nodes` (ComfyUI owns that name) or the tests."""
    include = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = find_packages(str(ROOT), include=include)
    assert "styleexpert_core" in packages
    assert all(p.split(".")[0] == "styleexpert_core" for p in packages), packages
    assert PYPROJECT["project"]["scripts"] == {"styleexpert": "styleexpert_core.cli:main"}
