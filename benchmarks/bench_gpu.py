"""Full-size FLUX.1 Kontext on one GPU: the node benchmark (bench_nodes) at real width, one table.

    python -m benchmarks.bench_gpu            # CUDA, bf16, hidden 3072, 19+38 blocks, 1024x1024 + one reference
    python -m benchmarks.bench_gpu --tiny     # a seconds-long CPU smoke run of the same code

Random weights (no model download): unpatched, merge, dynamic and a plain rank-24 LoRA through
the stock LoraLoaderModelOnly; apply, ComfyUI's weight patching (load) and restore, step times of
a comfy.sample loop, weight backups, peak GPU memory, and kernel launches and host syncs of one
model call from torch.profiler. Meant to finish in under 5 minutes on one H100/H200.
"""

from __future__ import annotations

import sys

from .bench_nodes import main as bench_nodes_main

FULL = dict(hidden=3072, depth=19, single=38, image=1024, text_tokens=512, steps=4, rounds=5, device="cuda",
            dtype="bf16")
TINY = dict(hidden=64, depth=1, single=1, image=64, text_tokens=8, steps=2, rounds=1, calls=2, device="cpu",
            dtype="fp32")


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    tiny = "--tiny" in argv
    if tiny:
        argv.remove("--tiny")
    bench_nodes_main(TINY if tiny else FULL, argv)


if __name__ == "__main__":
    main()
