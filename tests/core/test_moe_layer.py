import pytest
import torch

from styleexpert_core import MoEConfig, MoELoRA, fold_layer, moe_delta, route_latent
from styleexpert_core.errors import InputError, ShapeMismatchError, StyleExpertError

from .helpers import random_tensors, rel_err
from .official_reference import official_forward, paper_forward


def _inputs(config, batch=3, tokens=17, d_in=24, d_out=40, seed=0):
    t = random_tensors(config, d_in, d_out, seed)
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(batch, tokens, d_in, generator=g)
    latent = torch.randn(batch, config.cond_dim, generator=g)
    return t, x, latent


@pytest.mark.parametrize("rank,top_k", [(8, 2), (4, 1), (16, 3), (2, 2)])
def test_official_alignment_matches_official_einsum(rank, top_k):
    config = MoEConfig(num_experts=6, rank=rank, top_k=top_k, cond_dim=32, alignment="official")
    t, x, latent = _inputs(config)
    ours = moe_delta(x, t, route_latent(t.gate, latent, config))
    ref = official_forward(x, t.A, t.B, t.shared_A, t.shared_B, t.gate, latent, top_k, rank)
    assert rel_err(ours, ref) <= 1e-5


def test_official_alignment_weights_last_selected_expert_zero():
    config = MoEConfig(num_experts=5, rank=8, top_k=2, cond_dim=16, alignment="official")
    t, x, latent = _inputs(config, batch=2)
    routing = route_latent(t.gate, latent, config)
    top = torch.softmax(torch.topk(latent @ t.gate.t(), 2).values, -1) * 2
    torch.testing.assert_close(routing.shared_weight, top[:, 0])
    torch.testing.assert_close(routing.expert_weights[:, 0], top[:, 1])
    assert torch.all(routing.expert_weights[:, 1] == 0)


@pytest.mark.parametrize("scale_rule,scale", [("official", 2.0), ("none", 1.0)])
def test_paper_alignment_matches_its_formula(scale_rule, scale):
    config = MoEConfig(num_experts=6, rank=8, top_k=2, cond_dim=32, alignment="paper", scale_rule=scale_rule)
    t, x, latent = _inputs(config)
    ours = moe_delta(x, t, route_latent(t.gate, latent, config))
    ref = paper_forward(x, t.A, t.B, t.shared_A, t.shared_B, t.gate, latent, 2, scale)
    assert rel_err(ours, ref) <= 1e-5


def test_mixed_batch_routes_each_sample_by_its_own_latent():
    config = MoEConfig(num_experts=8, rank=4, top_k=2, cond_dim=16)
    t, x, latent = _inputs(config, batch=4, d_in=12, d_out=12)
    batched = moe_delta(x, t, route_latent(t.gate, latent, config))
    for b in range(4):
        alone = moe_delta(x[b:b + 1], t, route_latent(t.gate, latent[b], config))
        torch.testing.assert_close(batched[b:b + 1], alone, rtol=1e-5, atol=1e-6)
    # The samples really used different experts (otherwise the test proves nothing).
    routing = route_latent(t.gate, latent, config)
    assert len({tuple(r.tolist()) for r in routing.experts}) > 1


def test_one_latent_broadcasts_over_batch():
    config = MoEConfig(num_experts=8, rank=4, top_k=2, cond_dim=16)
    t, x, latent = _inputs(config, batch=3)
    one = moe_delta(x, t, route_latent(t.gate, latent[:1], config))
    rep = moe_delta(x, t, route_latent(t.gate, latent[:1].expand(3, -1), config))
    torch.testing.assert_close(one, rep, rtol=1e-5, atol=1e-6)


@pytest.mark.bad_input
def test_latent_batch_mismatch_is_clear():
    config = MoEConfig(num_experts=4, rank=4, top_k=2, cond_dim=8)
    t, x, latent = _inputs(config, batch=3)
    with pytest.raises(ShapeMismatchError, match="2 style latents for a batch of 3"):
        moe_delta(x, t, route_latent(t.gate, latent[:2], config))


@pytest.mark.parametrize("alignment", ["official", "paper"])
@pytest.mark.parametrize("rank,top_k", [(8, 2), (4, 3), (1, 1)])
def test_fold_equals_dynamic_delta(alignment, rank, top_k):
    config = MoEConfig(num_experts=7, rank=rank, top_k=top_k, cond_dim=20, alignment=alignment)
    t, x, latent = _inputs(config, batch=1, d_in=30, d_out=18, seed=3)
    routing = route_latent(t.gate, latent, config)
    up, down = fold_layer(t, routing)
    assert up.shape == (18, config.folded_rank) and down.shape == (config.folded_rank, 30)
    assert config.folded_rank == (top_k + (alignment == "paper")) * rank  # official: its zero slot left out
    assert rel_err(x @ (up @ down).t(), moe_delta(x, t, routing)) <= 1e-5


def test_gradients_reach_every_parameter_tensor():
    config = MoEConfig(num_experts=4, rank=2, top_k=2, cond_dim=8, alignment="paper")
    layer = MoELoRA(6, 5, config)
    torch.nn.init.normal_(layer.B)
    torch.nn.init.normal_(layer.shared_B)
    x, latent = torch.randn(2, 3, 6), torch.randn(2, 8)
    layer(x, latent).square().sum().backward()
    for name, p in layer.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_init_is_a_zero_delta():
    config = MoEConfig(num_experts=4, rank=2, top_k=2, cond_dim=8)
    layer = MoELoRA(6, 5, config)
    assert torch.all(layer(torch.randn(2, 3, 6), torch.randn(2, 8)) == 0)
    assert abs(layer.A.std().item() - 0.5) < 0.25  # N(0, 1/r) as in the release


def test_config_validation_messages():
    with pytest.raises(StyleExpertError, match="silently disables"):
        MoEConfig(rank=32)
    MoEConfig(rank=32, scale_rule="none")
    with pytest.raises(StyleExpertError, match="top_k"):
        MoEConfig(num_experts=2, top_k=3)
    with pytest.raises(StyleExpertError, match="alignment"):
        MoEConfig(alignment="fixed")


@pytest.mark.bad_input
def test_bad_latents_are_rejected():
    config = MoEConfig(num_experts=4, rank=4, top_k=2, cond_dim=8)
    t = random_tensors(config, 4, 4)
    with pytest.raises(InputError, match="NaN"):
        route_latent(t.gate, torch.full((8,), float("nan")), config)
    with pytest.raises(ShapeMismatchError, match=r"\[8\]"):
        route_latent(t.gate, torch.zeros(7), config)
    with pytest.raises(InputError, match="empty"):
        route_latent(t.gate, torch.zeros(0, 8), config)
