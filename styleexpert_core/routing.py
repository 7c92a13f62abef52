"""Per-sample routing: the router sees only the style latent, never tokens or timestep."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from .config import MoEConfig
from .errors import InputError, ShapeMismatchError

ROUTING_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


@dataclass
class Routing:
    """Which experts each sample uses and with what weight (scale already applied).

    experts:        [B, k] routed expert indices, by descending router score.
    expert_weights: [B, k] weight of each selected routed expert.
    shared_weight:  [B]    weight of the shared expert.
    zero_last:      the last routed expert's weight is structurally zero (the official alignment).
    """

    experts: torch.Tensor
    expert_weights: torch.Tensor
    shared_weight: torch.Tensor
    zero_last: bool = False

    @property
    def batch_size(self) -> int:
        return self.experts.shape[0]

    def slot_weights(self) -> torch.Tensor:
        """[B, k+1] weights in slot order [shared, e1, ..., ek]."""
        return torch.cat([self.shared_weight[:, None], self.expert_weights], dim=1)

    def dense_gates(self, num_experts: int) -> torch.Tensor:
        """[B, E] routed weight per expert (zero where not selected)."""
        gates = self.expert_weights.new_zeros(self.batch_size, num_experts)
        return gates.scatter_add(1, self.experts, self.expert_weights)

    def scaled(self, shared: float = 1.0, routed: float = 1.0) -> "Routing":
        """The same routing with the shared and routed experts' weights multiplied."""
        return replace(self, expert_weights=self.expert_weights * routed, shared_weight=self.shared_weight * shared)

    def active(self) -> "Routing":
        """The same delta without the always-zero slot: a third less work at top_k 2 (exactly, since
        that slot only ever adds 0 * B A x)."""
        if not self.zero_last:
            return self
        return Routing(self.experts[:, :-1], self.expert_weights[:, :-1], self.shared_weight)


def router_logits(latents: torch.Tensor, gate: torch.Tensor, precision: str) -> torch.Tensor:
    """[B, E] logits of latents [B, cond_dim] through a router [E, cond_dim] in `precision`.

    Inputs are rounded to the precision, the products summed in float64 and the sum rounded once
    (what a bf16 GPU linear does, accumulating in fp32): the same logits, to the last bit, on any
    device and at any batch size, so merge, dynamic and Bake always pick the same experts.
    """
    dtype = ROUTING_DTYPES[precision]
    device = torch.device("cpu") if gate.device.type == "mps" else gate.device  # MPS has no float64
    a = latents.to(device=device, dtype=dtype).double()
    w = gate.to(device=device, dtype=dtype).double()
    return (a @ w.t()).to(dtype).to(gate.device)


def select_experts(logits: torch.Tensor, top_k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(top logits, experts) [B, k], by descending logit; ties go to the lower index on every device.
    At top_k == E the released code skips top-k and takes every expert in index order, which under the
    official alignment decides which score the shared expert gets; that is reproduced."""
    if top_k == logits.shape[1]:
        return logits, torch.arange(top_k, device=logits.device).expand(logits.shape[0], -1)
    order = torch.sort(logits, dim=-1, descending=True, stable=True).indices[:, :top_k]
    return logits.gather(1, order), order


def route(logits: torch.Tensor, config: MoEConfig) -> Routing:
    """Top-k over the router logits, softmax over the selected ones, scale, then align."""
    if logits.ndim != 2 or logits.shape[1] != config.num_experts:
        raise ShapeMismatchError(
            f"router logits must be [batch, {config.num_experts}], got {tuple(logits.shape)}."
        )
    top_logits, experts = select_experts(logits, config.top_k)
    scores = torch.softmax(top_logits.float(), dim=-1).to(logits.dtype) * config.scale
    if config.alignment == "official":
        # Released code: stack [shared, e1..ek], pad scores [s1..sk, 0] on the right.
        shared = scores[:, 0]
        weights = torch.cat([scores[:, 1:], scores.new_zeros(scores.shape[0], 1)], dim=1)
        return Routing(experts, weights, shared, zero_last=True)
    shared = scores.new_full((scores.shape[0],), config.scale)
    return Routing(experts, scores, shared)


def route_latent(gate_weight: torch.Tensor, style_latent: torch.Tensor, config: MoEConfig) -> Routing:
    """Route a batch of style latents [B, cond_dim] (or one [cond_dim]) through a router [E, cond_dim]."""
    latent = check_style_latent(style_latent, config.cond_dim)
    return route(router_logits(latent, gate_weight, config.routing_precision), config)


def check_style_latent(style_latent: torch.Tensor, cond_dim: int) -> torch.Tensor:
    """Validate a style latent and return it as [B, cond_dim]."""
    if not isinstance(style_latent, torch.Tensor):
        raise InputError(f"style latent must be a tensor, got {type(style_latent).__name__}.")
    latent = style_latent[None] if style_latent.ndim == 1 else style_latent
    if latent.ndim != 2 or latent.shape[1] != cond_dim:
        raise ShapeMismatchError(
            f"style latent must have shape [{cond_dim}] or [batch, {cond_dim}], got "
            f"{tuple(style_latent.shape)}: the checkpoint routes on {cond_dim}-d latents. Encode the style "
            "with the style projector the checkpoint was trained with."
        )
    if latent.shape[0] == 0:
        raise InputError("style latent batch is empty; encode at least one style image.")
    if not torch.isfinite(latent).all():
        raise InputError("style latent contains NaN or Inf values; re-encode the style image(s).")
    return latent
