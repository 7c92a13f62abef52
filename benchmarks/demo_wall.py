"""Wall time of the main job, repeated: what a new user waits for after the environment is built.

    python -m benchmarks.demo_wall                 # 5 full demos one after another (~25 min on 2 cores)
    python -m benchmarks.demo_wall --repeats 1 -- --stage2_steps=100   # arguments after -- go to the demo

Each run is a fresh ``python -m training.demo`` process (imports included), timed from start to
exit; the report gives the median with min..max, each run's own ``wall_s``, the peak RSS, and the
machine's load before each run (the 5-minute target is for an otherwise idle machine). The demo is
deterministic, so every run must print the same figures; the report says whether they did.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

from .timing import machine_line

FIGURES = ("stage1_map_trained", "stage1_map_best_baseline", "stage2_loss_correct_style",
           "stylise_target_mse_base", "stylise_target_mse_experts", "stylise_target_mse_shuffled",
           "stylise_style_top1_base", "stylise_style_top1_experts", "stylise_style_top1_shuffled")


def run_once(out: str, demo_args: list[str]) -> tuple[float, dict]:
    load = os.getloadavg()[0]
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "training.demo", "--out", out, *demo_args],
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, check=True)
    seconds = time.monotonic() - start
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return seconds, {"load_before": round(load, 2), "wall_s": result["wall_s"],
                     **{k: result[k] for k in FIGURES}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("demo_args", nargs="*", help="after --: passed to python -m training.demo")
    args = parser.parse_args()
    report = {"machine": machine_line("cpu"), "runs": []}
    seconds = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            took, run = run_once(os.path.join(tmp, f"run{i}"), args.demo_args)
            seconds.append(took)
            report["runs"].append({"seconds": round(took, 1), **run})
            print(f"run {i + 1}/{args.repeats}: {took:.1f} s", file=sys.stderr)
    report["wall_median_s"] = round(statistics.median(seconds), 1)
    report["wall_range_s"] = [round(min(seconds), 1), round(max(seconds), 1)]
    report["peak_rss_gb"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1e6, 2)
    report["same_figures_every_run"] = all(
        {k: r[k] for k in FIGURES} == {k: report["runs"][0][k] for k in FIGURES} for r in report["runs"])
    print(json.dumps(report))


if __name__ == "__main__":
    main()
