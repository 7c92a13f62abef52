"""Procedural styles over procedural content: the demo's stand-in for a stylisation dataset.

Content is a few shaded shapes (circle / rectangle / diamond) on a shaded background. A style
is a fixed set of rendering choices applied to any content:

* a palette taken from a small *shared* pool (so several styles share colours) plus a shift
  of the palette order,
* posterisation (2..5 levels of the content image's luma),
* a stationary texture (stripes, dots, checker, blotches, cross-hatch, waves) with its own
  frequency, angle and amplitude, drawn with a random phase per image,
* an outline thickness and a grain level.

``flat(style)`` is the style as a tone map: no texture, no grain, and its palette in dark-to-light
order (no shift), so a flat rendering is a monotone function of the content's luma plus the
outline, with no randomness. Stage 2 and the demo's stylisation use flat styles: a tiny Flux
with rank-4 experts learns a monotone tone map, while a shifted palette (dark areas drawn light)
left its clean-image estimate at high noise near the style's mean image (probe in docs/TRAINING.md).

With ``colour_jitter > 0`` an image of a style is rendered with a random palette (and a
random permutation of its colours) with that probability, so colour alone stops identifying
the style and an encoder has to look at texture, posterisation, outline and grain.

Everything is numpy, seeded, and takes ~1 ms per 64 px image. Images are float32 HWC in [0, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np


TEXTURES = ("stripes", "dots", "checker", "blotch", "crosshatch", "waves")
PALETTE_SIZE = 5
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # Rec. 601


@dataclass(frozen=True)
class Style:
    """Rendering choices that define one style (see module docstring)."""

    palette_id: int
    palette_shift: int
    levels: int
    texture: str
    frequency: float  # cycles per image width
    angle: float  # radians
    amplitude: float
    outline: int  # pixels, 0 = none
    grain: float


@dataclass(frozen=True)
class Content:
    """One procedural scene: luminance, an outline mask and a plain colour rendering."""

    luminance: np.ndarray  # [H, W] in [0, 1], the luma of ``plain``
    edges: np.ndarray  # [H, W] bool, shape boundaries
    plain: np.ndarray  # [H, W, 3] the un-stylised "photo"


def palette_pool(n_palettes: int, seed: int = 1234) -> np.ndarray:
    """``n_palettes`` palettes of PALETTE_SIZE colours each, ordered dark to light: [P, 5, 3]."""
    rng = np.random.default_rng(seed)
    pool = rng.uniform(0.05, 0.95, size=(n_palettes, PALETTE_SIZE, 3))
    order = np.argsort(pool.mean(-1), axis=1)
    return np.take_along_axis(pool, order[..., None], axis=1).astype(np.float32)


def sample_style(rng: np.random.Generator, n_palettes: int) -> Style:
    """Draw one style uniformly over the style space."""
    return Style(
        palette_id=int(rng.integers(n_palettes)),
        palette_shift=int(rng.integers(PALETTE_SIZE)),
        levels=int(rng.integers(2, 6)),
        texture=TEXTURES[int(rng.integers(len(TEXTURES)))],
        frequency=float(rng.uniform(3.0, 12.0)),
        angle=float(rng.uniform(0.0, math.pi)),
        amplitude=float(rng.uniform(0.15, 0.45)),
        outline=int(rng.integers(0, 4)),
        grain=float(rng.choice([0.0, 0.04, 0.09])),
    )


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    return x, y


def sample_content(rng: np.random.Generator, size: int) -> Content:
    """2-6 shaded shapes on a shaded background."""
    x, y = _grid(size)
    g = rng.uniform(-1, 1, size=2)
    lum = 0.5 + 0.25 * (g[0] * (x - 0.5) + g[1] * (y - 0.5))
    plain = np.repeat(lum[..., None], 3, axis=2) * rng.uniform(0.6, 1.0, size=3)
    label = np.zeros((size, size), dtype=np.int32)
    for i in range(int(rng.integers(2, 7))):
        cx, cy = rng.uniform(0.1, 0.9, size=2)
        r = rng.uniform(0.08, 0.3)
        kind = int(rng.integers(3))
        if kind == 0:
            mask = (x - cx) ** 2 + (y - cy) ** 2 < r * r
        elif kind == 1:
            mask = (np.abs(x - cx) < r) & (np.abs(y - cy) < r * rng.uniform(0.4, 1.0))
        else:
            mask = np.abs(x - cx) + np.abs(y - cy) < r
        base = rng.uniform(0.1, 0.9)
        shade = base + 0.3 * ((x - cx) * rng.uniform(-1, 1) + (y - cy) * rng.uniform(-1, 1)) / max(r, 1e-3)
        lum = np.where(mask, shade, lum)
        plain = np.where(mask[..., None], shade[..., None] * rng.uniform(0.3, 1.0, size=3), plain)
        label = np.where(mask, i + 1, label)
    edges = np.zeros_like(label, dtype=bool)
    edges[:, 1:] |= label[:, 1:] != label[:, :-1]
    edges[1:, :] |= label[1:, :] != label[:-1, :]
    plain = np.clip(plain, 0, 1).astype(np.float32)
    # Styles posterise the luma of the visible image (not the hidden shading), so a rendering is
    # a function of the content image alone.
    return Content(luminance=(plain @ LUMA).astype(np.float32), edges=edges, plain=plain)


def _texture(style: Style, rng: np.random.Generator, size: int) -> np.ndarray:
    """A stationary texture field in [-1, 1] with a random phase (the style fixes its statistics)."""
    x, y = _grid(size)
    f = style.frequency * 2 * math.pi
    px, py = rng.uniform(0, 1, size=2)
    u = (x + px) * math.cos(style.angle) + (y + py) * math.sin(style.angle)
    v = -(x + px) * math.sin(style.angle) + (y + py) * math.cos(style.angle)
    if style.texture == "stripes":
        return np.sin(f * u)
    if style.texture == "dots":
        return np.where(np.sin(f * u) * np.sin(f * v) > 0.4, 1.0, -0.3)
    if style.texture == "checker":
        return np.sign(np.sin(f * u) * np.sin(f * v))
    if style.texture == "crosshatch":
        return np.maximum(np.sin(f * u), np.sin(f * v)) * 2 - 1
    if style.texture == "waves":
        return np.sin(f * u + 2.0 * np.sin(f * 0.5 * v))
    # blotch: low-pass noise whose cut-off follows the style frequency
    cells = max(2, int(style.frequency))
    coarse = rng.uniform(-1, 1, size=(cells + 1, cells + 1))
    idx = np.linspace(0, cells, size)
    i0 = np.floor(idx).astype(int).clip(0, cells - 1)
    t = idx - i0
    rows = coarse[i0] * (1 - t)[:, None] + coarse[i0 + 1] * t[:, None]
    return rows[:, i0] * (1 - t)[None, :] + rows[:, i0 + 1] * t[None, :]


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    out = mask.copy()
    for _ in range(radius - 1):
        grown = out.copy()
        grown[1:] |= out[:-1]
        grown[:-1] |= out[1:]
        grown[:, 1:] |= out[:, :-1]
        grown[:, :-1] |= out[:, 1:]
        out = grown
    return out


def render(
    content: Content,
    style: Style,
    pool: np.ndarray,
    rng: np.random.Generator,
    *,
    colour_jitter: float = 0.0,
) -> np.ndarray:
    """Render ``content`` in ``style``; returns float32 [H, W, 3] in [0, 1]."""
    size = content.luminance.shape[0]
    palette = np.roll(pool[style.palette_id], style.palette_shift, axis=0)
    if colour_jitter > 0 and rng.uniform() < colour_jitter:
        palette = pool[int(rng.integers(len(pool)))][rng.permutation(PALETTE_SIZE)]
    levels = np.floor(content.luminance * style.levels).clip(0, style.levels - 1)
    position = levels / max(style.levels - 1, 1) * (PALETTE_SIZE - 1)
    lo = np.floor(position).astype(int).clip(0, PALETTE_SIZE - 2)
    t = (position - lo)[..., None]
    image = palette[lo] * (1 - t) + palette[lo + 1] * t
    image = image * (1 + style.amplitude * _texture(style, rng, size)[..., None])
    if style.outline > 0:
        ink = palette.mean(-1).argmin()
        image = np.where(_dilate(content.edges, style.outline)[..., None], palette[ink] * 0.5, image)
    if style.grain > 0:
        image = image + rng.normal(0, style.grain, size=image.shape)
    return np.clip(image, 0, 1).astype(np.float32)


def flat(style: Style) -> Style:
    """The style as a tone map (see module docstring): a deterministic function of the content.

    Fields that no longer change the rendering are set to fixed values, so two flat styles are
    equal exactly when they render every content the same way.
    """
    return replace(style, palette_shift=0, texture=TEXTURES[0], frequency=1.0, angle=0.0, amplitude=0.0, grain=0.0)


def sample_styles(n_styles: int, *, seed: int, n_palettes: int = 6) -> tuple[Style, ...]:
    rng = np.random.default_rng(seed)
    return tuple(sample_style(rng, n_palettes) for _ in range(n_styles))


@dataclass(frozen=True)
class TripletSet:
    """(content, style reference, stylised target) triplets; references are targets of the same style.

    ``reference[i]`` is the index of another item of the same style (the next one, cyclically),
    as in the StyleExpert data where the reference is a different image of the style.
    """

    content: np.ndarray  # [N, H, W, 3] plain (un-stylised) scenes
    target: np.ndarray  # [N, H, W, 3] the scene rendered in its style
    labels: np.ndarray  # [N] style index
    reference: np.ndarray  # [N] index of the reference item


def make_triplets(styles: tuple[Style, ...], per_style: int, *, size: int, seed: int, n_palettes: int = 6,
                  colour_jitter: float = 0.0) -> TripletSet:
    """``per_style`` triplets for each style (each with its own content)."""
    if per_style < 2:
        raise ValueError("per_style must be >= 2 so every target has a different reference of its style.")
    rng = np.random.default_rng(seed)
    pool = palette_pool(n_palettes)
    n = len(styles) * per_style
    content = np.empty((n, size, size, 3), dtype=np.float32)
    target = np.empty_like(content)
    labels = np.repeat(np.arange(len(styles)), per_style)
    for i, s in enumerate(labels):
        scene = sample_content(rng, size)
        content[i] = scene.plain
        target[i] = render(scene, styles[s], pool, rng, colour_jitter=colour_jitter)
    within = np.arange(n) % per_style
    reference = labels * per_style + (within + 1) % per_style
    return TripletSet(content=content, target=target, labels=labels, reference=reference)
