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
from .finite import check_finite_number
from .moe_lora import ExpertTensors
from .routing import Routing, route_latent


def fold_layer(tensors: ExpertTensors, routing: Routing,
               dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(up [out, (k+1) r], down [(k+1) r, in]) for the single sample in `routing`.

    Only the selected experts are gathered (and cast to `dtype`), never the whole stack.
    """
    if routing.batch_size != 1:
        raise InputError(f"fold_layer folds one style at a time, got a routing batch of {routing.batch_size}.")
    experts = routing.experts[0]
    dtype = dtype or tensors.A.dtype
    down = torch.cat([tensors.shared_A[0][None], tensors.A[experts]], dim=0).to(dtype).flatten(0, 1)
    b_sel = torch.cat([tensors.shared_B[0][None], tensors.B[experts]], dim=0).to(dtype)  # [k+1, out, r]
    weights = routing.slot_weights()[0].to(b_sel.dtype)
    up = (b_sel * weights[:, None, None]).permute(1, 0, 2).flatten(1, 2)
    return up, down


def fold_layers(layers: dict[str, ExpertTensors], config: MoEConfig, style_latent: torch.Tensor,
                *, dtype: torch.dtype = torch.float32, shared_strength: float = 1.0,
                routed_strength: float = 1.0) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Fold every layer for one style latent ([cond_dim] or [1, cond_dim]), computing in `dtype`."""
    latent = style_latent.reshape(1, -1) if style_latent.ndim == 1 else style_latent
    if latent.shape[0] != 1:
        raise InputError(
            f"fold needs exactly one style latent, got {latent.shape[0]}. Blend the styles into one "
            "latent first, or use dynamic mode for batches that mix styles."
        )
    folded = {}
    for name, tensors in layers.items():
        routing = route_latent(tensors.gate.to(dtype), latent.to(dtype=dtype, device=tensors.gate.device), config)
        folded[name] = fold_layer(tensors, routing.scaled(shared_strength, routed_strength), dtype)
    return folded


def effective_config(ckpt, alignment: str | None = None, top_k: int | None = None) -> MoEConfig:
    """The checkpoint's MoEConfig with the user's overrides (None keeps the stored value)."""
    if not ckpt.has_experts:
        raise InputError("this checkpoint holds only a style projector; it has no expert layers to apply.")
    return ckpt.config.replace(**{k: v for k, v in (("alignment", alignment), ("top_k", top_k)) if v is not None})


def fold_checkpoint(ckpt, style_latent: torch.Tensor, *, alignment: str | None = None,
                    top_k: int | None = None, strength: float = 1.0, shared_strength: float = 1.0,
                    routed_strength: float = 1.0,
                    dtype: torch.dtype = torch.float32) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Fold every expert layer of a StyleExpertCheckpoint for one style; strength scales `up`."""
    for name, value in (("strength", strength), ("shared_strength", shared_strength),
                        ("routed_strength", routed_strength)):
        check_finite_number(value, name)
    config = effective_config(ckpt, alignment, top_k)
    folded = fold_layers(ckpt.layers, config, style_latent, dtype=dtype, shared_strength=shared_strength,
                         routed_strength=routed_strength)
    return {name: (up * strength, down) for name, (up, down) in folded.items()}
