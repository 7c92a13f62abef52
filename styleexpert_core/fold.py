"""Fold: for one style, the whole MoE of a layer is one static low-rank delta.

Because routing depends only on the style latent, delta(x) = up @ down @ x with
    down = [A_sh; A_e1; ...; A_ek]                      [(k+1) r, in]
    up   = [w_sh B_sh | w_1 B_e1 | ... | w_k B_ek]      [out, (k+1) r]
which is exactly what the dynamic layer computes for that sample.
"""

from __future__ import annotations

import torch

from .config import MoEConfig
from .errors import InputError
from .moe_lora import ExpertTensors
from .routing import Routing
from .style import Strengths, check_style, route_style


def fold_layer(tensors: ExpertTensors, routing: Routing,
               dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(up [out, (k+1) r], down [(k+1) r, in]) for the single sample in `routing`; k routed slots
    less the official alignment's always-zero one (config.folded_rank).

    Only the selected experts are gathered (and cast to `dtype`), never the whole stack.
    """
    if routing.batch_size != 1:
        raise InputError(f"fold_layer folds one style at a time, got a routing batch of {routing.batch_size}.")
    routing = routing.active()
    experts = routing.experts[0]
    dtype = dtype or tensors.A.dtype
    down = torch.cat([tensors.shared_A[0][None], tensors.A[experts]], dim=0).to(dtype).flatten(0, 1)
    b_sel = torch.cat([tensors.shared_B[0][None], tensors.B[experts]], dim=0).to(dtype)  # [k+1, out, r]
    weights = routing.slot_weights()[0].to(b_sel.dtype)
    up = (b_sel * weights[:, None, None]).permute(1, 0, 2).flatten(1, 2)
    return up, down


def fold_layers(layers: dict[str, ExpertTensors], config: MoEConfig, latent: torch.Tensor, *,
                strengths: Strengths = Strengths(),
                dtype: torch.dtype = torch.float32) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Fold every layer for one checked style latent [1, cond_dim] (see check_style), computing in `dtype`."""
    return {name: fold_layer(tensors, route_style(name, tensors.gate, latent, config, strengths), dtype)
            for name, tensors in layers.items()}


def fold_checkpoint(ckpt, style_latent: torch.Tensor, *, strengths: Strengths = Strengths(),
                    alignment: str | None = None, top_k: int | None = None, routing_precision: str | None = None,
                    dtype: torch.dtype = torch.float32) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Every expert layer of a StyleExpertCheckpoint folded for one style ([cond_dim] or [1, cond_dim]):
    what Apply merges and Bake writes. alignment/top_k/routing_precision override the checkpoint's
    (None keeps them)."""
    config, latent = check_style(ckpt, style_latent, alignment=alignment, top_k=top_k,
                                 routing_precision=routing_precision, one_style=True)
    return fold_layers(ckpt.layers, config, latent, strengths=strengths, dtype=dtype)
