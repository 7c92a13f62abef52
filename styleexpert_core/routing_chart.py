"""The labelled routing chart: one row per Flux block (its layers' gates averaged), one column per
expert, a colour legend and a one-line style fingerprint.

FLUX.1 has 57 blocks and several patched layers in each; a row per layer would be ~300 rows of
a few pixels, so the chart aggregates each block's layers into one readable row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from .drawing import (ACCENT, BACKGROUND, MUTED, TEXT, TEXT_PX, TITLE_PX, draw_lines, font, legend_bar, line_height,
                      ramp, text_width, to_array, wrap)
from .keys import block_kind

STREAMS = ("double", "single")


def block_of(name: str) -> str:
    """'double 3' / 'single 12' for a block layer; the layer's own name for the global ones."""
    kind = block_kind(name)
    return f"{kind} {name.split('.')[1]}" if kind else name


def block_rows(names: list[str], gates: np.ndarray) -> tuple[list[str], np.ndarray]:
    """(block labels in first-seen order, mean gates per block [blocks, 1 + experts]) of a routing table."""
    labels: list[str] = []
    members: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        block = block_of(name)
        if block not in members:
            labels.append(block)
            members[block] = []
        members[block].append(i)
    return labels, np.stack([gates[members[b]].mean(axis=0) for b in labels])


def style_fingerprint(names: list[str], gates: np.ndarray, top: int = 3) -> str:
    """One line: per stream, the experts carrying the most routed weight (mean over its layers), and
    the shared expert's mean weight."""
    parts = []
    for stream in STREAMS:
        rows = [i for i, n in enumerate(names) if block_kind(n) == stream]
        if not rows:
            continue
        mean = gates[rows, 1:].mean(axis=0)
        best = [e for e in np.argsort(-mean, kind="stable")[:top] if mean[e] > 0]
        parts.append(f"{stream}: " + (" ".join(f"#{e} {mean[e]:.2f}" for e in best) or "no routed expert"))
    parts.append(f"shared {gates[:, 0].mean():.2f}")
    return "style fingerprint | " + " | ".join(parts)


@dataclass(frozen=True)
class ChartLayout:
    """Where the chart puts things: rows of blocks, columns of [shared, expert 0, ...]."""

    rows: int
    columns: int
    header: int  # height of the title and fingerprint text
    label_width: int
    cell_width: int = 30
    shared_width: int = 50  # the shared expert's column holds its weight as a number
    row_height: int = 20
    margin: int = 12

    @property
    def grid_top(self) -> int:
        return self.header + line_height() + 4  # expert ids sit above the grid

    @property
    def width(self) -> int:
        return max(self.margin * 2 + self.label_width + self.shared_width + (self.columns - 1) * self.cell_width, 560)

    def cell_box(self, row: int, column: int) -> tuple[int, int, int, int]:
        """Column 0 is the shared expert, column 1 + e routed expert e."""
        x = self.margin + self.label_width + (column > 0) * (self.shared_width + (column - 1) * self.cell_width)
        y = self.grid_top + row * self.row_height
        width = self.shared_width if column == 0 else self.cell_width
        return x, y, x + width - 1, y + self.row_height - 1

    def cell_center(self, row: int, column: int) -> tuple[int, int]:
        x0, y0, x1, y1 = self.cell_box(row, column)
        return (x0 + x1) // 2, (y0 + y1) // 2


def _header_lines(title: str, fingerprint: str, width: int) -> list[tuple[str, int, tuple]]:
    lines = [(line, TITLE_PX, TEXT) for line in wrap(title, width, TITLE_PX)]
    return lines + [(line, TEXT_PX, ACCENT) for line in wrap(fingerprint, width)]


def routing_layout(names: list[str], gates: np.ndarray, title: str = "StyleExpert routing"):
    """(ChartLayout, block labels, block rows, header lines) of routing_chart for a routing table."""
    labels, rows = block_rows(names, gates)
    label_width = max(text_width(label) for label in labels) + 10
    probe = ChartLayout(len(labels), rows.shape[1], 0, label_width)
    header = _header_lines(title, style_fingerprint(names, gates), probe.width - 2 * probe.margin)
    layout = ChartLayout(len(labels), rows.shape[1], probe.margin + sum(line_height(s) for _, s, _ in header),
                         label_width)
    return layout, labels, rows, header


def routing_chart(names: list[str], gates: np.ndarray, title: str = "StyleExpert routing") -> np.ndarray:
    """RGB uint8 chart of a routing table (routing_table's names and gates)."""
    layout, labels, rows, header = routing_layout(names, gates, title)
    legend_top = layout.grid_top + layout.rows * layout.row_height + 10
    canvas = Image.new("RGB", (layout.width, legend_top + 4 * line_height() + 24), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    y = layout.margin
    for line, size, colour in header:
        y = draw_lines(draw, (layout.margin, y), [line], size, colour)
    _draw_grid(canvas, draw, layout, labels, rows)
    legend_bar(canvas, (layout.margin, legend_top), min(360, layout.width - 2 * layout.margin), "0",
               f"{routed_peak(rows):.2f}", "routed expert n's gate weight, mean over a block's layers; S: the "
                                           "shared expert's weight (always on)")
    return to_array(canvas)


def _draw_grid(canvas: Image.Image, draw: ImageDraw.ImageDraw, layout: ChartLayout, labels: list[str],
               rows: np.ndarray) -> None:
    colours = ramp(rows / routed_peak(rows)).astype(np.uint8)
    for column in range(layout.columns):
        x0, _, x1, _ = layout.cell_box(0, column)
        name = "S" if column == 0 else str(column - 1)
        draw.text(((x0 + x1 - text_width(name)) // 2, layout.header), name, font=font(), fill=MUTED)
    for row, label in enumerate(labels):
        _, y0, x1, _ = layout.cell_box(row, 0)
        stream_start = row > 0 and label.split(" ")[0] != labels[row - 1].split(" ")[0]
        if stream_start:  # a line between the double-stream and single-stream blocks
            draw.line([(layout.margin, y0), (layout.width - layout.margin, y0)], fill=MUTED)
        draw.text((layout.margin, y0 + 1), label, font=font(), fill=TEXT)
        shared = f"{rows[row, 0]:.2f}"
        draw.text((x1 - 4 - text_width(shared), y0 + 1), shared, font=font(), fill=MUTED)
        for column in range(1, layout.columns):
            x0, y0, x1, y1 = layout.cell_box(row, column)
            draw.rectangle([x0, y0 + 1, x1 - 1, y1 - 1], fill=tuple(int(c) for c in colours[row, column]))


def routed_peak(rows: np.ndarray) -> float:
    """The top of the colour scale: the heaviest routed weight (the shared column is written as numbers)."""
    return float(rows[:, 1:].max()) or 1.0
