"""Build evaluation encoders from LOCAL files only (nothing is downloaded).

transformers is imported inside each loader, so importing this module stays cheap.
Weight files: .safetensors, or .pt/.pth/.bin read with ``torch.load(weights_only=True)`` (plain
tensor dictionaries only; arbitrary pickles are refused).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from styleexpert_core.errors import CheckpointError
from styleexpert_core.formats import read_tensor_file
from styleexpert_core.metrics import aesthetic_mlp_from_state_dict
from ..data.errors import ConfigError, MissingWeightsError
from ..data.local_weights import check_local_weights

from .encoders import (AestheticPredictor, CSDEncoder, ImageEncoder, MegaStyleEncoder, SiglipMeanPoolEncoder,
                       StyleExpertEncoder)

logger = logging.getLogger(__name__)

ENCODER_KINDS = ("siglip", "megastyle", "styleexpert", "csd")


def read_state_dict(path: str | Path, what: str) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise MissingWeightsError(f"{what} weights not found at {path}; pass the local file.")
    return {k.removeprefix("module."): v for k, v in read_tensor_file(path).items()}


def load_matching(model: nn.Module, state_dict: dict[str, torch.Tensor], source: str) -> None:
    """Strict load that tolerates one extra or missing ``vision_model.`` prefix (older transformers)."""
    expected = set(model.state_dict())
    candidates = [state_dict,
                  {k.removeprefix("vision_model."): v for k, v in state_dict.items()},
                  {f"vision_model.{k}": v for k, v in state_dict.items()}]
    best = max(candidates, key=lambda sd: len(expected & set(sd)))
    missing, unexpected = sorted(expected - set(best)), sorted(set(best) - expected)
    if missing or unexpected:
        raise CheckpointError(
            f"{source} does not match the model: {len(missing)} missing key(s) (e.g. {missing[:3]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:3]}). Check that the config folder matches "
            "the weights (same SigLIP/CLIP variant).")
    try:
        model.load_state_dict(best, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{source}: tensor shapes do not match the model config ({e}).") from None


def _vision_config_dict(folder: Path) -> dict[str, Any]:
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    return config.get("vision_config", config)  # full SigLIP/CLIP configs nest the tower's config


def load_siglip_vision(folder: str | Path) -> nn.Module:
    folder = Path(folder)
    check_local_weights(folder, "SigLIP vision model")
    from transformers import SiglipVisionModel

    return SiglipVisionModel.from_pretrained(folder, local_files_only=True).eval()


def load_megastyle_encoder(config_folder: str | Path, weights: str | Path) -> MegaStyleEncoder:
    """MegaStyle-Encoder: a SigLIP config folder (e.g. siglip-so400m-patch14-384) + the fine-tuned state dict."""
    config_folder = Path(config_folder)
    check_local_weights(config_folder, "SigLIP config for MegaStyle-Encoder")
    from transformers import SiglipVisionConfig, SiglipVisionModel

    config_dict = {k: v for k, v in _vision_config_dict(config_folder).items()
                   if k not in ("model_type", "architectures")}
    model = SiglipVisionModel(SiglipVisionConfig(**config_dict))
    load_matching(model, read_state_dict(weights, "MegaStyle-Encoder"), str(weights))
    return MegaStyleEncoder(model)


def load_styleexpert_encoder(siglip_folder: str | Path, checkpoint: str | Path) -> StyleExpertEncoder:
    """SigLIP folder + a StyleExpert checkpoint that holds the style projector (native or official).

    The projector is built from the checkpoint's stored configuration, layer order included.
    """
    from styleexpert_core.formats import load_checkpoint

    if not Path(checkpoint).is_file():
        raise MissingWeightsError(f"StyleExpert checkpoint not found at {checkpoint}; pass the local file.")
    ckpt = load_checkpoint(checkpoint)
    if ckpt.projector is None:
        raise CheckpointError(f"{checkpoint} holds no style projector; pass the projector file or a native "
                              "checkpoint that includes it.")
    return StyleExpertEncoder(load_siglip_vision(siglip_folder), ckpt.build_projector())


def load_csd_encoder(clip_folder: str | Path, head: str | Path) -> CSDEncoder:
    """CSD: a CLIP ViT-L/14 vision tower in transformers format + a file holding the style head.

    The head file holds ``style_projection`` (or CSD's own name ``last_layer_style``), [1024, 768].
    """
    clip_folder = Path(clip_folder)
    check_local_weights(clip_folder, "CLIP vision model for CSD")
    from transformers import CLIPVisionModel

    sd = read_state_dict(head, "CSD style head")
    key = next((k for k in ("style_projection", "last_layer_style") if k in sd), None)
    if key is None:
        raise CheckpointError(
            f"{head} has no 'style_projection' (or 'last_layer_style') tensor; found {sorted(sd)[:5]}.")
    return CSDEncoder(CLIPVisionModel.from_pretrained(clip_folder, local_files_only=True), sd[key])


def load_aesthetic_predictor(clip_folder: str | Path, mlp_weights: str | Path) -> AestheticPredictor:
    clip_folder = Path(clip_folder)
    check_local_weights(clip_folder, "CLIP ViT-L/14 (with projection) for the aesthetic predictor")
    from transformers import CLIPVisionModelWithProjection

    clip = CLIPVisionModelWithProjection.from_pretrained(clip_folder, local_files_only=True)
    mlp = aesthetic_mlp_from_state_dict(read_state_dict(mlp_weights, "aesthetic predictor"), str(mlp_weights))
    if mlp[0].in_features != clip.config.projection_dim:
        raise CheckpointError(f"{mlp_weights}: the MLP takes {mlp[0].in_features}-d inputs but the CLIP projection "
                              f"gives {clip.config.projection_dim}-d; use CLIP ViT-L/14.")
    return AestheticPredictor(clip, mlp)


def build_encoder(kind: str, model_path: str | Path, weights: str | Path | None = None) -> ImageEncoder:
    """CLI dispatch: ``model_path`` is the transformers folder, ``weights`` the extra file if the kind needs one."""
    if kind not in ENCODER_KINDS:
        raise ConfigError(f"unknown encoder {kind!r}; choose one of {ENCODER_KINDS}.")
    needs_weights = {"megastyle": "the MegaStyle-Encoder state dict", "styleexpert": "the StyleExpert checkpoint "
                     "with its projector", "csd": "the CSD style-head file"}
    if kind in needs_weights and weights is None:
        raise ConfigError(f"encoder {kind!r} also needs --weights: {needs_weights[kind]}.")
    if kind == "siglip":
        return SiglipMeanPoolEncoder(load_siglip_vision(model_path))
    if kind == "megastyle":
        return load_megastyle_encoder(model_path, weights)
    if kind == "styleexpert":
        return load_styleexpert_encoder(model_path, weights)
    return load_csd_encoder(model_path, weights)
