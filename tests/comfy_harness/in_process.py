"""Import real ComfyUI into the test process and load custom node packs the way ComfyUI does.

Name clashes this module has to manage (see ARCHITECTURE.md):
* ComfyUI owns the top-level modules `nodes` (its nodes.py) and `utils` (a package), and
  nodes.py itself puts `<ComfyUI>/comfy` at sys.path[0], after which `import utils` would find
  comfy/utils.py instead. We therefore import ComfyUI's `utils` package before `nodes`.
* Our pack has a `nodes/` package and pytest's `pythonpath = .` puts the repo root on sys.path,
  so the ComfyUI root must come first and `sys.modules['nodes']` must be ComfyUI's nodes.py.
  The pack itself is only ever imported through `nodes.load_custom_node(<dir>)`, which names
  it by its path, so its `from .nodes import ...` resolves inside the pack.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import logging
import sys
from pathlib import Path
from types import SimpleNamespace

from .base_directory import prepare_base_directory

log = logging.getLogger(__name__)


class PackImportError(RuntimeError):
    """ComfyUI refused a custom node pack; the message carries what ComfyUI logged."""


def import_comfy(root: Path, base_dir: Path) -> SimpleNamespace:
    """Import ComfyUI from `root` on CPU, with models/input/output/temp under `base_dir`.

    Safe to call more than once in a process (returns the already imported modules), but the
    first call decides the checkout and base directory.
    """
    root = Path(root).resolve()
    base_dir = Path(base_dir)
    _put_first_on_sys_path(root)
    for name in ("nodes", "utils", "comfy", "folder_paths"):
        _evict_module_not_from(name, root)

    from comfy.cli_args import args  # parses no argv unless comfy.options enabled it

    already_imported = "comfy.model_management" in sys.modules
    if not already_imported:
        # Must happen before comfy.model_management is imported: on CPU-only torch it would
        # otherwise call torch.cuda.current_device() at import time.
        args.cpu = True
    if "folder_paths" not in sys.modules:
        args.base_directory = str(prepare_base_directory(base_dir))  # read once, when folder_paths is imported

    importlib.import_module("utils.extra_config")  # claim the name `utils` for ComfyUI's package
    from comfy import model_management

    if not model_management.cpu_state == model_management.CPUState.CPU:
        raise RuntimeError(
            "comfy.model_management was imported before the test harness could set args.cpu=True; "
            "request the `comfy` fixture before importing any comfy module"
        )
    import comfy.clip_vision
    import comfy.model_base
    import comfy.model_patcher
    import comfy.patcher_extension
    import comfy.sample
    import comfy.samplers
    import comfy.sd
    import comfy.supported_models
    import comfy.utils
    import folder_paths
    import node_helpers
    from comfy_api.latest import ComfyExtension, io, ui

    import nodes

    expected_nodes = root / "nodes.py"
    if Path(nodes.__file__).resolve() != expected_nodes:
        raise RuntimeError(f"`import nodes` resolved to {nodes.__file__}, expected ComfyUI's {expected_nodes}")

    if not getattr(nodes, "_styleexpert_harness_extras_loaded", False):
        # The comfy_extras nodes (ReferenceLatent, FluxGuidance, ...) are registered by main.py,
        # not at import; audio nodes fail without torchaudio, which nothing here needs.
        failed = run_coroutine(nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))
        if failed:
            log.info("comfy_extras modules that did not import: %s", failed)
        nodes._styleexpert_harness_extras_loaded = True
        nodes._styleexpert_harness_core_ids = frozenset(nodes.NODE_CLASS_MAPPINGS)

    from comfyui_version import __version__

    return SimpleNamespace(
        root=root,
        base_dir=Path(folder_paths.base_path),
        version=__version__,
        args=args,
        model_management=model_management,
        model_base=comfy.model_base,
        model_patcher=comfy.model_patcher,
        patcher_extension=comfy.patcher_extension,
        supported_models=comfy.supported_models,
        sample=comfy.sample,
        samplers=comfy.samplers,
        sd=comfy.sd,
        clip_vision=comfy.clip_vision,
        utils=comfy.utils,
        folder_paths=folder_paths,
        node_helpers=node_helpers,
        nodes=nodes,
        io=io,
        ui=ui,
        ComfyExtension=ComfyExtension,
        core_node_ids=nodes._styleexpert_harness_core_ids,
    )


def load_custom_node_pack(comfy: SimpleNamespace, pack_dir: Path) -> dict[str, type]:
    """Load `pack_dir` with ComfyUI's own `nodes.load_custom_node`; return {node_id: class}.

    ComfyUI only logs import errors; here they become a PackImportError with the traceback.
    Loading a pack again re-executes it and returns the fresh classes.
    """
    pack_dir = Path(pack_dir)
    nodes = comfy.nodes
    # A second load must re-execute the submodules too, or it would hand back the old classes.
    package = _pack_module_name(pack_dir)
    for name in [n for n in sys.modules if n == package or n.startswith(package + ".")]:
        del sys.modules[name]
    before = dict(nodes.NODE_CLASS_MAPPINGS)
    with _capture_log_records(logging.WARNING) as records:
        loaded = run_coroutine(nodes.load_custom_node(str(pack_dir), ignore=set(comfy.core_node_ids)))
    if not loaded:
        logged = "\n".join(record.getMessage() for record in records) or "(nothing logged)"
        message = f"ComfyUI could not load {pack_dir} as a custom node pack:\n{logged}"
        # ComfyUI logs only the message of an exception raised by comfy_entrypoint; call it
        # again so that the traceback is chained to ours.
        entrypoint = getattr(sys.modules.get(package), "comfy_entrypoint", None)
        if callable(entrypoint):
            try:
                extension = entrypoint()
                extension = run_coroutine(extension) if inspect.isawaitable(extension) else extension
                run_coroutine(extension.get_node_list())
            except Exception as error:
                raise PackImportError(message) from error
        raise PackImportError(message)
    return {node_id: cls for node_id, cls in nodes.NODE_CLASS_MAPPINGS.items() if before.get(node_id) is not cls}


def loaded_pack_module(pack_dir: Path):
    """The module object ComfyUI created for a loaded pack (named after its path, dots -> '_x_')."""
    return sys.modules[_pack_module_name(Path(pack_dir))]


def _pack_module_name(pack_dir: Path) -> str:
    return str(pack_dir).replace(".", "_x_")  # as nodes.load_custom_node names a package


def run_coroutine(coroutine):
    """Run ComfyUI's async loader API from synchronous test code.

    Playwright's sync API keeps an event loop running in this thread once a browser fixture
    exists, and asyncio.run refuses to nest: then run the coroutine on a worker thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def _put_first_on_sys_path(root: Path) -> None:
    # The one sys.path change the harness needs: ComfyUI's modules (`nodes`, `comfy`, ...) are
    # imported from its root, ahead of the repo root that pytest's `pythonpath = .` added.
    entry = str(root)
    sys.path[:] = [p for p in sys.path if p != entry]
    sys.path.insert(0, entry)


def _evict_module_not_from(name: str, root: Path) -> None:
    """Drop a same-named module imported from elsewhere (e.g. our pack's `nodes/` package)."""
    module = sys.modules.get(name)
    if module is None:
        return
    location = getattr(module, "__file__", None) or ""
    from_root = bool(location) and Path(location).resolve().is_relative_to(root)
    # `utils` must be ComfyUI's package, not comfy/utils.py picked up through nodes.py's path entry.
    if from_root and (name != "utils" or hasattr(module, "__path__")):
        return
    if name == "comfy" and "comfy.model_management" in sys.modules:
        raise RuntimeError(f"a foreign `comfy` package is already imported from {location}")
    log.warning("evicting module %r imported from %s so that ComfyUI's %s can be imported", name, location, name)
    for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
        del sys.modules[key]


@contextlib.contextmanager
def _capture_log_records(level: int):
    records: list[logging.LogRecord] = []

    class _Collector(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = _Collector(level)
    root_logger = logging.getLogger()
    previous_level = root_logger.level
    if root_logger.getEffectiveLevel() > level:
        root_logger.setLevel(level)  # ComfyUI logs through the root logger
    root_logger.addHandler(handler)
    try:
        yield records
    finally:
        root_logger.removeHandler(handler)
        root_logger.setLevel(previous_level)
