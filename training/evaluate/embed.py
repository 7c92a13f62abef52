"""Run an encoder over image files in batches (each distinct file is encoded once)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from PIL import Image
from tqdm import tqdm

from ..data.errors import ConfigError
from ..data.images import open_image


def encode_paths(fn: Callable[[Sequence[Image.Image]], torch.Tensor], paths: Sequence[Path],
                 batch_size: int = 16, description: str = "encode") -> torch.Tensor:
    """``fn`` maps a list of images to [B, ...]; returns one row per entry of ``paths`` (repeats reuse rows)."""
    if batch_size < 1:
        raise ConfigError(f"batch size must be >= 1, got {batch_size}.")
    unique = list(dict.fromkeys(Path(p) for p in paths))
    rows: list[torch.Tensor] = []
    for start in tqdm(range(0, len(unique), batch_size), desc=description, unit="batch", disable=None):
        batch = [open_image(p) for p in unique[start : start + batch_size]]
        rows.append(fn(batch).float().cpu())
    table = torch.cat(rows)
    position = {p: i for i, p in enumerate(unique)}
    return table[[position[Path(p)] for p in paths]]
