"""A preview card for a checkpoint file, written beside it as `<name>.preview.png`, where ComfyUI's
Model Library looks for a model's picture (it also reads `<name>.png` / `.webp`).

The card shows the file's name, its size in experts, rank and layers, and a "router fingerprint":
one row per layer, one column per expert, brighter where that expert's router weights are larger.
Two checkpoints trained apart get visibly different fingerprints, so files can be told apart at a glance.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from .formats.checkpoint import StyleExpertCheckpoint
from .safe_write import write_atomically

CARD_SIZE = 384
PREVIEW_SUFFIX = ".preview.png"
BACKGROUND, TEXT, DIM = (22, 24, 30), (235, 235, 235), (150, 155, 165)


def preview_path(checkpoint_path: str | os.PathLike) -> Path:
    """`<folder>/<name without extension>.preview.png`."""
    path = Path(checkpoint_path)
    return path.with_name(path.stem + PREVIEW_SUFFIX)


def router_fingerprint(ckpt: StyleExpertCheckpoint) -> np.ndarray:
    """[layers, experts] in 0..1: each expert's router weight norm per layer, scaled per layer."""
    if not ckpt.layers:
        return np.zeros((1, 1), dtype=np.float32)
    norms = torch.stack([t.gate.float().norm(dim=1) for t in ckpt.layers.values()])
    low, high = norms.min(dim=1, keepdim=True).values, norms.max(dim=1, keepdim=True).values
    return ((norms - low) / (high - low).clamp_min(1e-12)).numpy()


def _colour(values: np.ndarray) -> np.ndarray:
    """A dark-blue -> orange -> yellow ramp, [..., 3] uint8."""
    stops = np.array([[20, 30, 80], [200, 80, 40], [250, 230, 90]], dtype=np.float32)
    x = np.clip(values, 0, 1) * 2
    low = np.minimum(x.astype(int), 1)
    t = (x - low)[..., None]
    return (stops[low] * (1 - t) + stops[low + 1] * t).astype(np.uint8)


def _summary_lines(ckpt: StyleExpertCheckpoint) -> list[str]:
    if ckpt.config is None:
        return ["style projector only", "no experts"]
    c = ckpt.config
    return [f"{c.num_experts} experts x rank {c.rank}, top {c.top_k}", f"{len(ckpt.layers)} layers",
            "with style projector" if ckpt.projector is not None else "no style projector"]


def checkpoint_card(ckpt: StyleExpertCheckpoint, name: str, size: int = CARD_SIZE) -> Image.Image:
    """The card as an RGB image of size x size."""
    card = Image.new("RGB", (size, size), BACKGROUND)
    draw = ImageDraw.Draw(card)
    title, small = ImageFont.load_default(size=size // 14), ImageFont.load_default(size=size // 22)
    margin = size // 16
    draw.text((margin, margin), "StyleExpert", font=small, fill=DIM)
    draw.text((margin, margin + size // 14), Path(name).stem[:28], font=title, fill=TEXT)
    y = margin + size // 14 * 2 + size // 40
    for line in _summary_lines(ckpt):
        draw.text((margin, y), line, font=small, fill=DIM)
        y += size // 18
    draw.text((margin, y + size // 80), "router fingerprint: layers x experts", font=small, fill=DIM)
    top = y + size // 12
    box = (size - margin - top, size - 2 * margin)
    heat = Image.fromarray(_colour(router_fingerprint(ckpt))).resize((box[1], max(box[0], 1)), Image.NEAREST)
    card.paste(heat, (margin, top))
    return card


def write_preview(ckpt: StyleExpertCheckpoint, checkpoint_path: str | os.PathLike) -> Path:
    """Write the card beside the checkpoint (atomically) and return its path."""
    out = preview_path(checkpoint_path)
    card = checkpoint_card(ckpt, Path(checkpoint_path).name)
    write_atomically(out, lambda tmp: card.save(tmp, format="PNG"))
    return out
