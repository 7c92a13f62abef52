"""One style path for Apply (merge and dynamic) and Bake.

A style request is checked once, here (check_style), and the user's strengths meet the routing
in one place (route_style), so merging, per-sample hooks and a baked LoRA compute one delta.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .config import MoEConfig
from .errors import InputError
from .finite import check_finite_number
from .keys import block_kind
from .routing import Routing, check_style_latent, route, router_logits


@dataclass(frozen=True)
class Strengths:
    """The user's strength controls: the whole delta, shared and routed experts, double and single blocks."""

    total: float = 1.0
    shared: float = 1.0
    routed: float = 1.0
    double: float = 1.0
    single: float = 1.0

    # The names the Apply/Bake inputs give them (the CLI flags are the same with '-').
    INPUT_NAMES = {"total": "strength", "shared": "shared_strength", "routed": "routed_strength",
                   "double": "double_blocks", "single": "single_blocks"}

    def __post_init__(self) -> None:
        # A NaN passes ComfyUI's min/max validation (and argparse) and would only give a black image.
        for name, label in self.INPUT_NAMES.items():
            check_finite_number(getattr(self, name), label)

    def layer_factor(self, module: str) -> float:
        """Factor of a diffusers-named layer's whole delta (total x its block group's factor)."""
        kind = block_kind(module)
        return self.total * (self.double if kind == "double" else self.single if kind == "single" else 1.0)

    def apply(self, routing: Routing, module: str) -> Routing:
        # The delta is linear in the slot weights, so the layer factor can ride on them.
        factor = self.layer_factor(module)
        return routing.scaled(self.shared * factor, self.routed * factor)


def check_style(ckpt, style_latent: torch.Tensor, *, alignment: str | None = None, top_k: int | None = None,
                routing_precision: str | None = None, one_style: bool = False) -> tuple[MoEConfig, torch.Tensor]:
    """(the checkpoint's MoEConfig with the user's overrides, latents [N, cond_dim]): the one check of
    a style request. `one_style` asks for exactly one latent (a fold)."""
    if not ckpt.has_experts:
        raise InputError("this checkpoint holds only a style projector; it has no expert layers to apply. "
                         "Load a checkpoint with experts.")
    config = ckpt.config.with_overrides(alignment, top_k, routing_precision)
    latents = check_style_latent(style_latent, config.cond_dim)
    if one_style and latents.shape[0] != 1:
        raise InputError(
            f"folding a style (Apply in merge mode, Bake) needs exactly one style latent, got {latents.shape[0]}. "
            "Blend the styles into one latent first (Blend Styles, or Encode Style with mode 'mean'), or use "
            "dynamic mode for batches that mix styles.")
    return config, latents


def route_style(module: str, gate: torch.Tensor, latents: torch.Tensor, config: MoEConfig,
                strengths: Strengths) -> Routing:
    """Routing of checked latents [B, cond_dim] through one layer's router [E, cond_dim] on the router's
    device, in the config's routing precision whatever the router's storage dtype, with the user's
    strengths applied."""
    logits = router_logits(latents, gate, config.routing_precision)
    return strengths.apply(route(logits, config), module)
