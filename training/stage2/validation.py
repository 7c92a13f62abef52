"""Stage-2 validation on styles the experts never trained on, and sample grids every N steps.

* ``held_out_styles``: ``holdout_styles`` style labels of the training cache, drawn by seed;
  their triplets leave the training set and become the validation set, so the held-out loss
  (correct vs shuffled style latent, ``train.evaluate``) measures transfer to unseen styles.
* ``write_sample_grid``: the model being trained generates the first validation batch with
  the Kontext Euler sampler (FLUX.1's scheduler with dynamic shift, the one the demo uses:
  ``demo.sampler.flux_scheduler``) through training's own ``kontext_velocity``, so the
  sequence layout (content index 1, optional style tokens index 2) and the devices are those of
  training. One row per sample: reference | content | sample | target. The sample is decoded
  with the VAE of ``sample_vae`` (a diffusers folder with ``vae/``) or, without one, shown as a
  false-colour latent preview (channel thirds averaged, min-max scaled per image).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..data.cache import CacheReader
from ..data.errors import InputError
from ..data.images import load_batch
from ..demo.sampler import flux_scheduler
from .data import TripletCache
from .flow_matching import KontextBatch, kontext_velocity
from .flux import unpack_latents


def held_out_styles(cache_dir: str, count: int, seed: int) -> frozenset[int]:
    """``count`` style labels of a triplet cache, drawn by ``seed``, to keep out of training."""
    labels = sorted({it["label"] for it in CacheReader(cache_dir, kind="triplets").items})
    if not 2 <= count < len(labels):
        raise InputError(f"holdout_styles={count} but {cache_dir} has {len(labels)} styles: hold out at least 2 "
                         "(the shuffled-style control needs two) and leave at least one for training.")
    return frozenset(int(x) for x in np.random.default_rng(seed).choice(labels, count, replace=False))


@torch.no_grad()
def sample_latents(model, batch: KontextBatch, noise: torch.Tensor, *, steps: int,
                   guidance: float | None) -> torch.Tensor:
    """Latents [B, C, h, w] generated next to ``batch.content`` from ``noise`` [B, tokens, 4C] (Euler)."""
    scheduler = flux_scheduler(steps, noise.shape[1])
    latents = noise
    for t in scheduler.timesteps:
        sigma = (t / 1000).expand(noise.shape[0]).to(noise.device)
        velocity = kontext_velocity(model, latents, batch, sigma, guidance=guidance)
        latents = scheduler.step(velocity.float(), t, latents, return_dict=False)[0]
    return unpack_latents(latents, *batch.target.shape[-2:])


def latent_preview(latents: torch.Tensor) -> torch.Tensor:
    """[B, C, h, w] -> [B, 3, h, w] in [0, 1]: channel thirds averaged, min-max scaled per image."""
    rgb = torch.stack([part.mean(1) for part in latents.float().chunk(3, dim=1)], dim=1)
    lo, hi = rgb.amin((1, 2, 3), keepdim=True), rgb.amax((1, 2, 3), keepdim=True)
    return (rgb - lo) / (hi - lo).clamp_min(1e-6)


def load_vae(folder: str):
    """A diffusers AutoencoderKL from ``<folder>/vae`` (local files only), to decode samples."""
    from diffusers import AutoencoderKL

    return AutoencoderKL.from_pretrained(folder, subfolder="vae", local_files_only=True).eval()


@torch.no_grad()
def decode(latents: torch.Tensor, vae) -> torch.Tensor:
    """Images [B, 3, H, W] in [0, 1]: VAE decode (undoing the cache's shift and scale), or the preview."""
    if vae is None:
        return latent_preview(latents)
    p = next(vae.parameters())
    z = latents.to(p.device, p.dtype) / vae.config.scaling_factor + (vae.config.shift_factor or 0.0)
    return ((vae.decode(z).sample.float() + 1) / 2).clamp(0, 1).cpu()


def save_grid(columns: list[torch.Tensor], path: Path, size: tuple[int, int]) -> Path:
    """Rows of [B, 3, H, W] images side by side (one column per tensor), each cell resized to ``size``."""
    cells = [[Image.fromarray((img.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).resize(size)
              for img in col.float().cpu().clamp(0, 1)] for col in columns]
    w, h = size
    grid = Image.new("RGB", (w * len(cells), h * len(cells[0])))
    for c, col in enumerate(cells):
        for r, cell in enumerate(col):
            grid.paste(cell, (c * w, r * h))
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)
    return path


def write_sample_grid(model, context, data: TripletCache, path: Path, *, count: int, steps: int,
                      guidance: float | None, seed: int, vae=None, write: bool = True) -> Path:
    """Sample the first validation batch (every rank runs it: sharded models need all ranks); rank 0 writes."""
    indices = data.batch_sampler(min(count, len(data)), seed=0, shuffle=False, drop_last=False).batches()[0]
    device = next(p for p in model.parameters()).device
    batch = data.collate([data[i] for i in indices]).to(device)
    b, c, h, w = batch.target.shape
    noise = torch.randn(b, h * w // 4, c * 4, generator=torch.Generator().manual_seed(seed)).to(device)
    was_training = model.training
    model.eval()
    context.set(batch.style_latent)
    samples = decode(sample_latents(model, batch, noise, steps=steps, guidance=guidance), vae)
    model.train(was_training)
    if write:
        width, height = data.buckets[indices[0]]
        images = {f: load_batch([data.items[i][f] for i in indices], width, height) for f in ("style", "content",
                                                                                             "target")}
        save_grid([images["style"], images["content"], samples, images["target"]], path, (width, height))
    return path
