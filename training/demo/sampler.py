"""Kontext sampling for a diffusers Flux: the Euler flow-matching loop of diffusers' FluxKontextPipeline.

The pipeline's own scheduler (``FlowMatchEulerDiscreteScheduler`` with FLUX.1's dynamic shift,
``mu`` from the number of image tokens) runs ``steps`` Euler steps from pure noise; every
step sees [noisy target (index 0) | clean content reference (index 1)] and the embedded
guidance value, exactly as training's flow-matching loss builds the sequence. ComfyUI's
``euler`` + ``simple`` on a Flux model is the same first-order solver on the same kind of
shifted schedule.
"""

from __future__ import annotations

import numpy as np
import torch

from ..stage2.flow_matching import KontextBatch
from ..stage2.flux import image_ids, pack_latents, unpack_latents

# FLUX.1's scheduler_config.json (diffusers FluxKontextPipeline reads the same keys).
FLUX_SCHEDULER = dict(num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True, base_shift=0.5,
                      max_shift=1.15, base_image_seq_len=256, max_image_seq_len=4096)


def flux_scheduler(steps: int, image_tokens: int):
    """The scheduler set to ``steps`` steps for an image of ``image_tokens`` packed tokens."""
    from diffusers import FlowMatchEulerDiscreteScheduler
    from diffusers.pipelines.flux.pipeline_flux_kontext import calculate_shift

    scheduler = FlowMatchEulerDiscreteScheduler(**FLUX_SCHEDULER)
    mu = calculate_shift(image_tokens, FLUX_SCHEDULER["base_image_seq_len"], FLUX_SCHEDULER["max_image_seq_len"],
                         FLUX_SCHEDULER["base_shift"], FLUX_SCHEDULER["max_shift"])
    scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / steps, steps), mu=mu)
    scheduler.set_begin_index(0)
    return scheduler


@torch.no_grad()
def sample_kontext(model, batch: KontextBatch, noise: torch.Tensor, *, steps: int, guidance: float) -> torch.Tensor:
    """Latents [B, C, h, w] generated next to ``batch.content`` from ``noise`` [B, tokens, 4C]."""
    h, w = batch.content.shape[-2:]
    content = pack_latents(batch.content)
    ids = torch.cat([image_ids(h, w, index=0), image_ids(h, w, index=1)], dim=0)
    txt_ids = torch.zeros(batch.text_seq.shape[1], 3)
    guidance_t = torch.full((noise.shape[0],), guidance) if model.config.guidance_embeds else None
    scheduler = flux_scheduler(steps, noise.shape[1])
    latents = noise
    for t in scheduler.timesteps:
        velocity = model(hidden_states=torch.cat([latents, content], dim=1), encoder_hidden_states=batch.text_seq,
                         pooled_projections=batch.pooled, timestep=(t / 1000).expand(noise.shape[0]),
                         img_ids=ids, txt_ids=txt_ids, guidance=guidance_t, return_dict=False)[0]
        latents = scheduler.step(velocity[:, : noise.shape[1]], t, latents, return_dict=False)[0]
    return unpack_latents(latents, h, w)
