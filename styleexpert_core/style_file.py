"""Saved styles: a style latent, its name and a thumbnail of its reference images in one safetensors file.

The tensor is `style_latent` [N, cond_dim] (also what `python -m styleexpert_core bake --style-latent`
reads). The thumbnail is a PNG in the metadata key `ssmd_cover_images` (a JSON list of base64
images), the key ComfyUI's Model Library reads its preview from.
"""

from __future__ import annotations

import base64
import io
import json
import os
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from .errors import CheckpointError, InputError
from .finite import check_finite_tensors
from .formats.files import read_safetensors, write_safetensors

STYLE_FORMAT = "styleexpert-style"
THUMBNAIL_SIZE = 256
COVER_KEY = "ssmd_cover_images"


@dataclass(frozen=True)
class SavedStyle:
    latents: torch.Tensor  # [N, cond_dim] float32
    name: str
    encoder_id: str | None
    thumbnail_png: bytes


def thumbnail_png(images: torch.Tensor, size: int = THUMBNAIL_SIZE) -> bytes:
    """A square PNG of up to four images [B, H, W, C] in 0..1: one fills it, more share a 2x2 grid."""
    if images.ndim != 4 or images.shape[0] == 0 or min(images.shape[1:3]) == 0 or images.shape[-1] not in (3, 4):
        raise InputError("the style's reference images are empty or not RGB; connect the IMAGE the style "
                         "was encoded from.")
    tiles = images[:4, ..., :3].detach().float().clamp(0, 1).cpu().numpy()
    cell = size if len(tiles) == 1 else size // 2
    sheet = Image.new("RGB", (size, size), (24, 24, 24))
    for i, tile in enumerate(tiles):
        pil = Image.fromarray((tile * 255).round().astype(np.uint8))
        pil.thumbnail((cell, cell))
        x, y = (i % 2) * cell, (i // 2) * cell
        sheet.paste(pil, (x + (cell - pil.width) // 2, y + (cell - pil.height) // 2))
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    return buffer.getvalue()


def save_style(path: str | os.PathLike, latents: torch.Tensor, name: str, encoder_id: str | None,
               thumbnail: bytes) -> None:
    """Write the style file atomically (a failure leaves nothing under `path`)."""
    if latents.ndim != 2 or latents.shape[0] == 0:
        raise InputError(f"a style latent is [N, cond_dim]; got shape {list(latents.shape)}.")
    check_finite_tensors({"style_latent": latents}, "style latent")
    metadata = {"format": STYLE_FORMAT, "name": name, "encoder_id": encoder_id or "",
                COVER_KEY: json.dumps([base64.b64encode(thumbnail).decode("ascii")])}
    write_safetensors({"style_latent": latents.detach().float().cpu().contiguous()}, path, metadata)


def load_style(path: str | os.PathLike) -> SavedStyle:
    """A style file written by save_style, with clear errors for anything else."""
    tensors, metadata = read_safetensors(path)
    if metadata.get("format") != STYLE_FORMAT or set(tensors) != {"style_latent"}:
        raise CheckpointError(f"{path}: not a saved StyleExpert style (expected metadata format={STYLE_FORMAT} "
                              f"and one tensor 'style_latent', found {sorted(tensors)[:4]}). Save styles with "
                              "StyleExpert Save Style.")
    latents = tensors["style_latent"].float()
    if latents.ndim != 2 or latents.shape[0] == 0:
        raise CheckpointError(f"{path}: 'style_latent' has shape {list(latents.shape)}; expected [N, cond_dim].")
    try:
        thumbnail = base64.b64decode(json.loads(metadata.get(COVER_KEY, "[]"))[0])
    except (ValueError, IndexError, TypeError):
        thumbnail = b""  # the style still loads; only its picture is missing
    return SavedStyle(latents, metadata.get("name", ""), metadata.get("encoder_id") or None, thumbnail)


def png_to_array(png: bytes) -> np.ndarray:
    """[H, W, 3] float32 in 0..1 from PNG bytes."""
    with Image.open(io.BytesIO(png)) as img:
        return np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
