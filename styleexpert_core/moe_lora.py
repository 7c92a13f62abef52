"""The routed MoE-LoRA layer: stacked expert tensors, two batched matmuls per forward.

For each sample the router picks k experts from the style latent; the layer adds
    delta(x) = w_sh * B_sh A_sh x + sum_i w_i * B_ei A_ei x
computed as x @ A_cat^T (scaled per rank block) @ B_cat^T over the (k+1)*r selected ranks.
This never materialises the official einsum's [B, k+1, T, out] temporaries, and because
the experts are stacked into single parameters every one of them receives a gradient
(zero where unselected), so DDP works with find_unused_parameters=False.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .config import MoEConfig
from .errors import InputError, ShapeMismatchError, StyleExpertError
from .routing import Routing, check_style_latent, route, router_logits

TENSOR_NAMES = ("A", "B", "shared_A", "shared_B", "gate")


@dataclass
class ExpertTensors:
    """The five tensors of one patched linear layer."""

    A: torch.Tensor  # [E, r, in]
    B: torch.Tensor  # [E, out, r]
    shared_A: torch.Tensor  # [1, r, in]
    shared_B: torch.Tensor  # [1, out, r]
    gate: torch.Tensor  # [E, cond_dim], router weight (no bias)

    @property
    def in_features(self) -> int:
        return self.A.shape[2]

    @property
    def out_features(self) -> int:
        return self.B.shape[1]

    def expected_shapes(self, config: MoEConfig) -> dict[str, tuple[int, ...]]:
        e, r, c = config.num_experts, config.rank, config.cond_dim
        i, o = self.in_features, self.out_features
        return {"A": (e, r, i), "B": (e, o, r), "shared_A": (1, r, i), "shared_B": (1, o, r), "gate": (e, c)}

    def check(self, config: MoEConfig, where: str) -> None:
        """Raise ShapeMismatchError naming the layer and tensor when a shape disagrees with config."""
        if self.A.ndim != 3:
            raise ShapeMismatchError(f"{where}: A must be [experts, rank, in], got {tuple(self.A.shape)}.")
        for name, shape in self.expected_shapes(config).items():
            got = tuple(getattr(self, name).shape)
            if got != shape:
                raise ShapeMismatchError(
                    f"{where}: tensor '{name}' has shape {got}, expected {shape} for "
                    f"{config.num_experts} experts, rank {config.rank}, cond_dim {config.cond_dim}."
                )

    def to(self, *args, **kwargs) -> "ExpertTensors":
        return ExpertTensors(*(getattr(self, n).to(*args, **kwargs) for n in TENSOR_NAMES))

    def as_dict(self) -> dict[str, torch.Tensor]:
        return {n: getattr(self, n) for n in TENSOR_NAMES}


def moe_delta(x: torch.Tensor, tensors: ExpertTensors, routing: Routing) -> torch.Tensor:
    """delta(x) for x [B, ..., in] with per-sample routing (batch of 1 broadcasts)."""
    batch = x.shape[0]
    if routing.batch_size not in (1, batch):
        raise ShapeMismatchError(
            f"{routing.batch_size} style latents for a batch of {batch}; give one latent, or one per sample."
        )
    rank = tensors.A.shape[1]
    rb = routing.batch_size
    experts = routing.experts.to(tensors.A.device)
    a_sel = tensors.A[experts]  # [rb, k, r, in]
    b_sel = tensors.B[experts]  # [rb, k, out, r]
    a_cat = torch.cat([tensors.shared_A[None].expand(rb, -1, -1, -1), a_sel], dim=1)
    b_cat = torch.cat([tensors.shared_B[None].expand(rb, -1, -1, -1), b_sel], dim=1)
    # Only the selected experts are cast to the activations' device and dtype (they may live
    # elsewhere, e.g. offloaded by ComfyUI or stored in a lower precision).
    a_cat = a_cat.flatten(1, 2).to(device=x.device, dtype=x.dtype)  # [rb, (k+1) r, in]
    b_cat = b_cat.permute(0, 2, 1, 3).flatten(2, 3).to(device=x.device, dtype=x.dtype)  # [rb, out, (k+1) r]
    w = routing.slot_weights().repeat_interleave(rank, dim=1).to(device=x.device, dtype=x.dtype)

    flat = x.reshape(batch, -1, x.shape[-1])
    if rb == 1 and batch > 1:
        # One style for the whole batch: fold the scale into A and use plain matmuls.
        h = flat @ (a_cat[0] * w[0, :, None]).t()
        out = h @ b_cat[0].t()
    else:
        h = torch.bmm(flat, a_cat.transpose(1, 2)) * w[:, None, :]
        out = torch.bmm(h, b_cat.transpose(1, 2))
    return out.reshape(*x.shape[:-1], out.shape[-1])


class MoELoRA(nn.Module):
    """Trainable experts + router for one linear layer (official initialisation: A ~ N(0, 1/r), B = 0)."""

    def __init__(self, in_features: int, out_features: int, config: MoEConfig,
                 *, device=None, dtype=None) -> None:
        super().__init__()
        self.config = config
        e, r = config.num_experts, config.rank
        kw = {"device": device, "dtype": dtype}
        self.A = nn.Parameter(torch.empty(e, r, in_features, **kw))
        self.B = nn.Parameter(torch.zeros(e, out_features, r, **kw))
        self.shared_A = nn.Parameter(torch.empty(1, r, in_features, **kw))
        self.shared_B = nn.Parameter(torch.zeros(1, out_features, r, **kw))
        self.gate = nn.Parameter(torch.empty(e, config.cond_dim, **kw))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        std = 1.0 / self.config.rank
        nn.init.normal_(self.A, std=std)
        nn.init.normal_(self.shared_A, std=std)
        nn.init.zeros_(self.B)
        nn.init.zeros_(self.shared_B)
        nn.init.kaiming_uniform_(self.gate, a=math.sqrt(5))  # nn.Linear's default

    def tensors(self) -> ExpertTensors:
        return ExpertTensors(self.A, self.B, self.shared_A, self.shared_B, self.gate)

    @torch.no_grad()
    def load_tensors(self, tensors: ExpertTensors, where: str = "layer") -> None:
        tensors.check(self.config, where)
        for name in TENSOR_NAMES:
            getattr(self, name).copy_(getattr(tensors, name))

    def route(self, style_latent: torch.Tensor) -> Routing:
        # The precision inference will route in (recorded with the config at export).
        return route(router_logits(style_latent, self.gate, self.config.routing_precision), self.config)

    def forward(self, x: torch.Tensor, style_latent: torch.Tensor) -> torch.Tensor:
        return moe_delta(x, self.tensors(), self.route(style_latent))


class StyleContext:
    """Holds the style latent for the next forward of every injected layer.

    The latent is a plain input, not recomputed state, so it survives gradient
    checkpointing as long as it is not replaced before backward.
    """

    def __init__(self, cond_dim: int) -> None:
        self.cond_dim = cond_dim
        self.latent: torch.Tensor | None = None

    def set(self, style_latent: torch.Tensor) -> None:
        self.latent = check_style_latent(style_latent, self.cond_dim)

    def get(self) -> torch.Tensor:
        if self.latent is None:
            raise InputError("no style latent set: call StyleContext.set(latent) before the forward.")
        return self.latent


class MoELoRALinear(nn.Module):
    """A frozen base linear plus its routed MoE-LoRA delta."""

    def __init__(self, base: nn.Linear, moe: MoELoRA, context: StyleContext) -> None:
        super().__init__()
        self.base = base
        self.moe = moe
        self.context = context

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.moe(x, self.context.get()).to(x.dtype)


def inject_moe(model: nn.Module, module_names: list[str], config: MoEConfig,
               *, dtype: torch.dtype | None = None) -> tuple[StyleContext, dict[str, MoELoRALinear]]:
    """Wrap each named nn.Linear of `model` with a MoELoRALinear sharing one StyleContext."""
    if not module_names:
        raise StyleExpertError("inject_moe needs at least one module name.")
    modules = dict(model.named_modules())
    missing = [n for n in module_names if n not in modules]
    if missing:
        raise StyleExpertError(
            f"{len(missing)} target module(s) not found in the model, e.g. {missing[:3]}; "
            f"the model has e.g. {[n for n, m in modules.items() if isinstance(m, nn.Linear)][:3]}."
        )
    context = StyleContext(config.cond_dim)
    wrapped: dict[str, MoELoRALinear] = {}
    for name in module_names:
        base = modules[name]
        if not isinstance(base, nn.Linear):
            raise StyleExpertError(f"target module '{name}' is a {type(base).__name__}, not nn.Linear.")
        moe = MoELoRA(base.in_features, base.out_features, config,
                      device=base.weight.device, dtype=dtype or base.weight.dtype)
        layer = MoELoRALinear(base, moe, context)
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, layer)
        wrapped[name] = layer
    return context, wrapped
