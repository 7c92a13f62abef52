"""Per-layer inference cost of the adapters at real Flux widths, for every slice shape.

    python -m benchmarks.bench_layers [--tokens 1024] [--styles 1] [--repeats 5] [--device cpu|cuda] [--dtype fp32|bf16]

For one patched module of each kind (a 3072->3072 projection, a double block's fused q|k|v
3072->9216, a single block's linear1 3072->21504 = q|k|v|mlp) it times only what a forward hook
adds to the module's output, side by side on the same input and output:
  * lora-24: a plain rank-24 LoRA hook at the same places, the yardstick (a StyleExpert delta for
    one style is rank (k+1)r = 24), written plainly (per slice: out += x @ down^T @ up^T) and
    written in place (lora-24 addmm: per slice out.addmm_(x @ down^T, up^T));
  * dynamic: this pack's dynamic mode (nodes/dynamic_hooks.py): each style folded once, one
    down-projection for all slices of the module, in-place addmm per slice;
  * per-hook routing: the previous dynamic mode (route + gather + moe_delta in every hook).
Variants run interleaved in rotated order; each cell is the median (min..max) over --repeats.
`--styles 2` runs a batch of two samples with different styles (the batched-matmul path).
"""

from __future__ import annotations

import argparse
from types import SimpleNamespace

import torch

from .pack import pack_module
from .timing import interleaved, machine_line, ratio, spread, table

MODULES = {  # what a hook on one module adds: the diffusers layers that write into it
    "proj 3072->3072": ["transformer_blocks.0.attn.to_out.0"],
    "qkv 3072->9216": [f"transformer_blocks.0.attn.to_{p}" for p in "qkv"],
    "linear1 (qkv+mlp) 3072->21504": [f"single_transformer_blocks.0.attn.to_{p}" for p in "qkv"]
                           + ["single_transformer_blocks.0.proj_mlp"],
}


class Bank:
    """Stands in for ExpertBank: tensors(index) per layer."""

    def __init__(self, layers) -> None:
        self.layers = layers

    def tensors(self, index: int):
        return self.layers[index]


def random_experts(core, config, d_in: int, d_out: int, device, dtype):
    e, r = config.num_experts, config.rank
    def rnd(*shape, std):
        return (torch.randn(*shape) * std).to(device=device, dtype=dtype)
    return core.ExpertTensors(rnd(e, r, d_in, std=1 / r), rnd(e, d_out, r, std=0.01), rnd(1, r, d_in, std=1 / r),
                              rnd(1, d_out, r, std=0.01), rnd(e, config.cond_dim, std=1.0))


def module_variants(core, hooks, names: list[str], a, dtype) -> dict:
    """The three hook bodies for one module, each adding into its own copy of the output."""
    shape = core.FluxShape(3072, 19, 38)
    table_ = core.diffusers_to_bfl(shape)
    keys = pack_module("styleexpert_core.keys")
    config, strengths = core.MoEConfig(), core.Strengths()
    tensors = [random_experts(core, config, *keys.block_linear_features(n, shape), a.device, dtype) for n in names]
    layers = [SimpleNamespace(module=n, target=table_[n]) for n in names]
    groups = hooks.group_by_module(layers)
    latents = torch.randn(a.styles, config.cond_dim)
    folds = hooks.StyleFolds(Bank(tensors), groups, config, latents, strengths)
    styles = tuple(range(a.styles))
    rows = [slice(0, t.out_features) if layer.target.offset is None else
            slice(layer.target.offset, layer.target.offset + layer.target.length) for layer, t in zip(layers, tensors)]
    d_out = max(r.stop for r in rows)  # the module's width (fused slices end at its last row)
    x = torch.randn(a.styles, a.tokens, 3072, device=a.device, dtype=dtype)
    outs = {k: torch.zeros(a.styles, a.tokens, d_out, device=a.device, dtype=dtype) for k in ("lora", "addmm", "dyn", "old")}
    lora = [(torch.randn(24, 3072, device=a.device, dtype=dtype) / 24,
             torch.randn(r.stop - r.start, 24, device=a.device, dtype=dtype) * 0.01) for r in rows]

    def plain_lora():
        for (down, up), r in zip(lora, rows):
            outs["lora"][..., r] += x @ down.t() @ up.t()

    def lora_addmm():
        flat_x, flat_out = x.reshape(-1, 3072), outs["addmm"].view(-1, d_out)
        for (down, up), r in zip(lora, rows):
            flat_out[:, r].addmm_(flat_x @ down.t(), up.t())

    def dynamic():
        (delta,) = folds.for_batch(styles, x.device, x.dtype)
        delta.add_to(x, outs["dyn"])

    def per_hook_routing():
        for name, t, r in zip(names, tensors, rows):
            routing = core.route_style(name, t.gate, latents, config, strengths)  # latents live on the CPU
            outs["old"][..., r] += core.moe_delta(x, t, routing).to(x.dtype)

    return {"lora-24": plain_lora, "lora-24 addmm": lora_addmm, "dynamic": dynamic,
            "per-hook routing": per_hook_routing}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokens", type=int, default=1024, help="tokens per sample (Kontext 1024^2 + reference: 8704)")
    p.add_argument("--styles", type=int, default=1, help="samples in the batch, each with its own style")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 keeps torch's default)")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    dtype = torch.float32 if a.dtype == "fp32" else torch.bfloat16
    sync = torch.cuda.synchronize if a.device == "cuda" else (lambda: None)
    core, hooks = pack_module("styleexpert_core"), pack_module("nodes.dynamic_hooks")
    torch.manual_seed(0)
    rows = []
    with torch.inference_mode():
        for label, names in MODULES.items():
            times = interleaved(module_variants(core, hooks, names, a, dtype), a.repeats, sync, min_seconds=0.2)
            rows.append([label, *(spread(t) for t in times.values()), ratio(times["dynamic"], times["lora-24"]),
                         ratio(times["dynamic"], times["lora-24 addmm"]),
                         ratio(times["per-hook routing"], times["lora-24"])])
    print(f"bench_layers: {machine_line(a.device)}")
    print(f"adapter time per hooked module (ms, median (min..max) of {a.repeats}), {a.device} {a.dtype}, "
          f"batch {a.styles} x {a.tokens} tokens, {a.styles} style(s), 16 experts rank 8 top-2 + shared")
    print(table(["module", "lora-24", "lora-24 addmm", "dynamic", "per-hook routing (before)", "dynamic / lora-24",
                 "dynamic / lora-24 addmm", "before / lora-24"], rows))


if __name__ == "__main__":
    main()
