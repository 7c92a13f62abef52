"""Stylise held-out contents in styles stage 2 never saw, the way the nodes do, and score the result.

For each unseen style one reference image (a render of another scene in that style) is
encoded by the trained stage-1 encoder (SigLIP -> projector) into a style latent. The
experts are folded for that latent with the core (``fold_checkpoint``: what Apply's merge
mode patches into ComfyUI's Flux) and added into the base model's weights, then the
style's contents are sampled with Kontext's own Euler loop (``sampler.py``). Three ways,
same noise:

* ``base``: the frozen base model, no experts;
* ``experts``: experts folded for the reference's own style latent;
* ``shuffled``: experts folded for the reference latent of another unseen style.

The styles are procedural, so every (content, style) pair has a ground-truth rendering:
each output is scored by pixel MSE to it ([0, 1] RGB) and by style top-1 -- whether the
output's nearest style class under the trained encoder (class = mean latent of fresh
renders of the style) is the reference's style.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from styleexpert_core import check_style, fold_checkpoint
from styleexpert_core.visualize import heatmap, routing_table

from ..stage2.flow_matching import KontextBatch
from .dataset import PROMPT
from .sampler import sample_kontext
from .styles import Style, make_triplets

WAYS = ("base", "experts", "shuffled")


@dataclass(frozen=True)
class StyliseSet:
    """Per unseen style: one reference, ``per_style`` contents with their ground truth, fresh renders."""

    reference: np.ndarray  # [S, H, W, 3]
    content: np.ndarray  # [S, K, H, W, 3]
    target: np.ndarray  # [S, K, H, W, 3] ground truth: content rendered in the style
    prototypes: np.ndarray  # [S, P, H, W, 3] other renders of each style (its class for top-1)


def make_stylise_set(styles: tuple[Style, ...], per_style: int, *, size: int, seed: int,
                     prototypes: int = 8) -> StyliseSet:
    if len(styles) < 2:
        raise ValueError("stylisation needs at least two unseen styles (the shuffled control swaps them).")
    data = make_triplets(styles, per_style + 1, size=size, seed=seed)
    protos = make_triplets(styles, prototypes, size=size, seed=seed + 1)

    def by_style(x: np.ndarray, n: int) -> np.ndarray:
        return x.reshape(len(styles), n, *x.shape[1:])

    content, target = by_style(data.content, per_style + 1), by_style(data.target, per_style + 1)
    # item 0 of each style is only its reference, so no reference is also a scored target
    return StyliseSet(reference=target[:, 0], content=content[:, 1:], target=target[:, 1:],
                      prototypes=by_style(protos.target, prototypes))


def _chw(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()


@contextmanager
def merged_style(model: torch.nn.Module, ckpt, latent: torch.Tensor):
    """The model with the experts folded for one style latent added into its weights; restored on exit."""
    folded = fold_checkpoint(ckpt, latent)
    saved = {}
    try:
        with torch.no_grad():
            for name, (up, down) in folded.items():
                weight = model.get_submodule(name).weight
                saved[name] = weight.detach().clone()
                weight += (up @ down).to(weight.dtype)
        yield model
    finally:
        with torch.no_grad():
            for name, weight in saved.items():
                model.get_submodule(name).weight.copy_(weight)


def style_top1(outputs: torch.Tensor, prototypes: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of output latents [N, D] whose nearest (cosine) class prototype [S, D] is ``labels``."""
    nearest = (F.normalize(outputs, dim=-1) @ F.normalize(prototypes, dim=-1).t()).argmax(-1)
    return float((nearest == labels).float().mean())


@torch.no_grad()
def stylise(model, ckpt, encoder, vae, text, data: StyliseSet, *, steps: int, guidance: float,
            seed: int = 0) -> dict:
    """Sample every way (see module docstring); returns images per way and the scores."""
    styles, per_style = data.content.shape[:2]
    ref_latents = encoder.encode_style_latent(_chw(data.reference))
    latent_for = {"experts": ref_latents, "shuffled": ref_latents.roll(1, dims=0)}  # style s gets s-1's latent
    prompt = text.encode_text([PROMPT] * per_style)
    outputs = {way: [] for way in WAYS}
    bar = tqdm(total=len(WAYS) * styles, desc="stylise", unit="image set")
    for s in range(styles):
        content = vae.encode_latents(_chw(data.content[s]))
        batch = KontextBatch(target=content, content=content, text_seq=prompt.seq, pooled=prompt.pooled,
                             style_latent=ref_latents[s:s + 1])
        g = torch.Generator().manual_seed(seed * 1000 + s)
        noise = torch.randn(per_style, content.shape[-2] * content.shape[-1] // 4, content.shape[1] * 4, generator=g)
        for way in WAYS:
            if way == "base":
                latents = sample_kontext(model, batch, noise, steps=steps, guidance=guidance)
            else:
                with merged_style(model, ckpt, latent_for[way][s:s + 1]):
                    latents = sample_kontext(model, batch, noise, steps=steps, guidance=guidance)
            outputs[way].append(vae.decode(latents).permute(0, 2, 3, 1).numpy())
            bar.update(1)
    bar.close()
    images = {way: np.stack(v) for way, v in outputs.items()}  # [S, K, H, W, 3]
    return {"images": images, **score(images, data, encoder)}


def score(images: dict[str, np.ndarray], data: StyliseSet, encoder) -> dict:
    """Pixel MSE to the ground truth and style top-1 of every way."""
    styles, per_style = data.target.shape[:2]
    flat = lambda x: x.reshape(-1, *x.shape[2:])  # noqa: E731
    prototypes = encoder.encode_style_latent(_chw(flat(data.prototypes)))
    prototypes = prototypes.view(styles, -1, prototypes.shape[-1]).mean(1)
    labels = torch.arange(styles).repeat_interleave(per_style)
    mse, top1 = {}, {}
    for way, out in images.items():
        mse[way] = float(np.mean((out - data.target) ** 2))
        top1[way] = style_top1(encoder.encode_style_latent(_chw(flat(out))), prototypes, labels)
    return {"mse": mse, "top1": top1}


def routing_heatmaps(ckpt, latents: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """The core's routing heatmap (layers x [shared, experts]) of each named style latent [1, cond_dim]."""
    out = {}
    for name, latent in latents.items():
        config, checked = check_style(ckpt, latent, one_style=True)
        out[name] = heatmap(routing_table(ckpt.layers, config, checked)[1], cell=14)
    return out
