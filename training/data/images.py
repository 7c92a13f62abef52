"""Reading images from disk and fitting them to a resolution (PIL only, no torchvision)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .errors import InputError, MissingFileError

T = TypeVar("T")


def _read(path: str | Path, action: Callable[[Image.Image], T]) -> T:
    """``action`` on the opened file, with errors that name the file and say what to do."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(
            f"Image not found: {path}. Check the path in the manifest (relative to the manifest file).")
    try:
        with Image.open(path) as im:
            return action(im)
    except (UnidentifiedImageError, OSError) as e:
        raise InputError(f"image {path} cannot be read ({e}); is it a valid PNG/JPEG/WebP? "
                         "Re-export it as PNG or JPEG.") from None


def open_image(path: str | Path) -> Image.Image:
    """An RGB PIL image (the one image opener of training, curation and evaluation)."""
    return _read(path, lambda im: im.convert("RGB"))


def fit(image: Image.Image, width: int, height: int) -> Image.Image:
    """Resize to cover (width, height) keeping the aspect ratio, then centre-crop to it."""
    scale = max(width / image.width, height / image.height)
    w, h = max(width, round(image.width * scale)), max(height, round(image.height * scale))
    image = image.resize((w, h), Image.Resampling.BICUBIC)
    left, top = (w - width) // 2, (h - height) // 2
    return image.crop((left, top, left + width, top + height))


def to_tensor(image: Image.Image) -> torch.Tensor:
    """[3, H, W] float32 in [0, 1]."""
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()


def load_batch(paths: list[Path], width: int, height: int) -> torch.Tensor:
    """[B, 3, height, width] in [0, 1]."""
    return torch.stack([to_tensor(fit(open_image(p), width, height)) for p in paths])


def save_image(array: np.ndarray, path: str | Path) -> None:
    """Save a float [H, W, 3] array in [0, 1] as PNG."""
    Image.fromarray((np.clip(array, 0, 1) * 255 + 0.5).astype(np.uint8)).save(path)


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) without decoding the pixels."""
    return _read(path, lambda im: im.size)


def load_square(path: str | Path, size: int) -> torch.Tensor:
    """[3, size, size] resized without cropping (SigLIP's preprocessing; ComfyUI crop='none')."""
    return to_tensor(open_image(path).resize((size, size), Image.Resampling.BICUBIC))
