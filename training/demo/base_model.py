"""A stand-in for "pretrained Kontext": a tiny Flux trained briefly to reproduce its reference.

Stage 2 adapts a frozen, already-capable editing model. A random tiny Flux is not one, so
the demo first trains the whole tiny model for a few hundred steps on the identity edit
(target = the content reference, flow matching, no style information at all) and saves it
as a diffusers folder. Stage 2 then loads that folder like any other base model and
freezes it. Nothing in this step sees style latents, so it cannot leak style knowledge.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ..stage2.data import TripletCache
from ..stage2.flow_matching import flow_matching_loss, sample_sigmas
from .backbones import demo_flux

log = logging.getLogger(__name__)


def pretrain_base(cache_dir: str | Path, out_dir: str | Path, *, steps: int, batch_size: int = 8,
                  lr: float = 1e-3, width: int = 64, seed: int = 0) -> tuple[Path, list[float]]:
    data = TripletCache(str(cache_dir))
    channels = data.reader.get(0, "target").shape[0]
    model = demo_flux(in_channels=4 * channels, width=width, text_dim=data.text_seq.shape[-1], seed=seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    sampler = data.batch_sampler(batch_size, seed=seed)
    g = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    epoch = 0
    while len(losses) < steps:
        sampler.set_epoch(epoch)
        for indices in sampler:
            batch = data.collate([data[i] for i in indices])
            batch = replace(batch, target=batch.content)  # identity edit: reproduce the reference
            x = batch.target
            noise = torch.randn(x.shape[0], x.shape[-2] * x.shape[-1] // 4, x.shape[1] * 4, generator=g)
            sigma = sample_sigmas(x.shape[0], g)
            loss = flow_matching_loss(model, batch, noise, sigma, guidance=1.0)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
            if len(losses) % 100 == 0:
                log.info("base pretraining step %d/%d loss %.4f", len(losses), steps, np.mean(losses[-100:]))
            if len(losses) >= steps:
                break
        epoch += 1
    model.save_pretrained(str(out_dir))
    return Path(out_dir), losses
