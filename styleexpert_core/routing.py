"""Per-sample routing: the router sees only the style latent, never tokens or timestep."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .config import MoEConfig
from .errors import InputError, ShapeMismatchError


@dataclass
class Routing:
    """Which experts each sample uses and with what weight (scale already applied).

    experts:        [B, k] routed expert indices, by descending router score.
    expert_weights: [B, k] weight of each selected routed expert.
    shared_weight:  [B]    weight of the shared expert.
    """

    experts: torch.Tensor
    expert_weights: torch.Tensor
    shared_weight: torch.Tensor

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
        return Routing(self.experts, self.expert_weights * routed, self.shared_weight * shared)



def route(logits: torch.Tensor, config: MoEConfig) -> Routing:
    """Top-k over the router logits, softmax over the selected ones, scale, then align."""
    if logits.ndim != 2 or logits.shape[1] != config.num_experts:
        raise ShapeMismatchError(
            f"router logits must be [batch, {config.num_experts}], got {tuple(logits.shape)}."
        )
    top_logits, experts = torch.topk(logits, config.top_k, dim=-1, sorted=True)
    scores = torch.softmax(top_logits.float(), dim=-1).to(logits.dtype) * config.scale
    if config.alignment == "official":
        # Released code: stack [shared, e1..ek], pad scores [s1..sk, 0] on the right.
        shared = scores[:, 0]
        weights = torch.cat([scores[:, 1:], scores.new_zeros(scores.shape[0], 1)], dim=1)
    else:
        shared = scores.new_full((scores.shape[0],), config.scale)
        weights = scores
    return Routing(experts, weights, shared)


def route_latent(gate_weight: torch.Tensor, style_latent: torch.Tensor, config: MoEConfig) -> Routing:
    """Route a batch of style latents [B, cond_dim] (or one [cond_dim]) through a router [E, cond_dim]."""
    latent = check_style_latent(style_latent, config.cond_dim)
    logits = latent.to(gate_weight.dtype) @ gate_weight.t()
    return route(logits, config)


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
