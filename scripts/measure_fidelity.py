"""The figures docs/DESIGN.md quotes for the inference-fidelity decisions (CPU, about a minute).

    python scripts/measure_fidelity.py [--flux FILE]

--flux: a BFL Flux file for the text-length measurement (default: the FLUX.1-width 1+1-block
random-weight file the cross-stack parity test caches; the measurement is skipped when absent).
The cross-stack parity figures come from the test itself:
    bash scripts/run_tests.sh tests/integration/test_cross_stack_parity.py -s -q
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from styleexpert_core import MoEConfig, fold_layer, moe_delta, route_latent  # noqa: E402
from styleexpert_core.moe_lora import ExpertTensors  # noqa: E402
from styleexpert_core.routing import Routing  # noqa: E402

DEFAULT_FLUX = Path.home() / ".cache/styleexpert/test-models/v1/flux_dev_width_d1s1_bf16_seed0.safetensors"


def release_router(seed: int) -> torch.Tensor:
    """16 x 3072, nn.Linear's init, stored in bf16 as the release is."""
    gate = torch.empty(16, 3072)
    torch.nn.init.kaiming_uniform_(gate, a=5 ** 0.5, generator=torch.Generator().manual_seed(seed))
    return gate.bfloat16()


def routing_precision(n: int = 10_000) -> None:
    flips, ties, used = [], [], []
    for seed in range(5):
        gate = release_router(seed)
        latents = torch.randn(n, 3072, generator=torch.Generator().manual_seed(100 + seed))
        fp32 = route_latent(gate, latents, MoEConfig(routing_precision="fp32")).experts
        bf16 = route_latent(gate, latents, MoEConfig(routing_precision="bf16")).experts
        flips.append((fp32 != bf16).any(dim=1).float().mean().item())
        used.append((fp32[:, 0] != bf16[:, 0]).float().mean().item())  # official: only e1 carries weight
        top3 = (latents.bfloat16() @ gate.t()).float().topk(3).values
        ties.append((top3.diff(dim=-1) == 0).any(dim=1).float().mean().item())
    print(f"routing precision, {n} random latents x 5 release-size routers: ordered top-2 differs fp32 vs bf16 "
          f"for {100 * min(flips):.2f}..{100 * max(flips):.2f}% (mean {100 * sum(flips) / 5:.2f}%); the expert the "
          f"official alignment uses (e1) differs for {100 * sum(used) / 5:.2f}%; bf16 logit ties in the top 3: "
          f"{100 * sum(ties) / 5:.2f}%")


def random_experts(config: MoEConfig, d_in: int, d_out: int, seed: int) -> ExpertTensors:
    g = torch.Generator().manual_seed(seed)
    e, r = config.num_experts, config.rank
    return ExpertTensors(torch.randn(e, r, d_in, generator=g) / r, torch.randn(e, d_out, r, generator=g) * 0.1,
                         torch.randn(1, r, d_in, generator=g) / r, torch.randn(1, d_out, r, generator=g) * 0.1,
                         torch.randn(e, config.cond_dim, generator=g))


def top_k_all() -> None:
    config = MoEConfig(top_k=16, routing_precision="fp32")
    t = random_experts(config, 256, 256, 0)
    x, latent = torch.randn(4, 32, 256), torch.randn(4, 3072)
    release = moe_delta(x, t, route_latent(t.gate, latent, config))  # index order, as the release runs it
    logits = latent @ t.gate.t()
    order = logits.argsort(dim=-1, descending=True)
    scores = torch.softmax(logits.gather(1, order), dim=-1) * config.scale
    ranked = Routing(order, torch.cat([scores[:, 1:], torch.zeros(4, 1)], 1), scores[:, 0], zero_last=True)
    diff = ((moe_delta(x, t, ranked) - release).norm() / release.norm()).item()
    print(f"top_k == E (16 experts, rank 8, official alignment): index order vs score order, relative "
          f"difference of the delta {diff:.2f}")


def zero_slot() -> None:
    config = MoEConfig(routing_precision="fp32")
    t = random_experts(config, 3072, 3072, 1)
    routing = route_latent(t.gate, torch.randn(1, 3072), config)
    up, down = fold_layer(t, routing)
    old = fold_layer(t, Routing(routing.experts, routing.expert_weights, routing.shared_weight))
    print(f"official fold at top_k 2, rank 8: folded rank {old[0].shape[1]} -> {up.shape[1]} "
          f"({int((old[0] == 0).all(dim=0).sum())} always-zero columns left out); up @ down bit-identical: "
          f"{torch.equal(up @ down, old[0] @ old[1])}")


def text_length(flux: Path) -> None:
    if not flux.is_file():
        print(f"text length: skipped ({flux} not found; run the cross-stack parity test once to write it)")
        return
    from training.stage2.flow_matching import KontextBatch, kontext_velocity
    from training.stage2.flux import BUNDLED_CONFIG_DIR, load_transformer, pack_latents

    config = json.loads((BUNDLED_CONFIG_DIR / "config.json").read_text()) | {"num_layers": 1, "num_single_layers": 1}
    with tempfile.TemporaryDirectory() as config_dir:
        (Path(config_dir) / "config.json").write_text(json.dumps(config))
        model = load_transformer(str(flux), dtype=torch.float32, config_dir=config_dir).eval()
    g = torch.Generator().manual_seed(0)
    # T5-like text: 20 prompt tokens and EOS, then padding whose encodings are nearly alike.
    prompt = torch.randn(1, 21, 4096, generator=g)
    pad = torch.randn(1, 1, 4096, generator=g) + 0.1 * torch.randn(1, 235, 4096, generator=g)
    text = torch.cat([prompt, pad], dim=1)
    x, content = torch.randn(1, 16, 32, 32, generator=g), torch.randn(1, 16, 32, 32, generator=g)
    out = {}
    for length in (128, 256):
        batch = KontextBatch(target=x, content=content, text_seq=text[:, :length],
                             pooled=torch.randn(1, 768, generator=torch.Generator().manual_seed(1)),
                             style_latent=torch.zeros(1, 1))
        with torch.no_grad():
            out[length] = kontext_velocity(model, pack_latents(x), batch, torch.tensor([0.7]), guidance=3.5)
    diff = ((out[256] - out[128]).norm() / out[128].norm()).item()
    print(f"text length (FLUX.1-width 1+1-block random Flux, 256 target tokens): 256 vs 128 text tokens, "
          f"relative difference of the velocity {diff:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flux", type=Path, default=DEFAULT_FLUX)
    args = parser.parse_args()
    torch.manual_seed(0)
    routing_precision()
    top_k_all()
    zero_slot()
    text_length(args.flux)


if __name__ == "__main__":
    main()
