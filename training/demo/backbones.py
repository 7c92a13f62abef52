"""Tiny frozen backbones built in code for the demo and the tests (no downloads).

* ``gabor_siglip``: a real ``transformers.SiglipVisionModel`` (20 layers, so hidden-state
  indices -2, -11, -20 exist) whose weights are *constructed*, not random: the patch
  embedding is a fixed bank of luminance Gabor filters (4 orientations x 4 frequencies x
  2 phases, zero-mean, colour-blind), position embeddings are zero, the first encoder
  layer's MLP writes the rectified filter energies |f| into the other half of the channels,
  and every later layer is an exact identity (zeroed attention output and MLP output).
  So every token carries local texture energy, like the translation-tolerant mid-level
  features a pretrained SigLIP has, and the three tapped layers hold the same features.
  It is colour-blind on purpose: adding patch-mean colour channels was measured to lower
  held-out retrieval (0.73 vs 0.87 mAP) without helping stage 2.
  A *random* tiny SigLIP does not work as a stand-in: its token features carry almost no
  style information (measured: projector 0.07 mAP on held-out styles, below colour
  histograms), whereas real SigLIP features are what StyleExpert's projector was designed for.
* ``random_siglip``: the same architecture with random weights (tests only).
* ``PatchVAE``: a fixed, exactly invertible "VAE": 2x average pooling, then 2x2 space-to-depth
  -> 12 latent channels at 1/4 resolution (Flux packs 2x2 again -> 48 per token).
* ``ByteText`` / ``ByteStyleText``: text encoders over UTF-8 bytes with a fixed random
  embedding table: a T5-like sequence plus a pooled vector, or one pooled style vector.
* ``demo_flux``: a small ``diffusers.FluxTransformer2DModel`` with Kontext-like settings.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..data.backbones import SiglipHidden, TextEmbeddings

DEMO_LAYERS = (-2, -11, -20)


def _siglip(width: int, image_size: int, patch: int, layers: int):
    from transformers import SiglipVisionConfig, SiglipVisionModel

    config = SiglipVisionConfig(hidden_size=width, intermediate_size=2 * width, num_hidden_layers=layers,
                                num_attention_heads=2, image_size=image_size, patch_size=patch,
                                vision_use_head=False)
    return SiglipVisionModel(config)


def random_siglip(*, width: int = 32, image_size: int = 32, patch: int = 8, layers: int = 20,
                  seed: int = 0) -> SiglipHidden:
    torch.manual_seed(seed)
    return SiglipHidden(_siglip(width, image_size, patch, layers), DEMO_LAYERS)


def _gabor_bank(count: int, patch: int) -> torch.Tensor:
    """``count`` zero-mean unit-norm Gabor-like cosine filters [count, patch, patch]."""
    yy, xx = torch.meshgrid(torch.arange(patch).float(), torch.arange(patch).float(), indexing="ij")
    filters = []
    for i in range(count):
        theta = math.pi * (i % 4) / 4
        freq = (1 + (i // 4) % 4) / patch
        phase = (i // 16) * math.pi / 2
        g = torch.cos(2 * math.pi * freq * (xx * math.cos(theta) + yy * math.sin(theta)) + phase)
        g = g - g.mean()
        filters.append(g / g.norm().clamp_min(1e-6))
    return torch.stack(filters)


@torch.no_grad()
def gabor_siglip(*, width: int = 64, image_size: int = 64, patch: int = 8, layers: int = 20) -> SiglipHidden:
    """The constructed demo SigLIP described in the module docstring (deterministic)."""
    model = _siglip(width, image_size, patch, layers)
    half = width // 2
    emb = model.embeddings
    emb.position_embedding.weight.zero_()
    weight = torch.zeros(width, 3, patch, patch)
    weight[:half] = _gabor_bank(half, patch)[:, None] / math.sqrt(3)  # luminance only
    emb.patch_embedding.weight.copy_(weight)
    emb.patch_embedding.bias.zero_()
    for layer in model.encoder.layers:
        layer.self_attn.out_proj.weight.zero_()
        layer.self_attn.out_proj.bias.zero_()
        layer.mlp.fc2.weight.zero_()
        layer.mlp.fc2.bias.zero_()
    first = model.encoder.layers[0]
    first.layer_norm2.weight.fill_(1.0)
    first.layer_norm2.bias.zero_()
    first.mlp.fc1.weight.zero_()
    first.mlp.fc1.bias.zero_()
    for i in range(half):  # gelu(3f)/3 + gelu(-3f)/3 ~= |f|: rectified filter energy
        first.mlp.fc1.weight[i, i] = 3.0
        first.mlp.fc1.weight[half + i, i] = -3.0
        first.mlp.fc2.weight[half + i, i] = 1 / 3
        first.mlp.fc2.weight[half + i, half + i] = 1 / 3
    return SiglipHidden(model, DEMO_LAYERS)


class PatchVAE:
    """Fixed invertible latent map: avg-pool 2x, then space-to-depth 2x2 (12 channels)."""

    channels = 12
    factor = 4  # image pixels per latent pixel

    @torch.no_grad()
    def encode_latents(self, images: torch.Tensor) -> torch.Tensor:
        return F.pixel_unshuffle(F.avg_pool2d(images.float() * 2 - 1, 2), 2)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        images = F.interpolate(F.pixel_shuffle(latents.float(), 2), scale_factor=2, mode="nearest")
        return ((images + 1) / 2).clamp(0, 1)


class ByteText:
    """Prompt -> (sequence [S, D], pooled [P]) from a fixed random table over UTF-8 bytes."""

    def __init__(self, dim: int = 32, pooled_dim: int = 32, max_length: int = 8, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.table = torch.randn(256, dim, generator=g) / math.sqrt(dim)
        self.pool = torch.randn(dim, pooled_dim, generator=g) / math.sqrt(dim)
        self.max_length = max_length

    def _ids(self, prompt: str) -> torch.Tensor:
        data = list(prompt.encode("utf-8")[: self.max_length]) or [0]
        return torch.tensor(data)

    def encode_text(self, prompts: list[str]) -> TextEmbeddings:
        seq = torch.zeros(len(prompts), self.max_length, self.table.shape[1])
        for i, p in enumerate(prompts):
            ids = self._ids(p)
            seq[i, : len(ids)] = self.table[ids]
        return TextEmbeddings(seq, seq.mean(1) @ self.pool)


class ByteStyleText:
    """Style prompt -> one vector (mean of fixed random byte embeddings): a tiny text tower."""

    def __init__(self, dim: int = 32, seed: int = 1) -> None:
        self.table = torch.randn(256, dim, generator=torch.Generator().manual_seed(seed))

    def encode_style_text(self, prompts: list[str]) -> torch.Tensor:
        return torch.stack([self.table[torch.tensor(list(p.encode("utf-8")) or [0])].mean(0) for p in prompts])


def demo_flux(*, in_channels: int = 4 * PatchVAE.channels, width: int = 64, double: int = 2, single: int = 2,
              text_dim: int = 32, seed: int = 0):
    """A small Kontext-shaped FluxTransformer2DModel (guidance embedder on)."""
    from diffusers import FluxTransformer2DModel

    heads = 2
    head_dim = width // heads
    rope = (head_dim - 2 * (head_dim * 3 // 8), head_dim * 3 // 8, head_dim * 3 // 8)
    torch.manual_seed(seed)
    return FluxTransformer2DModel(patch_size=1, in_channels=in_channels, num_layers=double,
                                  num_single_layers=single, attention_head_dim=head_dim,
                                  num_attention_heads=heads, joint_attention_dim=text_dim,
                                  pooled_projection_dim=text_dim, guidance_embeds=True, axes_dims_rope=rope)
