"""Checks on IMAGE inputs that ComfyUI itself does not make."""

from __future__ import annotations

import torch

from ..styleexpert_core.errors import InputError


def check_image_channels(image: torch.Tensor, what: str) -> torch.Tensor:
    """An IMAGE is [B, H, W, C] with RGB (or RGBA) channels; anything else fails deep in the VAE or SigLIP."""
    if image.shape[-1] not in (3, 4):
        raise InputError(f"the {what} image has {image.shape[-1]} channel(s); connect an RGB image "
                         "(e.g. from Load Image).")
    return image
