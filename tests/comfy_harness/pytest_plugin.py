"""Fixtures for tests against real ComfyUI 0.3.64: in-process imports, tiny models, a live server, a browser.

Fixtures (session-scoped unless noted):
  comfyui_checkout        ComfyCheckout(root, problem, version) of $COMFYUI_ROOT or ~/.cache/comfyui/ComfyUI
  comfy                   namespace of imported ComfyUI modules (nodes, folder_paths, comfy.*, io, ui, ...),
                          CPU only, base directory in a session tmp dir (comfy.base_dir)
  load_pack               load_pack(dir) -> {node_id: class}, via nodes.load_custom_node
  pack_dir / pack         this repository / its registered node classes (skips until __init__.py exists)
  tiny_flux (function)    ModelPatcher over a tiny Flux (hidden 64, 2+2 blocks, context/pooled 32)
  tiny_siglip             tiny SigLIP ClipVisionModel (27 layers, 16 tokens, width 32)
  flux_unet_file, tiny_vae_file, siglip_file   cached random-weight files the stock loaders accept
  comfy_server_factory    start(...) -> ComfyServer in its own base directory (stopped at session end)
  comfy_server            a server with this pack, the test-only pack and the test model files
  browser / frontend (function)   headless Chromium / a FrontendPage on comfy_server's UI
  artifacts_dir           tests/artifacts/ (gitignored) for screenshots

A missing ComfyUI checkout skips every test in this directory with the reason and a summary
line; STYLEEXPERT_REQUIRE_COMFYUI=1 (CI) turns that into failures. Missing Chromium skips the
browser tests the same way; STYLEEXPERT_REQUIRE_BROWSER=1 turns that into failures.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import tiny_model_files
from base_directory import prepare_base_directory
from comfy_checkout import comfyui_required, locate_comfyui
from comfy_server import ComfyServer
from frontend_browser import FrontendBrowser, browser_problem

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
TEST_PACK_DIR = HERE / "test_pack_testing_nodes"
ARTIFACTS_DIR = REPO_ROOT / "tests" / "artifacts"
PACK_FOLDER_NAME = "styleexpert"  # custom_nodes/<name> in the server; also its web-extension name
TEST_PACK_FOLDER_NAME = "styleexpert_test_nodes"
REQUIRE_BROWSER_ENV = "STYLEEXPERT_REQUIRE_BROWSER"

# The test-only pack is loaded by ComfyUI, never collected by pytest.
collect_ignore = ["test_pack_testing_nodes"]

CHECKOUT = locate_comfyui()
# For the terminal summary: tests stopped by a missing checkout, and why the browser is missing.
_checkout_stopped: list[str] = []
_browser_missing: list[str] = []


if (HERE / "__init__.py").exists():
    # As a package, these modules would be imported as tests.integration.*: the helpers could no
    # longer be imported by their plain names, and `tests` would clash with ComfyUI's own
    # top-level `tests` package once the ComfyUI root leads sys.path.
    raise pytest.UsageError(f"{HERE} must not contain __init__.py (see conftest.py)")


def pytest_configure(config):
    config.addinivalue_line("markers", "browser: drives the ComfyUI frontend in headless Chromium")


def pytest_collection_modifyitems(config, items):
    # `-m "not comfyui"` deselects everything here (the marker is declared in pyproject.toml).
    for item in items:
        if Path(str(item.path)).is_relative_to(HERE):
            item.add_marker(pytest.mark.comfyui)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    # Only items under this directory reach this conftest's hook.
    if not CHECKOUT.usable:
        _checkout_stopped.append(item.nodeid)
        if comfyui_required():
            pytest.fail(CHECKOUT.problem, pytrace=False)
        pytest.skip(CHECKOUT.problem)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if _checkout_stopped:
        required = comfyui_required()
        verb = "FAILED" if required else "SKIPPED"
        terminalreporter.write_sep(
            "!",
            f"{len(_checkout_stopped)} ComfyUI integration test(s) {verb}: {CHECKOUT.problem}",
            red=required,
            yellow=not required,
            bold=True,
        )
    for reason in _browser_missing:
        required = _browser_required()
        terminalreporter.write_sep(
            "!",
            f"browser tests {'FAILED' if required else 'SKIPPED'}: {reason}",
            red=required,
            yellow=not required,
            bold=True,
        )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        servers = {id(v): v for v in getattr(item, "funcargs", {}).values() if isinstance(v, ComfyServer)}
        for server in servers.values():
            report.sections.append((f"ComfyUI server log ({server.log_path}, last 150 lines)", server.log_tail(150)))


def _browser_required() -> bool:
    return os.environ.get(REQUIRE_BROWSER_ENV, "").strip().lower() in {"1", "true", "yes"}


# -- in-process ComfyUI ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def comfyui_checkout():
    if not CHECKOUT.usable:  # also guards direct use from other directories
        pytest.fail(CHECKOUT.problem, pytrace=False) if comfyui_required() else pytest.skip(CHECKOUT.problem)
    return CHECKOUT


@pytest.fixture(scope="session")
def comfy(comfyui_checkout, tmp_path_factory):
    from comfy_harness import import_comfy

    return import_comfy(comfyui_checkout.root, tmp_path_factory.mktemp("comfy_in_process_base"))


@pytest.fixture(scope="session")
def load_pack(comfy):
    from comfy_harness import load_custom_node_pack

    return lambda pack_directory: load_custom_node_pack(comfy, Path(pack_directory))


@pytest.fixture(scope="session")
def pack_dir() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def pack(load_pack, pack_dir):
    if not (pack_dir / "__init__.py").is_file():
        pytest.skip(f"the pack has no {pack_dir / '__init__.py'} yet, so there is nothing for ComfyUI to load")
    return load_pack(pack_dir)


@pytest.fixture
def tiny_flux(comfy):
    from tiny_flux import tiny_flux_patcher

    return tiny_flux_patcher()


@pytest.fixture(scope="session")
def tiny_siglip(comfy, tmp_path_factory):
    from tiny_siglip import tiny_siglip_model

    return tiny_siglip_model(tmp_path_factory.mktemp("tiny_siglip"))


# -- model files for the stock loaders (cached in ~/.cache/styleexpert/test-models) ----------


@pytest.fixture(scope="session")
def flux_unet_file(comfy) -> Path:
    return tiny_model_files.flux_unet_file()


@pytest.fixture(scope="session")
def tiny_vae_file(comfy) -> Path:
    return tiny_model_files.tiny_vae_file()


@pytest.fixture(scope="session")
def siglip_file(comfy) -> Path:
    return tiny_model_files.siglip_file()


# -- server ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def comfy_server_factory(comfyui_checkout, tmp_path_factory):
    """start(custom_nodes=None, model_files=None, extra_args=(), include_pack=True,
    include_test_pack=True, check_imports=True, timeout=180) -> a started ComfyServer with its
    own base directory. custom_nodes maps folder names to extra pack directories.

    With check_imports, fails (with the server log) if any custom node pack failed to import.
    """
    started: list[ComfyServer] = []

    def start(
        *,
        custom_nodes=None,
        model_files=None,
        extra_args=(),
        include_pack=True,
        include_test_pack=True,
        check_imports=True,
        timeout=180.0,
    ):
        packs = dict(custom_nodes or {})
        if include_test_pack:
            packs[TEST_PACK_FOLDER_NAME] = TEST_PACK_DIR
        if include_pack and (REPO_ROOT / "__init__.py").is_file():
            packs[PACK_FOLDER_NAME] = REPO_ROOT
        base = prepare_base_directory(tmp_path_factory.mktemp("comfy_server_base"), packs, model_files)
        server = ComfyServer(comfyui_checkout.root, base, extra_args=extra_args)
        server.start(timeout)
        started.append(server)
        if check_imports:
            server.check_custom_nodes_imported()
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def comfy_server(comfy_server_factory, flux_unet_file, tiny_vae_file, siglip_file) -> ComfyServer:
    return comfy_server_factory(
        model_files=tiny_model_files.server_model_files(flux_unet_file, tiny_vae_file, siglip_file)
    )


# -- browser ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def browser():
    problem = browser_problem()
    if problem:
        _browser_missing.append(problem)
        if _browser_required():
            pytest.fail(problem, pytrace=False)
        pytest.skip(problem)
    with FrontendBrowser() as running:
        yield running


@pytest.fixture
def frontend(browser, comfy_server):
    page = browser.open(comfy_server.url)
    yield page
    page.close()


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS_DIR
