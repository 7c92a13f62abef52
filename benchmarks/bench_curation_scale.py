"""Time and peak memory of dedup and balancing on synthetic embeddings at 1e5 and 1e6 items.

    python -m benchmarks.bench_curation_scale [--sizes 100000 1000000] [--dim 64] [--threads 0]

Data: N float32 vectors of --dim dimensions around N/100 concept centres whose sizes follow a
power law, plus 5 % planted near-copies (so dedup has work to do). Each (N, step) runs in its own
process so ``ru_maxrss`` (the process's peak resident memory, read with resource.getrusage) is that
step's own peak; "before step" is the peak right before the step starts: the interpreter, its
imports (training.data pulls in torch, a few hundred MiB) and the data.
  * dedup:   semantic_dedup, N/1000 clusters, threshold 0.95 (k-means, then blocked in-cluster search)
  * balance: hierarchical_kmeans, levels N/1000 and N/10000, 3 resampling steps per level,
             then balanced_sample of N/10
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

from .timing import table


def synthetic_embeddings(n: int, dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n_concepts = max(n // 100, 2)
    centres = rng.standard_normal((n_concepts, dim), dtype=np.float32)
    weights = 1.0 / np.arange(1, n_concepts + 1) ** 1.1
    originals = n - n // 20
    concept = rng.choice(n_concepts, size=originals, p=weights / weights.sum())
    x = np.empty((n, dim), dtype=np.float32)
    for start in range(0, originals, 1 << 16):  # chunks keep the float32 result the only big array
        stop = min(start + (1 << 16), originals)
        x[start:stop] = centres[concept[start:stop]] + 0.5 * rng.standard_normal((stop - start, dim), dtype=np.float32)
    copies = rng.choice(originals, size=n - originals, replace=False)
    x[originals:] = x[copies] + 0.01 * rng.standard_normal((n - originals, dim), dtype=np.float32)
    return x


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def run_one(n: int, dim: int, step: str) -> dict[str, float]:
    from training.curate.balance import HierarchyConfig, balanced_sample, hierarchical_kmeans
    from training.curate.dedup import DedupConfig, semantic_dedup

    x = synthetic_embeddings(n, dim)
    data_mib = _peak_mib()
    start = time.perf_counter()
    if step == "dedup":
        result = semantic_dedup([str(i) for i in range(n)], x, DedupConfig(n_clusters=max(n // 1000, 1)))
        detail = {"dropped": len(result.dropped)}
    else:
        tree = hierarchical_kmeans(x, HierarchyConfig(level_sizes=(n // 1000, n // 10000), resample_steps=3))
        detail = {"kept": int(balanced_sample(tree, n // 10).size)}
    return {"seconds": time.perf_counter() - start, "peak_mib": _peak_mib(), "data_mib": data_mib, **detail}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--threads", type=int, default=0,
                        help="faiss OpenMP threads (0: faiss' default, all cores; on a busy shared box 1 is faster)")
    parser.add_argument("--one", nargs=2, metavar=("N", "STEP"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    import faiss

    if args.threads:
        faiss.omp_set_num_threads(args.threads)
    if args.one:
        print(json.dumps(run_one(int(args.one[0]), args.dim, args.one[1])))
        return
    rows = []
    for n in args.sizes:
        for step in ("dedup", "balance"):
            cmd = [sys.executable, "-m", "benchmarks.bench_curation_scale", "--dim", str(args.dim),
                   "--threads", str(args.threads), "--one", str(n), step]
            r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
            detail = f"{r['dropped']} dropped" if step == "dedup" else f"{r['kept']} kept"
            rows.append([f"{n:,}", step, f"{r['seconds']:.1f}", f"{r['peak_mib']:.0f}", f"{r['data_mib']:.0f}", detail])
            print(rows[-1], file=sys.stderr, flush=True)
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"dim {args.dim}, float32, faiss {faiss.__version__} ({faiss.omp_get_max_threads()} threads), "
          f"{os.cpu_count()} cores, load average {load} (1/5/15 min)")
    print(table(["N", "step", "seconds", "peak RSS MiB", "before step MiB", "result"], rows))


if __name__ == "__main__":
    main()
