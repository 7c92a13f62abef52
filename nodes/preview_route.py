"""POST /styleexpert/routing_preview: the routing chart of a style image, before any sampling.

The Routing Preview node's JS calls it whenever the checkpoint, CLIP vision model or style image
upstream of the node changes. Body (JSON): ckpt_name, clip_name, image (a Load Image value:
"name.png", "sub/name.png [input]"), optional projector_name, top_k, alignment. Answer: the chart
as image/png with the fingerprint line in the X-StyleExpert-Fingerprint header, or JSON
{"error": message} (400 for a bad request, 500 for anything else); the server always survives.
"""

from __future__ import annotations

import asyncio
import io as bytes_io
import logging
import os
import threading

import comfy.clip_vision
import comfy.utils
import folder_paths
import numpy as np
import torch
from aiohttp import web
from PIL import Image, ImageOps

from ..styleexpert_core import check_style, load_checkpoint
from ..styleexpert_core.errors import InputError, StyleExpertError
from .apply import KEEP, overrides
from .encode import encode_styles
from .loader import NONE, file_identity
from .model_folder import FOLDER
from .payloads import LoadedStyleExpert
from .routing_preview import routing_view

ROUTE = "/styleexpert/routing_preview"
FINGERPRINT_HEADER = "X-StyleExpert-Fingerprint"
_lock = threading.Lock()  # one preview at a time: models load once, not once per request
_loaded: dict[str, tuple[tuple, object]] = {}  # kind -> (file identities, loaded object); newest only


def register_routes(prompt_server_class) -> None:
    """Adds the route to a running ComfyUI server (PromptServer.instance); nothing outside one."""
    instance = getattr(prompt_server_class, "instance", None)
    if instance is not None:
        instance.routes.post(ROUTE)(routing_preview_handler)


async def routing_preview_handler(request: web.Request) -> web.Response:
    try:
        body = await request.json()
    except ValueError:
        return _error(400, "the request body must be JSON: {\"ckpt_name\": ..., \"clip_name\": ..., \"image\": ...}.")
    try:
        png, fingerprint = await asyncio.get_running_loop().run_in_executor(None, _render_locked, body)
    except StyleExpertError as error:
        return _error(400, str(error))
    except Exception as error:  # a preview must never take the server down
        logging.exception("StyleExpert routing preview failed")
        return _error(500, f"the routing preview failed: {type(error).__name__}: {error}")
    return web.Response(body=png, content_type="image/png", headers={FINGERPRINT_HEADER: fingerprint})


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _render_locked(body) -> tuple[bytes, str]:
    with _lock:
        return render_preview(body)


def _text(body: dict, key: str, what: str, default: str | None = None) -> str:
    value = body.get(key, default)
    if not isinstance(value, str) or not value:
        raise InputError(f"'{key}' is missing or not text: give {what}.")
    return value


def render_preview(body) -> tuple[bytes, str]:
    """(PNG bytes of the routing chart, fingerprint line) for a request body."""
    if not isinstance(body, dict):
        raise InputError("the request body must be a JSON object.")
    ckpt = _text(body, "ckpt_name", f"a file name in models/{FOLDER}")
    projector = _text(body, "projector_name", f"a file name in models/{FOLDER} or {NONE}", NONE)
    clip = _text(body, "clip_name", "a SigLIP file name in models/clip_vision")
    image_name = _text(body, "image", "a Load Image file name from ComfyUI's input directory")
    top_k, alignment = body.get("top_k", 0), body.get("alignment", KEEP)
    if not isinstance(top_k, int) or isinstance(top_k, bool) or not 0 <= top_k <= 64:
        raise InputError(f"'top_k' must be a whole number from 0 to 64, got {top_k!r}.")
    if alignment not in (KEEP, "official", "paper"):
        raise InputError(f"'alignment' must be '{KEEP}', 'official' or 'paper', got {alignment!r}.")
    expert = _expert(ckpt, projector)
    # No progress bar: outside a prompt it has no node to report to, and a prompt's cancel must not stop it.
    latent = encode_styles(expert, _clip_vision(clip), _image(image_name), progress=False).mean(dim=0, keepdim=True)
    config, latent = check_style(expert.checkpoint, latent, **overrides(top_k, alignment))
    chart, text = routing_view(expert, config, latent, os.path.basename(image_name.split(" [")[0]))
    buffer = bytes_io.BytesIO()
    Image.fromarray((chart[0].numpy() * 255).round().astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue(), text.split("\n", 1)[0]


def _path(folder: str, name: str) -> str:
    path = folder_paths.get_full_path(folder, name)
    if path is None:
        raise InputError(f"'{name}' is not in models/{folder}; put the file there and refresh.")
    return path


def _cached(kind: str, paths: list[str], load):
    """The object loaded from `paths`, loaded again only when a file changed on disk."""
    key = tuple((p, file_identity(p)) for p in paths)
    if kind not in _loaded or _loaded[kind][0] != key:
        _loaded.pop(kind, None)  # free the old one before loading the new one
        _loaded[kind] = (key, load())
    return _loaded[kind][1]


def _expert(ckpt: str, projector: str) -> LoadedStyleExpert:
    paths = [_path(FOLDER, ckpt)] + ([_path(FOLDER, projector)] if projector != NONE else [])
    mmap = not comfy.utils.DISABLE_MMAP
    return _cached("styleexpert", paths, lambda: LoadedStyleExpert(load_checkpoint(*paths, mmap=mmap), ckpt))


def _clip_vision(name: str):
    path = _path("clip_vision", name)

    def load():
        model = comfy.clip_vision.load(path)
        if model is None:
            raise InputError(f"'{name}' is not a CLIP vision model ComfyUI knows; load SigLIP so400m-patch14-384.")
        return model
    return _cached("clip_vision", [path], load)


def _image(name: str) -> torch.Tensor:
    """The image [1, H, W, 3] Load Image would give for `name` (first frame, upright, RGB)."""
    if not folder_paths.exists_annotated_filepath(name):
        raise InputError(f"'{name}' is not in ComfyUI's input directory; upload the style image first.")
    try:
        with Image.open(folder_paths.get_annotated_filepath(name)) as opened:
            pil = ImageOps.exif_transpose(opened).convert("RGB")
    except OSError as error:
        raise InputError(f"'{name}' could not be read as an image ({error}).") from error
    return torch.from_numpy(np.asarray(pil, dtype=np.float32) / 255.0)[None]
