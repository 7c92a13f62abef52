"""The StyleExpert paper's extra metrics: DINO and CLIP image similarity, CLIP text alignment and
DreamSim, each an encoder over local weights (nothing is downloaded).

* ``DinoEncoder``: the CLS token of a DINO / DINOv2 ViT (transformers ``AutoModel``), L2-normalised;
  ImageNet mean/std, shortest side + centre crop. ``dino``: output vs content image.
* ``ClipEncoder``: a full CLIP (``CLIPModel`` + tokenizer): projected image and text embeddings,
  L2-normalised. ``clip_image``: output vs style image; ``clip_text``: output vs the triple's
  prompt (torchmetrics' CLIPScore is 100 * max(this, 0)).
* ``DreamSimEncoder``: the ``dreamsim`` package's ensemble (an optional install). ``dreamsim``:
  the DreamSim *distance* 1 - cos between output and content embeddings; lower is closer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn

from ..data.errors import InputError, MissingWeightsError
from ..data.local_weights import check_local_weights
from .encoders import CLIP_MEAN, CLIP_STD, Preprocess, _run

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DREAMSIM_INSTALL_HINT = "the DreamSim metric needs the dreamsim package. Install it with: pip install dreamsim"
# What dreamsim.dreamsim() looks for in its cache_dir before it would download (dreamsim 0.2).
DREAMSIM_FILES = ("dino_vitb16_pretrain.pth", "open_clip_vitb16_pretrain.pth.tar", "clip_vitb16_pretrain.pth.tar",
                  "dino_vitb16_lora", "open_clip_vitb16_lora", "clip_vitb16_lora")


def _normalise(x: torch.Tensor) -> torch.Tensor:
    return nn.functional.normalize(x.float(), dim=-1).cpu()


def _embeds(output: Any) -> torch.Tensor:
    """``get_*_features`` return a tensor (transformers 4) or an output whose pooler_output it is (5)."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


@dataclass
class DinoEncoder:
    model: nn.Module  # Dinov2Model or ViTModel (DINO v1)
    preprocess: Preprocess | None = None
    name: str = "dino"

    def __post_init__(self) -> None:
        self.model.eval()
        self.preprocess = self.preprocess or Preprocess(int(self.model.config.image_size), IMAGENET_MEAN,
                                                        IMAGENET_STD, center_crop=True)

    def encode(self, images: Sequence[Image.Image]) -> torch.Tensor:
        return _normalise(_run(self.model, self.preprocess(images)).last_hidden_state[:, 0])


@dataclass
class ClipEncoder:
    model: nn.Module  # CLIPModel
    tokenizer: Any
    preprocess: Preprocess | None = None
    name: str = "clip"

    def __post_init__(self) -> None:
        self.model.eval()
        self.preprocess = self.preprocess or Preprocess(int(self.model.config.vision_config.image_size),
                                                        CLIP_MEAN, CLIP_STD, center_crop=True)

    def encode(self, images: Sequence[Image.Image]) -> torch.Tensor:
        pixels = self.preprocess(images)
        param = next(self.model.parameters())
        with torch.inference_mode():
            return _normalise(_embeds(self.model.get_image_features(pixel_values=pixels.to(param.device, param.dtype))))

    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        if not texts:
            raise InputError("no prompts to encode.")
        limit = int(self.model.config.text_config.max_position_embeddings)
        tokens = self.tokenizer(list(texts), padding=True, truncation=True, max_length=limit, return_tensors="pt")
        device = next(self.model.parameters()).device
        with torch.inference_mode():
            return _normalise(_embeds(self.model.get_text_features(
                input_ids=tokens["input_ids"].to(device), attention_mask=tokens["attention_mask"].to(device))))


@dataclass
class DreamSimEncoder:
    """``model`` is dreamsim's PerceptualModel: ``embed`` takes [B, 3, size, size] in [0, 1]."""

    model: nn.Module
    size: int = 224
    name: str = "dreamsim"

    def encode(self, images: Sequence[Image.Image]) -> torch.Tensor:
        pixels = Preprocess(self.size, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))(images)  # resize only, keep [0, 1]
        device = next(self.model.parameters()).device
        with torch.inference_mode():
            return _normalise(self.model.embed(pixels.to(device)).reshape(len(images), -1))


def load_dino(folder: str | Path) -> DinoEncoder:
    check_local_weights(Path(folder), "DINO model")
    from transformers import AutoModel

    return DinoEncoder(AutoModel.from_pretrained(folder, local_files_only=True))


def load_clip(folder: str | Path) -> ClipEncoder:
    check_local_weights(Path(folder), "CLIP model")
    from transformers import AutoTokenizer, CLIPModel

    return ClipEncoder(CLIPModel.from_pretrained(folder, local_files_only=True),
                       AutoTokenizer.from_pretrained(folder, local_files_only=True))


def load_dreamsim(folder: str | Path, device: str = "cpu") -> DreamSimEncoder:
    """DreamSim from a folder holding its unzipped release (dreamsim would otherwise download it)."""
    folder = Path(folder)
    missing = [name for name in DREAMSIM_FILES if not (folder / name).exists()]
    if missing:
        raise MissingWeightsError(
            f"DreamSim weights not found in {folder} (missing {', '.join(missing)}). Download the release zip "
            "named in dreamsim/config.py once, unzip it there and pass that folder; nothing is downloaded here.")
    try:
        from dreamsim import dreamsim
    except ImportError as e:
        raise ImportError(f"{DREAMSIM_INSTALL_HINT} ({e}).") from e
    model, _ = dreamsim(pretrained=True, device=device, cache_dir=str(folder))
    return DreamSimEncoder(model)


@dataclass
class PaperMetrics:
    dino: DinoEncoder | None = None
    clip: ClipEncoder | None = None
    dreamsim: DreamSimEncoder | None = None

    def columns(self, with_prompts: bool) -> list[str]:
        names = ["dino"] if self.dino else []
        names += (["clip_image", "clip_text"] if with_prompts else ["clip_image"]) if self.clip else []
        return names + (["dreamsim"] if self.dreamsim else [])
