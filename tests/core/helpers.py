import torch

from styleexpert_core import ExpertTensors, MoEConfig
from styleexpert_core.formats import read_safetensors


def random_tensors(config: MoEConfig, in_features: int, out_features: int, seed: int = 0,
                   dtype=torch.float32) -> ExpertTensors:
    g = torch.Generator().manual_seed(seed)
    e, r, c = config.num_experts, config.rank, config.cond_dim
    def rnd(*shape):
        return torch.randn(*shape, generator=g, dtype=dtype)
    return ExpertTensors(A=rnd(e, r, in_features) / r, B=rnd(e, out_features, r) * 0.1,
                         shared_A=rnd(1, r, in_features) / r, shared_B=rnd(1, out_features, r) * 0.1,
                         gate=rnd(e, c))


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def read_baked_lora(path) -> dict[str, tuple[torch.Tensor, torch.Tensor, float]]:
    """module -> (up, down, alpha) of a baked LoRA (transformer.<module>.lora_A/lora_B/alpha)."""
    tensors, _ = read_safetensors(path)
    out = {}
    for key in tensors:
        if key.endswith(".lora_A.weight"):
            module = key[: -len(".lora_A.weight")]
            out[module.removeprefix("transformer.")] = (
                tensors[f"{module}.lora_B.weight"], tensors[key], float(tensors[f"{module}.alpha"]))
    return out
