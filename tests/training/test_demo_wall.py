"""The demo wall-time benchmark runs the real demo as a fresh process and reports what it measured."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY = ["--train_styles=24", "--styles_per_batch=8", "--heldout_styles=16", "--images_per_style=4", "--stage1_steps=10",
        "--stage2_styles=8", "--stage2_train_per_style=2", "--stage2_val_per_style=2", "--base_steps=4",
        "--stage2_steps=4", "--stylise_styles=2", "--stylise_per_style=2", "--sample_steps=2"]


@pytest.mark.slow
def test_two_tiny_runs_report_median_range_and_identical_figures():
    done = subprocess.run([sys.executable, "-m", "benchmarks.demo_wall", "--repeats", "2", "--", *TINY],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    seconds = [run["seconds"] for run in report["runs"]]
    assert len(seconds) == 2 and report["wall_range_s"] == [min(seconds), max(seconds)]
    assert min(seconds) <= report["wall_median_s"] <= max(seconds)
    assert all(run["seconds"] >= run["wall_s"] > 0 for run in report["runs"])  # the process includes imports
    assert report["same_figures_every_run"] is True  # the demo is deterministic
    assert report["peak_rss_gb"] > 0.1 and "load average" in report["machine"]
