import pytest
import torch

from styleexpert_core import ProjectorConfig, StyleProjector, build_projector
from styleexpert_core.errors import CheckpointError, InputError, ShapeMismatchError

SMALL = ProjectorConfig(layers=(-2, -11, -20), num_tokens=16, style_tokens=4, width=32, out_dim=8)


def test_official_shapes_and_keys():
    p = StyleProjector()
    sd = p.state_dict()
    assert sd["embedding_linears.-2.0.weight"].shape == (8, 729)
    assert sd["layer_norms.-11.weight"].shape == (1152,)
    assert sd["projections.-20.weight"].shape == (128, 1152)
    assert len(sd) == 18
    assert sum(v.numel() for v in sd.values()) == 3 * (729 * 8 + 8 + 2 * 1152 + 1152 * 128 + 128)
    assert ProjectorConfig().cond_dim == 3072


def _manual(p: StyleProjector, hidden: torch.Tensor) -> torch.Tensor:
    """The projector written out by hand in the official order high, mid, low."""
    outs = []
    for layer in (-2, -11, -20):
        n = str(layer)
        x = hidden[:, layer]  # [B, T, W]
        w, b = p.embedding_linears[n][0].weight, p.embedding_linears[n][0].bias
        x = torch.nn.functional.silu(torch.einsum("btw,st->bsw", x, w) + b[None, :, None])
        x = torch.nn.functional.layer_norm(x, (x.shape[-1],), p.layer_norms[n].weight, p.layer_norms[n].bias)
        outs.append(x @ p.projections[n].weight.t() + p.projections[n].bias)
    return torch.cat(outs, dim=1).flatten(1)


def test_forward_matches_hand_written_projection_and_layer_order():
    torch.manual_seed(0)
    p = StyleProjector(SMALL)
    hidden = torch.randn(2, 21, 16, 32)  # 21 hidden states (>= 20 needed for -20)
    out = p(hidden)
    assert out.shape == (2, SMALL.cond_dim)
    torch.testing.assert_close(out, _manual(p, hidden), rtol=1e-5, atol=1e-5)
    # HF-style tuple input gives the same result as the stacked tensor.
    torch.testing.assert_close(p(tuple(hidden.unbind(1))), out)


@pytest.mark.bad_input
def test_wrong_siglip_is_a_clear_error():
    p = StyleProjector(SMALL)
    with pytest.raises(InputError, match="at least 20 layers"):
        p(torch.randn(1, 12, 16, 32))
    with pytest.raises(ShapeMismatchError, match="expects 16 tokens of width 32"):
        p(torch.randn(1, 21, 16, 48))
    with pytest.raises(InputError, match="empty"):
        p(torch.randn(0, 21, 16, 32))


def test_build_from_state_dict_with_and_without_prefix():
    torch.manual_seed(1)
    src = StyleProjector(SMALL)
    hidden = torch.randn(1, 21, 16, 32)
    for sd in (src.state_dict(), {f"proj_model.{k}": v for k, v in src.state_dict().items()}):
        p = build_projector(sd, "test")
        assert p.config == SMALL
        torch.testing.assert_close(p(hidden), src(hidden))


def test_build_is_strict():
    sd = StyleProjector(SMALL).state_dict()
    with pytest.raises(CheckpointError, match="unexpected projector key 'extra.weight'"):
        build_projector({**sd, "extra.weight": torch.zeros(1)}, "f.safetensors")
    sd_missing = dict(sd)
    sd_missing.pop("layer_norms.-11.bias")
    with pytest.raises(CheckpointError, match="missing"):
        build_projector(sd_missing, "f.safetensors")
    mixed = {("proj_model." + k if i % 2 else k): v for i, (k, v) in enumerate(sd.items())}
    with pytest.raises(CheckpointError, match="mix"):
        build_projector(mixed, "f.safetensors")
    bad = dict(sd)
    bad["layer_norms.-2.weight"] = torch.zeros(31)
    with pytest.raises(ShapeMismatchError, match="layer_norms.-2.weight"):
        build_projector(bad, "f.safetensors")


def test_project_over_preselected_layers_equals_forward():
    torch.manual_seed(2)
    p = StyleProjector(SMALL)
    hidden = torch.randn(2, 21, 16, 32)
    cached = torch.stack([hidden[:, i] for i in SMALL.layers], dim=1)  # what a feature cache stores
    torch.testing.assert_close(p.project(cached.unbind(1)), p(hidden))
    with pytest.raises(ShapeMismatchError, match="expected 3 layers"):
        p.project(cached.unbind(1)[:2])
