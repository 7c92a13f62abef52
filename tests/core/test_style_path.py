"""One style path: the strengths mean the same in a fold (Apply merge, Bake) and in dynamic mode."""

import torch

from styleexpert_core import MoEConfig, Strengths, StyleExpertCheckpoint, fold_checkpoint, moe_delta, route_style

from .helpers import random_tensors, rel_err

CONFIG = MoEConfig(num_experts=5, rank=4, top_k=2, cond_dim=12)
MODULES = {"transformer_blocks.0.attn.to_q": 0.5, "single_transformer_blocks.1.proj_mlp": 1.7, "proj_out": 1.0}
STRENGTHS = Strengths(total=0.9, shared=0.6, routed=1.4, double=0.5, single=1.7)
H = 8


def _checkpoint() -> StyleExpertCheckpoint:
    layers = {m: random_tensors(CONFIG, H, H, seed=i) for i, m in enumerate(MODULES)}
    return StyleExpertCheckpoint(CONFIG, layers)


def _delta(folded, module):
    up, down = folded[module]
    return up @ down


def test_each_strength_scales_its_part_of_the_fold():
    ckpt, latent = _checkpoint(), torch.randn(CONFIG.cond_dim)
    folded = fold_checkpoint(ckpt, latent, strengths=STRENGTHS)
    shared = fold_checkpoint(ckpt, latent, strengths=Strengths(routed=0.0))
    routed = fold_checkpoint(ckpt, latent, strengths=Strengths(shared=0.0))
    for module, block in MODULES.items():
        expected = 0.9 * block * (0.6 * _delta(shared, module) + 1.4 * _delta(routed, module))
        assert rel_err(_delta(folded, module), expected) <= 1e-5, module


def test_dynamic_routing_with_strengths_equals_the_fold():
    ckpt, latent = _checkpoint(), torch.randn(1, CONFIG.cond_dim)
    config = CONFIG.with_overrides(alignment="paper", top_k=3)
    folded = fold_checkpoint(ckpt, latent, strengths=STRENGTHS, alignment="paper", top_k=3)
    x = torch.randn(2, 7, H)
    for module, tensors in ckpt.layers.items():
        dynamic = moe_delta(x, tensors, route_style(module, tensors.gate, latent, config, STRENGTHS))
        assert rel_err(dynamic, x @ _delta(folded, module).t()) <= 1e-5, module


def test_overrides_keep_what_is_not_given():
    assert CONFIG.with_overrides() == CONFIG
    assert CONFIG.with_overrides(top_k=3) == CONFIG.replace(top_k=3)
    assert CONFIG.with_overrides("paper", None) == CONFIG.replace(alignment="paper")
