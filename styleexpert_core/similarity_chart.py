"""How alike a set of style references is: their cosine-similarity matrix, a labelled chart of it
and a one-line summary (closest pair, most distant pair, the odd one out)."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw

from .drawing import (ACCENT, BACKGROUND, MUTED, TEXT, TITLE_PX, draw_lines, font, legend_bar, line_height, ramp,
                      text_width, to_array, wrap)
from .errors import InputError

THUMB = 40


def cosine_matrix(embeddings: torch.Tensor) -> np.ndarray:
    """[N, N] cosine similarities of the rows of `embeddings` [N, D]."""
    if embeddings.ndim != 2 or embeddings.shape[0] == 0:
        raise InputError(f"expected embeddings [N, D] with N >= 1, got shape {tuple(embeddings.shape)}.")
    unit = torch.nn.functional.normalize(embeddings.double(), dim=-1)
    return (unit @ unit.t()).clamp(-1, 1).float().numpy()


def similarity_summary(matrix: np.ndarray, labels: list[str]) -> str:
    """One line: mean similarity between different references, the closest and most distant pair,
    and the reference least like the others."""
    n = matrix.shape[0]
    if n < 2:
        return "1 style reference: nothing to compare it with."
    off = ~np.eye(n, dtype=bool)
    pairs = [(matrix[i, j], i, j) for i in range(n) for j in range(i + 1, n)]
    high, low = max(pairs), min(pairs)
    typical = np.where(off, matrix, 0).sum(axis=1) / (n - 1)
    odd = int(np.argmin(typical))
    return (f"{n} style references; mean similarity {matrix[off].mean():.3f}; closest {labels[high[1]]} & "
            f"{labels[high[2]]} ({high[0]:.3f}); most apart {labels[low[1]]} & {labels[low[2]]} ({low[0]:.3f}); "
            f"least like the others: {labels[odd]} (mean {typical[odd]:.3f})")


def similarity_chart(matrix: np.ndarray, labels: list[str], thumbnails: np.ndarray | None = None,
                     title: str = "Style reference similarity", space: str = "style latent") -> np.ndarray:
    """RGB uint8 chart: a numbered, labelled (and, given [N, h, w, 3] uint8 thumbnails, pictured)
    matrix coloured from its lowest value to 1, with the values written in cells big enough to hold them."""
    n = matrix.shape[0]
    cell = int(np.clip(640 // n, 24, 64))
    names = [f"{i + 1}  {label}" for i, label in enumerate(labels)]
    thumb = THUMB if thumbnails is not None else 0
    left = 12 + thumb + 8 + min(max(text_width(name) for name in names), 260) + 10
    width = max(left + n * cell + 12, 560)
    lines = [(line, TITLE_PX, TEXT) for line in wrap(title, width - 24, TITLE_PX)]
    lines += [(line, 15, ACCENT) for line in wrap(similarity_summary(matrix, labels), width - 24)]
    top = 12 + sum(line_height(size) for _, size, _ in lines) + line_height() + 4
    row = max(cell, thumb + 4)
    grid_bottom = top + n * row
    canvas = Image.new("RGB", (width, grid_bottom + 5 * line_height() + 24), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    y = 12
    for line, size, colour in lines:
        y = draw_lines(draw, (12, y), [line], size, colour)
    low = float(matrix.min())
    scaled = (matrix - low) / max(1.0 - low, 1e-6)
    colours = ramp(scaled).astype(np.uint8)
    for j in range(n):
        number = str(j + 1)
        draw.text((left + j * cell + (cell - text_width(number)) // 2, top - line_height()), number, font=font(),
                  fill=MUTED)
    for i in range(n):
        y0 = top + i * row
        if thumbnails is not None:
            canvas.paste(Image.fromarray(thumbnails[i]).resize((THUMB, THUMB)), (12, y0 + (row - THUMB) // 2))
        draw.text((12 + thumb + 8, y0 + (row - 15) // 2), _fit(names[i], 260), font=font(), fill=TEXT)
        for j in range(n):
            x0 = left + j * cell
            draw.rectangle([x0, y0, x0 + cell - 2, y0 + row - 2], fill=tuple(int(c) for c in colours[i, j]))
            if cell >= 44:
                value = f"{matrix[i, j]:.2f}"
                shade = (0, 0, 0) if scaled[i, j] > 0.6 else (235, 235, 235)
                draw.text((x0 + (cell - 1 - text_width(value)) // 2, y0 + (row - 17) // 2), value, font=font(),
                          fill=shade)
    legend_bar(canvas, (12, grid_bottom + 10), min(360, width - 24), f"{low:.2f}", "1.00",
               f"cosine similarity of the references' {space}s (1 = the same; the diagonal compares each with "
               "itself)")
    return to_array(canvas)


def _fit(text: str, width: int) -> str:
    """`text` cut with an ellipsis to at most `width` pixels."""
    if text_width(text) <= width:
        return text
    while text and text_width(text + "…") > width:
        text = text[:-1]
    return text + "…"
