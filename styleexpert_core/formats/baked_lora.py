"""Baked LoRAs: one folded style as a plain Flux LoRA in diffusers/peft naming."""

from __future__ import annotations

import dataclasses
import json
import os

import torch

from ..errors import StyleExpertError
from ..fold import fold_checkpoint
from ..keys import is_flux_linear
from ..style import Strengths
from .files import write_safetensors

BAKED_PREFIX = "transformer."


def save_baked_lora(folded: dict[str, tuple[torch.Tensor, torch.Tensor]], path: str | os.PathLike,
                    *, dtype: torch.dtype = torch.float32, metadata: dict[str, str] | None = None) -> None:
    """A LoRA file that ComfyUI's stock LoRA loader reads.

    alpha is written equal to the rank, so the loader's alpha/rank scale is exactly 1.
    """
    tensors = {}
    for module, (up, down) in folded.items():
        if not is_flux_linear(module):
            raise StyleExpertError(f"cannot bake '{module}': not a Flux linear in diffusers naming.")
        key = f"{BAKED_PREFIX}{module}"
        tensors[f"{key}.lora_A.weight"] = down.to(dtype).contiguous()
        tensors[f"{key}.lora_B.weight"] = up.to(dtype).contiguous()
        tensors[f"{key}.alpha"] = torch.tensor(float(down.shape[0]))
    write_safetensors(tensors, path, {"format": "pt", **(metadata or {})})


def bake_style(ckpt, style_latent: torch.Tensor, path: str | os.PathLike, *, name: str,
               strengths: Strengths = Strengths(), alignment: str | None = None, top_k: int | None = None,
               routing_precision: str | None = None, dtype: torch.dtype = torch.float32) -> int:
    """Fold one style exactly as Apply merges it and write it as a LoRA file; returns the layer count.
    `name` is the checkpoint's, recorded in the file's metadata."""
    folded = fold_checkpoint(ckpt, style_latent, strengths=strengths, alignment=alignment, top_k=top_k,
                             routing_precision=routing_precision)
    save_baked_lora(folded, path, dtype=dtype, metadata={
        "styleexpert.baked_from": name, "styleexpert.strengths": json.dumps(dataclasses.asdict(strengths))})
    return len(folded)
