"""Side-by-side timing: variants interleaved in rotated order, median with min..max.

Other load on a shared machine then hits every variant alike, and the spread shows how much it
moved. Every table starts with the date, the machine's load and the torch build it ran on.
"""

from __future__ import annotations

import os
import statistics
import time
from datetime import datetime, timezone
from typing import Callable

import torch


def interleaved(variants: dict[str, Callable[[], object]], repeats: int, sync: Callable[[], None] = lambda: None,
                min_seconds: float = 0.0) -> dict[str, list[float]]:
    """Seconds per call of each variant over `repeats` rounds; round i starts at variant i (mod n).
    A variant faster than `min_seconds` is timed over a block of calls that long (its warm-up call
    sets the block size), so timer and scheduler noise do not swamp it."""
    names = list(variants)
    calls = {}
    for name in names:  # warm-up
        start = time.perf_counter()
        variants[name]()
        sync()
        calls[name] = max(1, round(min_seconds / max(time.perf_counter() - start, 1e-6)))
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(repeats):
        for name in names[i % len(names):] + names[:i % len(names)]:
            start = time.perf_counter()
            for _ in range(calls[name]):
                variants[name]()
            sync()
            times[name].append((time.perf_counter() - start) / calls[name])
    return times


def spread(seconds: list[float], unit: float = 1e3) -> str:
    """'median (min..max)', in milliseconds unless told otherwise."""
    return f"{statistics.median(seconds) * unit:.1f} ({min(seconds) * unit:.1f}..{max(seconds) * unit:.1f})"


def ratio(seconds: list[float], base: list[float]) -> str:
    """Ratio of the medians, with the range of the per-round ratios (each round ran side by side)."""
    per_round = [s / b for s, b in zip(seconds, base)]
    return f"x{statistics.median(seconds) / statistics.median(base):.2f} ({min(per_round):.2f}..{max(per_round):.2f})"


def machine_line(device: str) -> str:
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    where = torch.cuda.get_device_name() if device == "cuda" else f"CPU, {os.cpu_count()} cores"
    return (f"{when}, {where}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
            f"load average {load} (1/5/15 min)")


def table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table, so what a script prints can go into the docs as it is."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
