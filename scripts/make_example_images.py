"""Draws the small example images the example workflows load (committed in example_workflows/images/).

    python scripts/make_example_images.py

Procedural and deterministic, so they carry no licence questions: a content picture (a house,
a tree, hills and a sun in flat colours) and two style references (a stained-glass mosaic,
blue ink hatching on paper). The pack copies them into ComfyUI's input/ folder on start
(nodes/example_inputs.py), so the templates' Load Image nodes find them on the first run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

OUT = Path(__file__).resolve().parents[1] / "example_workflows" / "images"
SIZE = 384


def content() -> Image.Image:
    img = Image.new("RGB", (SIZE, SIZE), (150, 200, 235))
    d = ImageDraw.Draw(img)
    d.ellipse((280, 40, 340, 100), fill=(250, 210, 80))
    d.ellipse((-120, 220, 260, 520), fill=(110, 170, 90))
    d.ellipse((150, 240, 520, 540), fill=(90, 150, 75))
    d.rectangle((120, 210, 250, 320), fill=(215, 120, 90))
    d.polygon([(105, 215), (185, 150), (265, 215)], fill=(140, 60, 50))
    d.rectangle((170, 260, 200, 320), fill=(90, 60, 40))
    d.rectangle((135, 230, 160, 255), fill=(240, 240, 200))
    d.rectangle((215, 230, 240, 255), fill=(240, 240, 200))
    d.rectangle((300, 230, 315, 300), fill=(100, 70, 45))
    d.ellipse((270, 160, 345, 245), fill=(60, 120, 60))
    return img


def stained_glass(seed: int = 1) -> Image.Image:
    """Voronoi cells in saturated colours with dark lead lines."""
    rng = np.random.default_rng(seed)
    points = rng.uniform(0, SIZE, (90, 2))
    palette = np.array([(200, 40, 60), (30, 90, 190), (240, 180, 30), (40, 150, 90), (130, 50, 160),
                        (230, 110, 30)], dtype=np.float32)
    colours = palette[rng.integers(0, len(palette), len(points))]
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    dist = (xx[..., None] - points[:, 0]) ** 2 + (yy[..., None] - points[:, 1]) ** 2
    nearest = np.sort(dist, axis=-1)[..., :2]
    cell = np.argmin(dist, axis=-1)
    edge = (np.sqrt(nearest[..., 1]) - np.sqrt(nearest[..., 0])) < 3.0
    colours *= rng.uniform(0.75, 1.0, (len(points), 1))  # one shade per pane keeps the PNG small
    pixels = colours[cell]
    pixels[edge] = (25, 20, 20)
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8))


def ink_hatching(seed: int = 2) -> Image.Image:
    """Blue ink strokes at two angles on warm paper."""
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", (SIZE, SIZE), (243, 236, 218))
    d = ImageDraw.Draw(img)
    for _ in range(420):
        x, y = rng.uniform(-40, SIZE, 2)
        length = rng.uniform(20, 60)
        dx, dy = (length, length * 0.6) if rng.random() < 0.6 else (length * 0.5, -length)
        blue = int(rng.uniform(90, 170))
        d.line((x, y, x + dx, y + dy), fill=(20, 40, blue), width=int(rng.integers(1, 4)))
    return img.filter(ImageFilter.SMOOTH)


IMAGES = {"styleexpert_content.png": content, "styleexpert_style_a.png": stained_glass,
          "styleexpert_style_b.png": ink_hatching}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, draw in IMAGES.items():
        draw().save(OUT / name, optimize=True)
        print(f"wrote {(OUT / name).relative_to(OUT.parents[1])} ({(OUT / name).stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
