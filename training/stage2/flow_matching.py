"""Rectified-flow (flow-matching) loss for Kontext with reference tokens.

    x_t    = (1 - sigma) x_0 + sigma * noise
    target = noise - x_0                       (the velocity Flux predicts)
    loss   = mean over target tokens of (prediction - target)^2, in fp32

The sequence fed to the transformer is [target tokens | content tokens (index 1) |
optional style tokens (index 2, rows + 64)]; the prediction is sliced back to the target
tokens, as diffusers' Kontext pipeline and trainer do. sigma is drawn logit-normal (SD3 /
diffusers ``compute_density_for_timestep_sampling('logit_normal')``) and optionally shifted
like Flux's scheduler: sigma' = s sigma / (1 + (s - 1) sigma).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from styleexpert_core.reference_layout import STYLE_ROW_OFFSET

from .flux import image_ids, pack_latents


def sample_sigmas(batch: int, generator: torch.Generator | None = None, *, mean: float = 0.0, std: float = 1.0,
                  shift: float = 1.0, device: torch.device | str = "cpu") -> torch.Tensor:
    u = torch.randn(batch, generator=generator) * std + mean
    sigma = torch.sigmoid(u)
    if shift != 1.0:
        sigma = shift * sigma / (1 + (shift - 1) * sigma)
    return sigma.to(device)


@dataclass
class KontextBatch:
    """One bucket-uniform batch from the stage-2 cache (latents unpacked, [B, C, h, w])."""

    target: torch.Tensor
    content: torch.Tensor
    text_seq: torch.Tensor  # [B, S, D]
    pooled: torch.Tensor  # [B, P]
    style_latent: torch.Tensor  # [B, cond]
    style_ref: torch.Tensor | None = None

    def to(self, device, dtype=None, **_) -> "KontextBatch":  # accelerate may pass non_blocking
        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device=device, dtype=dtype)

        return KontextBatch(move(self.target), move(self.content), move(self.text_seq), move(self.pooled),
                            self.style_latent.to(device=device, dtype=torch.float32), move(self.style_ref))


def kontext_velocity(model, noisy: torch.Tensor, batch: KontextBatch, sigma: torch.Tensor, *,
                     guidance: float | None = None) -> torch.Tensor:
    """Flux's velocity for the packed noisy target tokens [B, N, C], with the batch's content (index 1)
    and optional style (index 2, rows + 64) as reference tokens: the official layout."""
    h, w = batch.target.shape[-2:]
    device = noisy.device
    tokens = [noisy, pack_latents(batch.content)]
    ids = [image_ids(h, w, index=0, device=device), image_ids(*batch.content.shape[-2:], index=1, device=device)]
    if batch.style_ref is not None:
        tokens.append(pack_latents(batch.style_ref))
        ids.append(image_ids(*batch.style_ref.shape[-2:], index=2, row_offset=STYLE_ROW_OFFSET, device=device))
    txt_ids = torch.zeros(batch.text_seq.shape[1], 3, device=device)
    guidance_t = None if guidance is None else torch.full((noisy.shape[0],), guidance, device=device,
                                                          dtype=noisy.dtype)
    pred = model(hidden_states=torch.cat(tokens, dim=1), encoder_hidden_states=batch.text_seq,
                 pooled_projections=batch.pooled, timestep=sigma.to(noisy.dtype), img_ids=torch.cat(ids, dim=0),
                 txt_ids=txt_ids, guidance=guidance_t, return_dict=False)[0]
    return pred[:, : noisy.shape[1]]


def flow_matching_loss(model, batch: KontextBatch, noise: torch.Tensor, sigma: torch.Tensor, *,
                       guidance: float | None = None) -> torch.Tensor:
    """Velocity-prediction loss on the target tokens; reference tokens are clean conditions.

    ``guidance`` is the embedded guidance value for guidance-distilled models (Kontext-dev;
    1.0 is the usual training value); None for models without a guidance embedder. ``model``
    may be wrapped (DDP, DeepSpeed), so nothing is read from its config here.
    """
    x0 = pack_latents(batch.target)
    noisy = (1 - sigma[:, None, None]) * x0 + sigma[:, None, None] * noise
    pred = kontext_velocity(model, noisy, batch, sigma, guidance=guidance)
    return F.mse_loss(pred.float(), (noise - x0).float())
