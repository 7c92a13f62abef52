"""The per-layer benchmark runs at real widths and prints one row per module kind."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_short_run_prints_every_module_kind():
    done = subprocess.run([sys.executable, "-m", "benchmarks.bench_layers", "--tokens", "8", "--repeats", "1",
                           "--styles", "2"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ") and "module" not in line]
    assert [r.split("|")[1].strip().split()[0] for r in rows] == ["proj", "qkv", "linear1"]
    assert all(cell.strip() for r in rows for cell in r.split("|")[1:-1])
