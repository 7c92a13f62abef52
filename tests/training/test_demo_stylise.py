"""The demo's stylisation path: Kontext's Euler loop, the core fold merged into a diffusers Flux, scoring."""

import numpy as np
import pytest
import torch

from styleexpert_core import MoEConfig, inject_moe
from styleexpert_core.formats import load_native
from training.checkpoints import experts_from_state_dict, export_experts
from training.demo.backbones import demo_flux
from training.demo.sampler import flux_scheduler, sample_kontext
from training.demo.styles import sample_styles
from training.demo.stylise import make_stylise_set, merged_style, score, style_top1
from training.stage2.flow_matching import KontextBatch
from training.stage2.flux import pack_latents, moe_target_modules


class ExactVelocity(torch.nn.Module):
    """Predicts the true straight-path velocity towards the content reference: (x_t - content) / sigma."""

    config = type("Config", (), {"guidance_embeds": True})()

    def forward(self, hidden_states, timestep, guidance, img_ids, **_):
        target = img_ids[:, 0] == 0
        x_t, content = hidden_states[:, target], hidden_states[:, ~target]
        assert torch.all(guidance == 3.5)
        return ((x_t - content) / timestep[:, None, None],)


def kontext_batch(content: torch.Tensor) -> KontextBatch:
    return KontextBatch(target=content, content=content, text_seq=torch.zeros(content.shape[0], 4, 16),
                        pooled=torch.zeros(content.shape[0], 16), style_latent=torch.zeros(content.shape[0], 8))


def test_euler_loop_with_the_exact_velocity_lands_on_the_target():
    content = torch.randn(2, 12, 8, 8)
    noise = torch.randn(2, 16, 48)
    out = sample_kontext(ExactVelocity(), kontext_batch(content), noise, steps=28, guidance=3.5)
    torch.testing.assert_close(out, content, rtol=1e-4, atol=1e-4)


def test_scheduler_runs_the_requested_steps_from_pure_noise_with_fluxs_shift():
    scheduler = flux_scheduler(28, 64)
    assert len(scheduler.timesteps) == 28
    assert scheduler.sigmas[0] == pytest.approx(1.0) and scheduler.sigmas[-1] == 0
    unshifted = np.linspace(1.0, 1 / 28, 28)
    assert np.all(scheduler.sigmas[1:-1].numpy() > unshifted[1:] - 1e-6)  # dynamic shift toward noise


@pytest.fixture(scope="module")
def trained_looking_experts(tmp_path_factory):
    model = demo_flux(width=32, double=1, single=1, text_dim=16)
    config = MoEConfig(num_experts=4, rank=2, top_k=2, cond_dim=8, alignment="paper")
    experts_model = demo_flux(width=32, double=1, single=1, text_dim=16)
    context, wrapped = inject_moe(experts_model, moe_target_modules(experts_model, "attention"), config)
    with torch.no_grad():
        for layer in wrapped.values():
            layer.moe.B.normal_(std=0.05)  # as if trained: B starts at zero
            layer.moe.shared_B.normal_(std=0.05)
    path = tmp_path_factory.mktemp("experts") / "experts.safetensors"
    export_experts(path, config, experts_from_state_dict(experts_model.state_dict()))
    return model, experts_model, context, load_native(path)


def flux_forward(model, content: torch.Tensor) -> torch.Tensor:
    from training.stage2.flux import image_ids

    batch = kontext_batch(content)
    tokens = pack_latents(content)
    ids = torch.cat([image_ids(8, 8, index=0), image_ids(8, 8, index=1)])
    return model(hidden_states=torch.cat([tokens, tokens], 1), encoder_hidden_states=batch.text_seq,
                 pooled_projections=batch.pooled, timestep=torch.full((content.shape[0],), 0.5), img_ids=ids,
                 txt_ids=torch.zeros(4, 3), guidance=torch.full((content.shape[0],), 3.5), return_dict=False)[0]


@torch.no_grad()
def test_merged_fold_matches_the_routed_experts_and_restores_the_base(trained_looking_experts):
    model, experts_model, context, ckpt = trained_looking_experts
    content, latent = torch.randn(2, 12, 8, 8), torch.randn(1, 8)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    base_out = flux_forward(model, content)
    context.set(latent)
    with merged_style(model, ckpt, latent):
        merged = flux_forward(model, content)
    torch.testing.assert_close(merged, flux_forward(experts_model, content), rtol=1e-4, atol=1e-5)
    assert (merged - base_out).abs().max() > 1e-3
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


class MeanColour:
    """A stand-in encoder: the style latent is the image's mean colour."""

    def encode_style_latent(self, images: torch.Tensor) -> torch.Tensor:
        return images.mean((2, 3))


def test_scores_put_ground_truth_at_zero_and_count_nearest_classes():
    data = make_stylise_set(sample_styles(3, seed=0), 2, size=16, seed=0, prototypes=4)
    assert data.content.shape == data.target.shape == (3, 2, 16, 16, 3) and data.reference.shape == (3, 16, 16, 3)
    assert not any(np.array_equal(data.reference[s], t) for s in range(3) for t in data.target[s])
    grey = np.full_like(data.target, 0.5)
    result = score({"perfect": data.target, "grey": grey}, data, MeanColour())
    assert result["mse"]["perfect"] == 0.0
    assert result["mse"]["grey"] == pytest.approx(float(np.mean((data.target - 0.5) ** 2)))
    assert 0.0 <= result["top1"]["grey"] <= 1.0


def test_style_top1_is_the_fraction_nearest_to_the_own_class():
    prototypes = torch.eye(3)
    outputs = torch.tensor([[1.0, 0.1, 0], [0, 1, 0], [0.9, 0, 0.1], [0, 0, 1]])
    assert style_top1(outputs, prototypes, torch.tensor([0, 1, 2, 2])) == 0.75


def test_stylisation_needs_two_styles():
    with pytest.raises(ValueError, match="two unseen styles"):
        make_stylise_set(sample_styles(1, seed=0), 2, size=16, seed=0)



def test_flat_styles_render_the_same_image_whatever_the_random_state():
    """Stage 2 and stylisation use flat styles, so each (content, style) pair has one right answer."""
    from training.demo.styles import flat, palette_pool, render, sample_content

    scene = sample_content(np.random.default_rng(0), 32)
    textured = next(s for s in sample_styles(20, seed=0) if s.grain > 0)
    pool = palette_pool(6)
    renders = [render(scene, flat(textured), pool, np.random.default_rng(seed)) for seed in (1, 2)]
    np.testing.assert_array_equal(renders[0], renders[1])
    noisy = [render(scene, textured, pool, np.random.default_rng(seed)) for seed in (1, 2)]
    assert np.abs(noisy[0] - noisy[1]).max() > 0.05


def test_flat_styles_are_monotone_tone_maps_and_equal_when_they_render_alike():
    """A flat style draws darker content with darker palette colours (no shifted palette), and
    styles that differ only in what flat drops compare equal (the unseen-style filter relies on it)."""
    from dataclasses import replace

    from training.demo.styles import PALETTE_SIZE, flat, palette_pool, render, sample_content

    pool = palette_pool(6)
    scene = sample_content(np.random.default_rng(3), 32)
    shifted = replace(sample_styles(1, seed=0)[0], palette_shift=2, levels=5, outline=0)
    image = render(scene, flat(shifted), pool, np.random.default_rng(0))
    luma_in, brightness = scene.luminance.ravel(), image.mean(-1).ravel()  # palettes are sorted by mean
    order = np.argsort(luma_in)
    assert np.all(np.diff(brightness[order]) >= -1e-6)  # monotone in the content's luma
    assert PALETTE_SIZE == 5 and flat(shifted).palette_shift == 0
    twin = replace(shifted, palette_shift=(shifted.palette_shift + 1) % PALETTE_SIZE, texture="dots",
                   frequency=7.0, angle=1.0, amplitude=0.3, grain=0.09)
    assert flat(twin) == flat(shifted)
    assert flat(replace(shifted, levels=2)) != flat(shifted)


def test_unseen_styles_render_unlike_every_stage2_style():
    from training.demo.__main__ import DemoConfig, stage2_styles, unseen_styles

    cfg = DemoConfig()
    styles = sample_styles(cfg.train_styles + cfg.heldout_styles, seed=cfg.seed)
    seen = set(stage2_styles(cfg, styles[: cfg.stage2_styles]))
    unseen = unseen_styles(cfg)
    assert len(unseen) == cfg.stylise_styles == len(set(unseen))
    assert not seen & set(unseen)
    assert set(unseen) <= set(stage2_styles(cfg, styles[cfg.train_styles:]))  # drawn from the held-out styles
    with pytest.raises(ValueError, match="render unlike every stage-2 style; lower stylise_styles"):
        unseen_styles(DemoConfig(heldout_styles=8, stylise_styles=8))
