"""Image encoders for evaluation, behind one small interface: PIL images in, [N, D] embeddings out.

* ``SiglipMeanPoolEncoder``: raw SigLIP, mean of the last hidden state (a baseline).
* ``MegaStyleEncoder``: a full fine-tuned SigLIP; L2-normalised ``pooler_output`` (MAP head),
  as MegaStyle's ``style_score.py``.
* ``StyleExpertEncoder``: SigLIP hidden states -> ``styleexpert_core`` StyleProjector -> [N, 3072].
* ``CSDEncoder``: CLIP ViT-L/14 vision tower, ``pooler_output @ style_projection``, normalised.
* ``AestheticPredictor``: LAION MLP on normalised CLIP image embeddings (a score, not an encoder).

Building them from files lives in ``loaders.py``; these classes take ready modules, so tests
build tiny random models in code.
"""

from __future__ import annotations

from styleexpert_core.metrics import aesthetic_scores

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..data.errors import ConfigError, InputError

SIGLIP_MEAN = SIGLIP_STD = (0.5, 0.5, 0.5)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class Preprocess:
    """Resize (SigLIP: straight to size x size; CLIP: shortest side + centre crop), scale, normalise."""

    size: int
    mean: tuple[float, float, float] = SIGLIP_MEAN
    std: tuple[float, float, float] = SIGLIP_STD
    center_crop: bool = False

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ConfigError(f"preprocess size must be >= 1, got {self.size}.")

    def __call__(self, images: Sequence[Image.Image]) -> torch.Tensor:
        if not images:
            raise InputError("no images to encode.")
        arrays = [np.asarray(self._resize(im.convert("RGB")), dtype=np.float32) / 255.0 for im in images]
        x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return (x - mean) / std

    def _resize(self, im: Image.Image) -> Image.Image:
        if not self.center_crop:
            return im.resize((self.size, self.size), Image.Resampling.BICUBIC)
        scale = self.size / min(im.size)
        w, h = max(self.size, round(im.width * scale)), max(self.size, round(im.height * scale))
        im = im.resize((w, h), Image.Resampling.BICUBIC)
        left, top = (w - self.size) // 2, (h - self.size) // 2
        return im.crop((left, top, left + self.size, top + self.size))


def siglip_preprocess(model: nn.Module) -> Preprocess:
    return Preprocess(int(model.config.image_size))


def clip_preprocess(model: nn.Module) -> Preprocess:
    return Preprocess(int(model.config.image_size), CLIP_MEAN, CLIP_STD, center_crop=True)


class ImageEncoder(Protocol):
    name: str

    def encode(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """[N, D] float32 embeddings on the CPU, one row per image."""
        ...


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _run(model: nn.Module, pixels: torch.Tensor, **kwargs: Any) -> Any:
    param = next(model.parameters())
    with torch.inference_mode():
        return model(pixel_values=pixels.to(param.device, param.dtype), **kwargs)


@dataclass
class SiglipMeanPoolEncoder:
    model: nn.Module
    preprocess: Preprocess | None = None
    name: str = "siglip"

    def __post_init__(self) -> None:
        self.model.eval()
        self.preprocess = self.preprocess or siglip_preprocess(self.model)

    def encode(self, images: Sequence[Image.Image]) -> torch.Tensor:
        out = _run(self.model, self.preprocess(images))
        return out.last_hidden_state.mean(dim=1).float().cpu()


@dataclass
class MegaStyleEncoder:
    model: nn.Module
    preprocess: Preprocess | None = None
    name: str = "megastyle"

    def __post_init__(self) -> None:
        if not getattr(self.model.config, "vision_use_head", True):
            raise InputError("MegaStyle-Encoder needs SigLIP's attention-pooling head (vision_use_head=True), "
                             "because its embedding is the pooled output.")
        self.model.eval()
        self.preprocess = self.preprocess or siglip_preprocess(self.model)

    def encode(self, images: Sequence[Image.Image]) -> torch.Tensor:
        out = _run(self.model, self.preprocess(images))
        return nn.functional.normalize(out.pooler_output.float(), dim=-1).cpu()


@dataclass
class StyleExpertEncoder:
    """``projector`` is a ``styleexpert_core.StyleProjector`` (any module taking [B, L, T, W])."""

    siglip: nn.Module
    projector: nn.Module
    preprocess: Preprocess | None = None
    name: str = "styleexpert"

    def __post_init__(self) -> None:
        self.siglip.eval()
        self.projector.eval()
        self.preprocess = self.preprocess or siglip_preprocess(self.siglip)

    def encode(self, images: Sequence[Image.Image]) -> torch.Tensor:
        out = _run(self.siglip, self.preprocess(images), output_hidden_states=True)
        hidden = torch.stack(tuple(out.hidden_states), dim=1)  # [B, L+1, T, W], HF stacking
        with torch.inference_mode():
            latent = self.projector(hidden.to(_device_of(self.projector)))
        return latent.float().cpu()


@dataclass
class CSDEncoder:
    """CSD: CLIP vision tower without its projection, then the style head, then L2 norm."""

    clip: nn.Module
    style_projection: torch.Tensor  # [hidden, style_dim] (CSD's last_layer_style)
    preprocess: Preprocess | None = None
    name: str = "csd"

    def __post_init__(self) -> None:
        hidden = int(self.clip.config.hidden_size)
        if self.style_projection.ndim != 2 or self.style_projection.shape[0] != hidden:
            raise InputError(
                f"CSD style projection has shape {tuple(self.style_projection.shape)}; expected "
                f"[{hidden}, style_dim] to match the CLIP tower's width {hidden}.")
        self.clip.eval()
        self.preprocess = self.preprocess or clip_preprocess(self.clip)

    def encode(self, images: Sequence[Image.Image]) -> torch.Tensor:
        out = _run(self.clip, self.preprocess(images))
        features = out.pooler_output.float().cpu()
        return nn.functional.normalize(features @ self.style_projection.float().cpu(), dim=-1)


@dataclass
class AestheticPredictor:
    """Scores images with an MLP over L2-normalised CLIP image embeddings (LAION predictor)."""

    clip: nn.Module  # CLIPVisionModelWithProjection
    mlp: nn.Module
    preprocess: Preprocess | None = None
    name: str = field(default="aesthetic")

    def __post_init__(self) -> None:
        self.clip.eval()
        self.mlp.eval()
        self.preprocess = self.preprocess or clip_preprocess(self.clip)

    def score(self, images: Sequence[Image.Image]) -> torch.Tensor:
        out = _run(self.clip, self.preprocess(images))
        return aesthetic_scores(self.mlp, out.image_embeds.float().cpu())
