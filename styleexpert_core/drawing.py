"""Readable charts with Pillow: a scalable font, wrapped text, a colour ramp and its legend bar.

Pillow's scalable default font (FreeType, Pillow >= 10.1) is used at a size people can read on
the ComfyUI canvas; the 8 px bitmap font is never used.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

TEXT_PX = 15  # body text: labels, legends
TITLE_PX = 18
BACKGROUND = (24, 24, 28)
TEXT = (220, 220, 220)
MUTED = (150, 150, 160)
ACCENT = (250, 230, 80)

# A dark-blue -> teal -> yellow ramp, readable on the dark ComfyUI canvas.
_STOPS = np.array([[20, 24, 60], [30, 140, 140], [250, 230, 80]], dtype=np.float32)


@lru_cache(maxsize=None)
def font(size: int = TEXT_PX) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def text_width(text: str, size: int = TEXT_PX) -> int:
    left, _, right, _ = font(size).getbbox(text)
    return int(right - left)


def wrap(text: str, width: int, size: int = TEXT_PX) -> list[str]:
    """`text` broken at spaces into lines no wider than `width` pixels (a long word keeps its line)."""
    lines: list[str] = []
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split(" "):
            candidate = f"{line} {word}" if line else word
            if line and text_width(candidate, size) > width:
                lines.append(line)
                line = word
            else:
                line = candidate
        lines.append(line)
    return lines


def line_height(size: int = TEXT_PX) -> int:
    return int(size * 1.35)


def draw_lines(draw: ImageDraw.ImageDraw, xy: tuple[int, int], lines: list[str], size: int = TEXT_PX,
               fill=TEXT) -> int:
    """Draws `lines` from `xy` down; returns the y below the last one."""
    x, y = xy
    for line in lines:
        draw.text((x, y), line, font=font(size), fill=fill)
        y += line_height(size)
    return y


def ramp(values: np.ndarray) -> np.ndarray:
    """RGB float [..., 3] of values in [0, 1] on the ramp (clipped)."""
    v = np.clip(np.asarray(values, dtype=np.float32), 0.0, 1.0)
    low = np.clip(v * 2, 0, 1)[..., None]
    high = np.clip(v * 2 - 1, 0, 1)[..., None]
    return np.where(v[..., None] < 0.5, _STOPS[0] + (_STOPS[1] - _STOPS[0]) * low,
                    _STOPS[1] + (_STOPS[2] - _STOPS[1]) * high)


def ramp_colour(value: float) -> tuple[int, int, int]:
    return tuple(int(c) for c in ramp(np.array(value)))


def legend_bar(canvas: Image.Image, xy: tuple[int, int], width: int, low: str, high: str, caption: str) -> int:
    """A horizontal colour bar of the ramp with its end values and a caption; returns the y below it."""
    x, y = xy
    bar = ramp(np.linspace(0.0, 1.0, width))[None].repeat(14, axis=0).astype(np.uint8)
    canvas.paste(Image.fromarray(bar), (x, y))
    draw = ImageDraw.Draw(canvas)
    y += 16
    draw.text((x, y), low, font=font(), fill=TEXT)
    draw.text((x + width - text_width(high), y), high, font=font(), fill=TEXT)
    return draw_lines(draw, (x, y + line_height()), wrap(caption, width), fill=MUTED)


def to_array(canvas: Image.Image) -> np.ndarray:
    return np.asarray(canvas.convert("RGB"), dtype=np.uint8)
