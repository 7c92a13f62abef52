"""How many DataLoader worker processes read ahead for the training loops."""

from __future__ import annotations

import os

import torch


def worker_count(requested: int, device: torch.device) -> int:
    """``requested``, or for -1 (auto) up to 4 workers when training on a GPU and 0 on the CPU, whose
    cores are busy computing the step (and where the demo and tests run)."""
    if requested >= 0:
        return requested
    return min(4, max(1, (os.cpu_count() or 2) - 1)) if device.type == "cuda" else 0
