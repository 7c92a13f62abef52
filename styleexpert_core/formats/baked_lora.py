"""Baked LoRAs: one folded style as a plain Flux LoRA in diffusers/peft naming."""

from __future__ import annotations

import os

import torch

from ..errors import StyleExpertError
from ..keys import is_flux_linear
from .files import read_safetensors, write_safetensors

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


def read_baked_lora(path: str | os.PathLike) -> dict[str, tuple[torch.Tensor, torch.Tensor, float]]:
    """module -> (up, down, alpha) from a baked LoRA (used by tests and `inspect`)."""
    tensors, _ = read_safetensors(path)
    out: dict[str, tuple[torch.Tensor, torch.Tensor, float]] = {}
    for key in tensors:
        if key.endswith(".lora_A.weight"):
            module = key[: -len(".lora_A.weight")]
            out[module.removeprefix(BAKED_PREFIX)] = (
                tensors[f"{module}.lora_B.weight"], tensors[key], float(tensors[f"{module}.alpha"]))
    return out
