"""PNG plots drawn with PIL (matplotlib is not a dependency)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)]


def _frame(title: str, size=(640, 400)):
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    draw.text((10, 8), title, fill="black")
    return image, draw, (60, 40, size[0] - 20, size[1] - 40)


def line_plot(series: dict[str, tuple[list[float], list[float]]], title: str, path: str | Path) -> Path:
    """One line per series (x, y); axes are annotated with min/max."""
    image, draw, (x0, y0, x1, y1) = _frame(title)
    xs = np.concatenate([np.asarray(x, float) for x, _ in series.values()])
    ys = np.concatenate([np.asarray(y, float) for _, y in series.values()])
    xmin, xmax = xs.min(), max(xs.max(), xs.min() + 1e-9)
    ymin, ymax = ys.min(), max(ys.max(), ys.min() + 1e-9)
    draw.rectangle((x0, y0, x1, y1), outline="black")
    draw.text((4, y0), f"{ymax:.3g}", fill="black")
    draw.text((4, y1 - 10), f"{ymin:.3g}", fill="black")
    draw.text((x0, y1 + 4), f"{xmin:.0f}", fill="black")
    draw.text((x1 - 40, y1 + 4), f"{xmax:.0f}", fill="black")
    for k, (name, (x, y)) in enumerate(series.items()):
        colour = COLOURS[k % len(COLOURS)]
        pts = [(x0 + (xi - xmin) / (xmax - xmin) * (x1 - x0), y1 - (yi - ymin) / (ymax - ymin) * (y1 - y0))
               for xi, yi in zip(x, y)]
        if len(pts) > 1:
            draw.line(pts, fill=colour, width=2)
        else:
            draw.ellipse((pts[0][0] - 3, pts[0][1] - 3, pts[0][0] + 3, pts[0][1] + 3), fill=colour)
        draw.text((x1 - 200, y0 + 6 + 14 * k), name, fill=colour)
    image.save(path)
    return Path(path)


def bar_plot(values: dict[str, float], title: str, path: str | Path, vmax: float = 1.0) -> Path:
    """Horizontal bars with their values."""
    image, draw, (x0, y0, x1, y1) = _frame(title, size=(640, 60 + 28 * len(values)))
    left = x0 + 150
    for k, (name, v) in enumerate(values.items()):
        top = y0 + 28 * k
        draw.text((10, top + 6), name, fill="black")
        draw.rectangle((left, top + 4, left + (x1 - left) * max(v, 0) / vmax, top + 22), fill=COLOURS[k % len(COLOURS)])
        draw.text((left + 4, top + 7), f"{v:.3f}", fill="white" if v > 0.1 * vmax else "black")
    image.save(path)
    return Path(path)


def image_grid(rows: list[np.ndarray], path: str | Path, scale: int = 2) -> Path:
    """rows: list of [n, H, W, 3] float arrays (equal n, H, W) -> one PNG grid."""
    grid = np.concatenate([np.concatenate(list(r), axis=1) for r in rows], axis=0)
    img = Image.fromarray((np.clip(grid, 0, 1) * 255).astype(np.uint8))
    img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST).save(path)
    return Path(path)


def labelled_grid(rows: dict[str, np.ndarray], path: str | Path, scale: int = 2, label_width: int = 110) -> Path:
    """One row per entry ([n, H, W, 3] floats, equal shapes) with its name written left of it."""
    grid = np.concatenate([np.concatenate(list(r), axis=1) for r in rows.values()], axis=0)
    img = Image.fromarray((np.clip(grid, 0, 1) * 255).astype(np.uint8))
    img = img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)
    out = Image.new("RGB", (img.width + label_width, img.height), "white")
    out.paste(img, (label_width, 0))
    draw = ImageDraw.Draw(out)
    row_height = img.height // len(rows)
    for k, name in enumerate(rows):
        draw.text((6, k * row_height + row_height // 2 - 6), name, fill="black")
    out.save(path)
    return Path(path)


def side_by_side(panels: dict[str, np.ndarray], path: str | Path, gap: int = 16) -> Path:
    """uint8 RGB images next to each other, each titled with its name."""
    height = max(p.shape[0] for p in panels.values()) + 24
    width = sum(p.shape[1] for p in panels.values()) + gap * (len(panels) + 1)
    out = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(out)
    x = gap
    for name, panel in panels.items():
        draw.text((x, 4), name, fill="black")
        out.paste(Image.fromarray(panel), (x, 22))
        x += panel.shape[1] + gap
    out.save(path)
    return Path(path)
