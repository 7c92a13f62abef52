"""The frozen models the caching pass runs, behind three small interfaces.

Training loops never run these: ``training.data.cache`` runs them once and writes shards.

* ``encode_style_hidden(images) -> [B, L, T, W]``: the L SigLIP hidden states the style
  projector reads (officially layers -2, -11, -20 of so400m: L=3, T=729, W=1152).
* ``encode_latents(images) -> [B, C, h, w]``: VAE latents, already shifted and scaled the way
  the transformer expects them (Flux: (z - shift_factor) * scaling_factor).
* ``encode_text(prompts) -> TextEmbeddings(seq [B, S, D], pooled [B, P])``: Flux's T5
  sequence embeddings and CLIP pooled embedding.
* ``encode_style_text(prompts) -> [B, D]`` (optional, stage 1 image-text loss): a text tower
  embedding of each style prompt.

Images are float tensors [B, 3, H, W] in [0, 1], already at the size the model wants.
Real adapters load from local folders only (``local_files_only=True``; nothing downloads);
tiny in-code stand-ins for tests and the demo live in ``training.demo.backbones``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch

# torch dtypes by the names the configs use (cached tensors, frozen model weights)
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass
class TextEmbeddings:
    seq: torch.Tensor  # [B, S, D]  (T5)
    pooled: torch.Tensor  # [B, P]  (CLIP pooled)


@runtime_checkable
class StyleHiddenEncoder(Protocol):
    layers: tuple[int, ...]
    image_size: int

    def encode_style_hidden(self, images: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class LatentEncoder(Protocol):
    def encode_latents(self, images: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class TextEncoder(Protocol):
    def encode_text(self, prompts: list[str]) -> TextEmbeddings: ...


@runtime_checkable
class StyleTextEncoder(Protocol):
    def encode_style_text(self, prompts: list[str]) -> torch.Tensor: ...


def select_hidden_states(hidden_states: tuple[torch.Tensor, ...], layers: tuple[int, ...]) -> torch.Tensor:
    """Stack the requested (negative) HF hidden-state indices: [B, len(layers), T, W]."""
    if len(hidden_states) < max(-i for i in layers):
        raise ValueError(f"the vision tower exposes {len(hidden_states)} hidden states; layers {layers} "
                         f"need at least {max(-i for i in layers)} (SigLIP so400m has 28 incl. embeddings).")
    return torch.stack([hidden_states[i] for i in layers], dim=1)


class SiglipHidden:
    """A transformers SiglipVisionModel as a StyleHiddenEncoder (HF preprocessing: mean/std 0.5)."""

    def __init__(self, model: torch.nn.Module, layers: tuple[int, ...] = (-2, -11, -20),
                 image_size: int | None = None) -> None:
        self.model = model.eval().requires_grad_(False)
        self.layers = tuple(layers)
        self.image_size = image_size or model.config.image_size

    @classmethod
    def from_pretrained(cls, path: str, layers: tuple[int, ...] = (-2, -11, -20),
                        dtype: torch.dtype = torch.float32) -> "SiglipHidden":
        from transformers import SiglipVisionModel

        return cls(SiglipVisionModel.from_pretrained(path, local_files_only=True, dtype=dtype), layers)

    def hidden_states(self, images: torch.Tensor) -> torch.Tensor:
        """Forward with gradients allowed (the full fine-tune mode of stage 1 uses this)."""
        p = next(self.model.parameters())
        pixels = (images.to(p.device, p.dtype) - 0.5) / 0.5
        out = self.model(pixel_values=pixels, output_hidden_states=True)
        return select_hidden_states(out.hidden_states, self.layers)

    @torch.no_grad()
    def encode_style_hidden(self, images: torch.Tensor) -> torch.Tensor:
        return self.hidden_states(images).float()


class VaeLatents:
    """A diffusers AutoencoderKL as a LatentEncoder (mode of the posterior, as the Kontext pipeline)."""

    def __init__(self, vae: torch.nn.Module) -> None:
        self.vae = vae.eval().requires_grad_(False)
        self.shift = getattr(vae.config, "shift_factor", None) or 0.0
        self.scale = getattr(vae.config, "scaling_factor", 1.0)

    @classmethod
    def from_pretrained(cls, path: str, subfolder: str | None = "vae") -> "VaeLatents":
        from diffusers import AutoencoderKL

        return cls(AutoencoderKL.from_pretrained(path, subfolder=subfolder, local_files_only=True))

    @torch.no_grad()
    def encode_latents(self, images: torch.Tensor) -> torch.Tensor:
        p = next(self.vae.parameters())
        z = self.vae.encode((images.to(p.device, p.dtype) * 2 - 1)).latent_dist.mode()
        return ((z - self.shift) * self.scale).float()


class FluxText:
    """Flux's two text encoders as a TextEncoder: T5 sequence (fixed length) + CLIP pooled."""

    def __init__(self, t5, t5_tokenizer, clip, clip_tokenizer, max_length: int = 128) -> None:
        self.t5, self.t5_tokenizer = t5.eval().requires_grad_(False), t5_tokenizer
        self.clip, self.clip_tokenizer = clip.eval().requires_grad_(False), clip_tokenizer
        self.max_length = max_length

    @classmethod
    def from_pretrained(cls, flux_dir: str, max_length: int = 128) -> "FluxText":
        """From a local FLUX.1 diffusers folder (text_encoder, tokenizer, text_encoder_2, tokenizer_2)."""
        from transformers import CLIPTextModel, CLIPTokenizer, T5EncoderModel, T5TokenizerFast

        kw = {"local_files_only": True}
        return cls(T5EncoderModel.from_pretrained(flux_dir, subfolder="text_encoder_2", **kw),
                   T5TokenizerFast.from_pretrained(flux_dir, subfolder="tokenizer_2", **kw),
                   CLIPTextModel.from_pretrained(flux_dir, subfolder="text_encoder", **kw),
                   CLIPTokenizer.from_pretrained(flux_dir, subfolder="tokenizer", **kw), max_length)

    @torch.no_grad()
    def encode_text(self, prompts: list[str]) -> TextEmbeddings:
        t5_ids = self.t5_tokenizer(prompts, padding="max_length", max_length=self.max_length, truncation=True,
                                   return_tensors="pt").input_ids
        clip_ids = self.clip_tokenizer(prompts, padding="max_length", max_length=77, truncation=True,
                                       return_tensors="pt").input_ids
        seq = self.t5(t5_ids.to(self.t5.device))[0]
        pooled = self.clip(clip_ids.to(self.clip.device)).pooler_output
        return TextEmbeddings(seq.float(), pooled.float())


class SiglipStyleText:
    """A transformers SiglipTextModel as a StyleTextEncoder (pooled output)."""

    def __init__(self, model, tokenizer, max_length: int = 64) -> None:
        self.model, self.tokenizer, self.max_length = model.eval().requires_grad_(False), tokenizer, max_length

    @classmethod
    def from_pretrained(cls, path: str) -> "SiglipStyleText":
        from transformers import AutoTokenizer, SiglipTextModel

        return cls(SiglipTextModel.from_pretrained(path, local_files_only=True),
                   AutoTokenizer.from_pretrained(path, local_files_only=True))

    @torch.no_grad()
    def encode_style_text(self, prompts: list[str]) -> torch.Tensor:
        ids = self.tokenizer(prompts, padding="max_length", max_length=self.max_length, truncation=True,
                             return_tensors="pt").input_ids
        return self.model(input_ids=ids.to(self.model.device)).pooler_output.float()


class ProjectedStyle:
    """SigLIP hidden states through a frozen stage-1 StyleProjector: images -> style latent [B, cond]."""

    def __init__(self, siglip: StyleHiddenEncoder, projector: torch.nn.Module) -> None:
        self.siglip, self.projector = siglip, projector.eval().requires_grad_(False)
        self.image_size = siglip.image_size

    @torch.no_grad()
    def encode_style_latent(self, images: torch.Tensor) -> torch.Tensor:
        if tuple(self.siglip.layers) != tuple(self.projector.config.layers):
            raise ValueError(f"SigLIP is tapped at {self.siglip.layers} but the projector reads "
                             f"{self.projector.config.layers}.")
        hidden = self.siglip.encode_style_hidden(images)
        p = next(self.projector.parameters())
        return project(self.projector, hidden.to(p.device, p.dtype)).float()


def project(projector: torch.nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """Style latent from hidden states holding exactly the projector's layers, in its order."""
    return projector.project(hidden.unbind(1))
