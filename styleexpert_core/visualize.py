"""Routing inspection: which experts each layer picks for a style, as a table and a heatmap."""

from __future__ import annotations

from collections import Counter

import numpy as np
import torch

from .config import MoEConfig
from .drawing import ramp
from .moe_lora import ExpertTensors
from .style import Strengths, route_style


def _block_order(name: str) -> tuple:
    parts = name.split(".")
    group = 0 if parts[0] == "transformer_blocks" else 1 if parts[0] == "single_transformer_blocks" else 2
    index = int(parts[1]) if group < 2 else 0
    return group, index, name


def routing_table(layers: dict[str, ExpertTensors], config: MoEConfig,
                  latent: torch.Tensor) -> tuple[list[str], np.ndarray]:
    """Layer names in block order and their gates [layers, 1 + experts] for one checked style latent
    [1, cond_dim] (see check_style): column 0 is the shared expert."""
    names = sorted(layers, key=_block_order)
    rows = []
    for name in names:
        routing = route_style(name, layers[name].gate, latent, config, Strengths())
        row = np.zeros(1 + config.num_experts, dtype=np.float32)
        row[0] = routing.shared_weight[0].item()
        row[1:] = routing.dense_gates(config.num_experts)[0].float().numpy()
        rows.append(row)
    return names, np.stack(rows)


def routing_summary(names: list[str], gates: np.ndarray, top: int = 6) -> str:
    """Plain-text report: the most used experts and each block's picks."""
    usage = Counter()
    for row in gates:
        for e in np.flatnonzero(row[1:] > 0):
            usage[int(e)] += 1
    lines = [f"{len(names)} layers; most used experts: " +
             ", ".join(f"#{e} ({n} layers)" for e, n in usage.most_common(top))]
    for name, row in zip(names, gates):
        picks = sorted(((w, e) for e, w in enumerate(row[1:]) if w > 0), reverse=True)
        lines.append(f"{name}: shared {row[0]:.2f}, " + ", ".join(f"#{e} {w:.2f}" for w, e in picks))
    return "\n".join(lines)


def heatmap(gates: np.ndarray, cell: int = 12, max_height: int = 1024) -> np.ndarray:
    """Unlabelled RGB uint8 image: one row per layer, one column per expert (shared first), brighter =
    heavier (the training demo's side-by-side figure; the nodes draw routing_chart)."""
    rows, cols = gates.shape
    height = max(1, min(cell, max_height // max(rows, 1)))
    peak = float(gates.max()) or 1.0
    rgb = ramp(gates / peak)
    rgb[:, 0] = rgb[:, 0] * 0.6 + np.array([120, 40, 40]) * 0.4  # tint the shared column
    img = np.repeat(np.repeat(rgb.astype(np.uint8), height, axis=0), cell, axis=1)
    img[:, cell - 1::cell] = 0  # thin separators between experts
    return img
