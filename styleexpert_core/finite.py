"""NaN and Inf checks: a non-finite weight, strength or image only ever produces a black image,
so they are refused up front with the name of the file or input that holds them."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from .errors import CheckpointError, InputError


def check_finite_number(value: float, what: str) -> float:
    if not math.isfinite(value):
        raise InputError(f"{what} is {value}; it must be a finite number.")
    return value


def check_finite_image(image: torch.Tensor, what: str) -> torch.Tensor:
    if not bool(torch.isfinite(image).all()):
        raise InputError(f"the {what} image contains NaN or Inf pixels; check the node that made it.")
    return image


def check_finite_tensors(tensors: Mapping[str, torch.Tensor], source: str) -> None:
    """Every floating-point tensor of a file is finite, or an error naming the file and the first bad key."""
    for key, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise CheckpointError(
                f"{source}: tensor '{key}' contains NaN or Inf values; the file is corrupt or came from a "
                "diverged training run. Use another checkpoint.")
