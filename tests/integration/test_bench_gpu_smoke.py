"""`python -m benchmarks.bench_gpu --tiny`, the CPU smoke mode of the GPU benchmark, runs the full
code path on real ComfyUI (every variant, patching and restore, the profiler) and prints its table."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.comfyui
REPO_ROOT = Path(__file__).resolve().parents[2]


def test_tiny_run_prints_one_row_per_variant(comfyui_checkout):
    env = {**os.environ, "COMFYUI_ROOT": str(comfyui_checkout.root)}
    done = subprocess.run([sys.executable, "-m", "benchmarks.bench_gpu", "--tiny"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    header = lines.index(next(line for line in lines if line.startswith("| variant | apply |")))
    body = lines[header + 2:header + 6]
    rows = {line.split("|")[1].strip(): line for line in body}
    assert list(rows) == ["unpatched", "merge", "dynamic", "lora-24"]
    assert "model calls interleaved call by call" in done.stdout  # the --tiny run includes that table
    assert "cpu fp32" in done.stdout and "load average" in done.stdout
    cells = {name: [c.strip() for c in row.split("|")[2:-1]] for name, row in rows.items()}
    assert cells["unpatched"][5].startswith("x1.00")  # step / unpatched
    assert float(cells["merge"][6]) > 0 and float(cells["lora-24"][6]) > 0  # ComfyUI backed up the patched weights
    assert float(cells["dynamic"][6]) == 0  # dynamic mode leaves the weights alone
