"""The labelled routing chart: one readable row per Flux block, expert columns, legend, fingerprint."""

import numpy as np
import pytest

from styleexpert_core.drawing import BACKGROUND, ramp
from styleexpert_core.keys import FluxShape, attention_projection_modules
from styleexpert_core.routing_chart import block_rows, routing_chart, routing_layout, style_fingerprint

FLUX = FluxShape(hidden_size=3072, depth=19, depth_single=38)


def random_gates(layers: int, experts: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    gates = np.zeros((layers, 1 + experts), dtype=np.float32)
    gates[:, 0] = 1.0
    for row in gates:
        k = min(2, experts)
        row[1 + rng.choice(experts, k, replace=False)] = rng.random(k)
    return gates


def ink_height(image: np.ndarray, box: tuple[int, int, int, int]) -> int:
    """Rows of `box` (x0, y0, x1, y1) holding anything brighter than the background: the text's height."""
    x0, y0, x1, y1 = box
    region = image[y0:y1, x0:x1].astype(int)
    inked = np.flatnonzero((np.abs(region - np.array(BACKGROUND)).max(axis=-1) > 60).any(axis=1))
    return int(inked[-1] - inked[0] + 1) if inked.size else 0


def check_chart(names: list[str], gates: np.ndarray) -> tuple[np.ndarray, object]:
    image = routing_chart(names, gates, "test")
    layout, labels, rows, _ = routing_layout(names, gates, "test")
    assert image.shape == (image.shape[0], layout.width, 3)
    peak = rows[:, 1:].max()
    for r in range(len(labels)):  # every block's row holds its own mean gates, in the ramp's colours
        for c in range(1, rows.shape[1]):
            x, y = layout.cell_center(r, c)
            np.testing.assert_allclose(image[y, x], ramp(rows[r, c] / peak).astype(np.uint8), atol=1)
        _, y0, _, y1 = layout.cell_box(r, 0)
        assert ink_height(image, (layout.margin, y0, layout.margin + layout.label_width, y1)) >= 10
    return image, layout


def test_full_flux_chart_has_one_readable_row_per_block():
    names = attention_projection_modules(FLUX)
    gates = random_gates(len(names), 16)
    labels, rows = block_rows(names, gates)
    assert labels == [f"double {i}" for i in range(19)] + [f"single {i}" for i in range(38)]
    double_0 = [i for i, n in enumerate(names) if n.startswith("transformer_blocks.0.")]
    np.testing.assert_allclose(rows[0], gates[double_0].mean(axis=0))
    image, layout = check_chart(names, gates)
    assert layout.rows == 57 and layout.row_height >= 18
    assert 57 * 18 < image.shape[0] < 1500 and image.shape[1] < 900


@pytest.mark.parametrize("experts", [1, 2, 6])
def test_tiny_charts_stay_readable(experts):
    names = ["transformer_blocks.0.attn.to_q", "single_transformer_blocks.0.attn.to_q", "proj_out"]
    image, layout = check_chart(names, random_gates(3, experts, seed=experts))
    assert layout.rows == 3 and image.shape[1] >= 560


def test_fingerprint_names_each_streams_heaviest_experts():
    names = ["transformer_blocks.0.attn.to_q", "transformer_blocks.1.attn.to_q", "single_transformer_blocks.0.attn.to_q"]
    gates = np.array([[1.0, 0.0, 0.2, 0.0, 0.8], [1.0, 0.0, 0.0, 0.3, 0.7], [0.5, 0.9, 0.1, 0.0, 0.0]], np.float32)
    line = style_fingerprint(names, gates, top=2)
    assert line == "style fingerprint | double: #3 0.75 #2 0.15 | single: #0 0.90 #1 0.10 | shared 0.83"
    assert "\n" not in line

