"""SigLIP vision models built through comfy.clip_vision.ClipVisionModel with deterministic weights.

comfy.clip_vision.load() only recognises full-size SigLIP (width 1152, 729 or 1024 positions,
>= 23 layers), so a tiny model is built from a json config we write ourselves; it takes the
same code path (siglip_vision_model: all hidden states, post-layernorm output, no pooling head).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch


@dataclass(frozen=True)
class SiglipShape:
    """A siglip_vision_model config; the defaults are tiny (16 tokens of width 32, 27 layers)."""

    num_hidden_layers: int = 27  # >= 20: the style encoder reads hidden layers -2, -11 and -20
    hidden_size: int = 32
    num_attention_heads: int = 2
    intermediate_size: int = 64
    image_size: int = 56
    patch_size: int = 14

    @property
    def tokens(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    def config(self) -> dict:
        return {
            "num_channels": 3,
            "hidden_act": "gelu_pytorch_tanh",
            "model_type": "siglip_vision_model",
            "image_mean": [0.5, 0.5, 0.5],
            "image_std": [0.5, 0.5, 0.5],
            **asdict(self),
        }


# google/siglip-so400m-patch14-384, as in comfy/clip_vision_siglip_384.json.
SO400M = SiglipShape(
    num_hidden_layers=27,
    hidden_size=1152,
    num_attention_heads=16,
    intermediate_size=4304,
    image_size=384,
    patch_size=14,
)


def write_siglip_config(path: Path, shape: SiglipShape = SiglipShape()) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(shape.config(), indent=1))
    return path


def init_siglip_weights_(model: torch.nn.Module, seed: int, std: float = 0.02) -> torch.nn.Module:
    """LayerNorms to identity, everything else ~ N(0, std), from one seeded CPU generator."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" in name and name.endswith(".weight"):
                parameter.fill_(1.0)
            elif "norm" in name and name.endswith(".bias"):
                parameter.zero_()
            else:
                values = torch.randn(parameter.shape, generator=generator, dtype=torch.float32) * std
                parameter.copy_(values.to(parameter.dtype))
    return model


def tiny_siglip_model(config_dir: Path, shape: SiglipShape = SiglipShape(), seed: int = 0):
    """A comfy.clip_vision.ClipVisionModel (the CLIP_VISION type) with deterministic weights.

    `encode_image(image [B,H,W,3] in 0..1, crop=False).all_hidden_states` is
    [B, num_hidden_layers, tokens, hidden_size].
    """
    import comfy.clip_vision

    config_path = write_siglip_config(Path(config_dir) / f"siglip_{_shape_key(shape)}.json", shape)
    model = comfy.clip_vision.ClipVisionModel(str(config_path))
    init_siglip_weights_(model.model, seed)
    return model


def siglip_state_dict(shape: SiglipShape, seed: int, dtype: torch.dtype = torch.float16) -> dict[str, torch.Tensor]:
    """HF-named (`vision_model.*`) weights of a SigLIP vision tower, as comfy.clip_vision.load reads them."""
    import comfy.clip_model
    import comfy.ops

    # Build on the meta device for the key list, then fill one tensor at a time (so400m is 0.4 B params).
    with torch.device("meta"):
        skeleton = comfy.clip_model.CLIPVisionModelProjection(shape.config(), dtype, None, comfy.ops.manual_cast)
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, parameter in skeleton.named_parameters():
        if "norm" in name and name.endswith(".weight"):
            value = torch.ones(parameter.shape)
        elif "norm" in name and name.endswith(".bias"):
            value = torch.zeros(parameter.shape)
        else:
            value = torch.randn(parameter.shape, generator=generator) * 0.02
        state[name] = value.to(dtype)
    return state


def _shape_key(shape: SiglipShape) -> str:
    return (
        f"L{shape.num_hidden_layers}_W{shape.hidden_size}_H{shape.num_attention_heads}"
        f"_I{shape.image_size}_P{shape.patch_size}"
    )
