"""Core benchmark: dynamic MoE-LoRA layer vs the official einsum, and fold time for full Flux.

    python -m benchmarks.bench_core [--tokens 2048] [--hidden 3072] [--batch 2] [--device cpu|cuda]

Both formulations run side by side in one process on the same inputs; the script prints
times and their ratio. On a 2-core CPU the defaults take about a minute; on a GPU pass
--device cuda --dtype bf16 --tokens 8320 for the 1024x1024 Kontext sequence length.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from styleexpert_core import ExpertTensors, FluxShape, MoEConfig, fold_layers, moe_delta, route_latent
from styleexpert_core.keys import attention_projection_modules, block_linear_features, diffusers_to_bfl


def official_einsum(x, t: ExpertTensors, latent, config: MoEConfig):
    """The released code's formulation: a [B, k+1, T, out] stack summed with padded scores."""
    top, idx = torch.topk(latent @ t.gate.t(), config.top_k, dim=-1)
    scores = F.pad(torch.softmax(top, -1) * config.scale, (0, 1))
    b = x.shape[0]
    a = torch.cat([t.shared_A.expand(b, -1, -1)[:, None], t.A[idx]], 1)
    bm = torch.cat([t.shared_B.expand(b, -1, -1)[:, None], t.B[idx]], 1)
    h = torch.einsum("btd,bkrd->bktr", x, a)
    return torch.einsum("bkto,bk->bto", torch.einsum("bktr,bkor->bkto", h, bm), scores)


def timed(fn, repeats: int, device: str) -> float:
    fn()  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def random_layer(config: MoEConfig, d_in: int, d_out: int, device, dtype, grad=False) -> ExpertTensors:
    e, r = config.num_experts, config.rank
    def rnd(*s):
        return (torch.randn(*s, device=device, dtype=dtype) * 0.05).requires_grad_(grad)
    return ExpertTensors(rnd(e, r, d_in), rnd(e, d_out, r), rnd(1, r, d_in), rnd(1, d_out, r), rnd(e, config.cond_dim))


def bench_layer(args, dtype) -> None:
    config = MoEConfig()
    t = random_layer(config, args.hidden, args.hidden, args.device, dtype, grad=True)
    x = torch.randn(args.batch, args.tokens, args.hidden, device=args.device, dtype=dtype, requires_grad=True)
    latent = torch.randn(args.batch, config.cond_dim, device=args.device, dtype=dtype)

    def ours():
        moe_delta(x, t, route_latent(t.gate, latent, config)).float().square().mean().backward()

    def official():
        official_einsum(x, t, latent, config).float().square().mean().backward()

    with torch.no_grad():
        diff = (moe_delta(x, t, route_latent(t.gate, latent, config)) - official_einsum(x, t, latent, config))
        rel = (diff.float().norm() / official_einsum(x, t, latent, config).float().norm()).item()
    t_ours, t_off = timed(ours, args.repeats, args.device), timed(official, args.repeats, args.device)
    print(f"layer fwd+bwd  B={args.batch} T={args.tokens} hidden={args.hidden} E=16 r=8 top_k=2 {args.dtype}:")
    print(f"  ours (batched matmuls) {t_ours * 1e3:9.1f} ms   official einsum {t_off * 1e3:9.1f} ms   "
          f"speed-up x{t_off / t_ours:.2f}   rel. diff {rel:.1e}")


def bench_fold(args, dtype, name: str, modules: list[str]) -> None:
    config = MoEConfig()
    layers = {m: random_layer(config, *block_linear_features(m, FluxShape.FLUX_DEV), args.device, dtype)
              for m in modules}
    latent = torch.randn(1, config.cond_dim, device=args.device, dtype=dtype)
    seconds = timed(lambda: fold_layers(layers, config, latent), 3, args.device)
    print(f"fold {name}: {len(layers)} layers (19 double + 38 single blocks) -> rank {config.folded_rank} "
          f"deltas in {seconds * 1e3:.0f} ms")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokens", type=int, default=2048)
    p.add_argument("--hidden", type=int, default=3072)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32")
    args = p.parse_args()
    dtype = torch.float32 if args.dtype == "fp32" else torch.bfloat16
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, device {args.device}, threads {torch.get_num_threads()}")
    bench_layer(args, dtype)
    shape = FluxShape.FLUX_DEV
    bench_fold(args, dtype, "attention projections", attention_projection_modules(shape))
    bench_fold(args, dtype, "every block linear", [m for m in diffusers_to_bfl(shape) if "blocks." in m])


if __name__ == "__main__":
    main()
