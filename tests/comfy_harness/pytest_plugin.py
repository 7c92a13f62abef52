"""The harness as a pytest plugin: fixtures for tests against real ComfyUI, and the skip/fail rules.

Register it once, in the top-level conftest: `pytest_plugins = ["comfy_harness.pytest_plugin"]`.

Fixtures (session-scoped unless noted):
  comfyui_checkout        ComfyCheckout(root, problem, version) of $COMFYUI_ROOT or ~/.cache/comfyui/ComfyUI
  comfy                   namespace of imported ComfyUI modules (nodes, folder_paths, comfy.*, io, ui, ...),
                          CPU only, base directory in a session tmp dir (comfy.base_dir)
  load_pack               load_pack(dir) -> {node_id: class}, via nodes.load_custom_node
  pack_dir                the pack under test (default: pytest's rootdir; override in a conftest)
  pack_folder_name        its folder under custom_nodes/ in test servers, also its web-extension name
                          (default: pack_dir's name; override in a conftest)
  pack                    the pack's registered node classes (skips until pack_dir/__init__.py exists)
  tiny_flux (function)    ModelPatcher over a tiny Flux (hidden 64, 2+2 blocks, context/pooled 32)
  tiny_siglip             tiny SigLIP ClipVisionModel (27 layers, 16 tokens, width 32)
  flux_unet_file, tiny_vae_file, siglip_file   cached random-weight files the stock loaders accept
  comfy_server_factory    start(...) -> ComfyServer in its own base directory (stopped at session end)
  comfy_server            a server with the pack, the test-only pack and the test model files
  browser / frontend (function)   headless Chromium / a FrontendPage on comfy_server's UI
  artifacts_dir           tests/artifacts/ (gitignored) for screenshots

A test needs ComfyUI when it uses `comfyui_checkout`, directly or through any fixture above that
needs it; such tests get the `comfyui` marker. A missing checkout skips them with the reason and
a summary line; STYLEEXPERT_REQUIRE_COMFYUI=1 (CI) turns that into failures. Missing Chromium
skips the browser tests the same way; STYLEEXPERT_REQUIRE_BROWSER=1 turns that into failures.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from . import tiny_model_files
from .base_directory import prepare_base_directory
from .checkout import comfyui_required, locate_comfyui
from .frontend_browser import FrontendBrowser, browser_problem
from .server import ComfyServer

HERE = Path(__file__).resolve().parent
ARTIFACTS_DIR = HERE.parent / "artifacts"
TEST_PACK_DIR = HERE / "test_node_pack"
TEST_PACK_FOLDER_NAME = "styleexpert_test_nodes"
REQUIRE_BROWSER_ENV = "STYLEEXPERT_REQUIRE_BROWSER"

CHECKOUT = locate_comfyui()
# For the terminal summary: tests stopped by a missing checkout, and why the browser is missing.
_checkout_stopped: list[str] = []
_browser_missing: list[str] = []


def pytest_configure(config):
    config.addinivalue_line("markers", "comfyui: needs a real ComfyUI checkout (COMFYUI_ROOT)")
    config.addinivalue_line("markers", "browser: drives the ComfyUI frontend in headless Chromium")


def pytest_ignore_collect(collection_path, config):
    # The test-only node pack is loaded by ComfyUI (it imports folder_paths), never by pytest.
    return True if collection_path == TEST_PACK_DIR else None


def needs_comfyui(item) -> bool:
    return "comfyui_checkout" in getattr(item, "fixturenames", ())


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects: `-m "not comfyui"` leaves them out
def pytest_collection_modifyitems(config, items):
    for item in items:
        if needs_comfyui(item):
            item.add_marker(pytest.mark.comfyui)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    # Stop the test before any fixture runs, and count it for the summary.
    if needs_comfyui(item) and not CHECKOUT.usable:
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
    if not CHECKOUT.usable:  # pytest_runtest_setup stops its users first; this guards getfixturevalue
        pytest.fail(CHECKOUT.problem, pytrace=False) if comfyui_required() else pytest.skip(CHECKOUT.problem)
    return CHECKOUT


@pytest.fixture(scope="session")
def comfy(comfyui_checkout, tmp_path_factory):
    from .in_process import import_comfy

    return import_comfy(comfyui_checkout.root, tmp_path_factory.mktemp("comfy_in_process_base"))


@pytest.fixture(scope="session")
def load_pack(comfy):
    from .in_process import load_custom_node_pack

    return lambda pack_directory: load_custom_node_pack(comfy, Path(pack_directory))


@pytest.fixture(scope="session")
def pack_dir(pytestconfig) -> Path:
    return pytestconfig.rootpath  # a custom node repository is its own pack


@pytest.fixture(scope="session")
def pack_folder_name(pack_dir) -> str:
    return pack_dir.name


@pytest.fixture(scope="session")
def pack(load_pack, pack_dir):
    if not (pack_dir / "__init__.py").is_file():
        pytest.skip(f"the pack has no {pack_dir / '__init__.py'} yet, so there is nothing for ComfyUI to load")
    return load_pack(pack_dir)


@pytest.fixture
def tiny_flux(comfy):
    from .tiny_flux import tiny_flux_patcher

    return tiny_flux_patcher()


@pytest.fixture(scope="session")
def tiny_siglip(comfy, tmp_path_factory):
    from .tiny_siglip import tiny_siglip_model

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
def comfy_server_factory(comfyui_checkout, tmp_path_factory, pack_dir, pack_folder_name):
    """start(custom_nodes=None, model_files=None, extra_args=(), include_pack=True,
    include_test_pack=True, check_imports=True, timeout=180) -> a started ComfyServer with its
    own base directory. include_pack serves pack_dir as custom_nodes/<pack_folder_name>;
    custom_nodes maps folder names to extra pack directories.

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
        if include_pack and (pack_dir / "__init__.py").is_file():
            packs[pack_folder_name] = pack_dir
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
