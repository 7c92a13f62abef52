"""Flux loading, MoE target lists, latent packing / ids, flow-matching loss, accelerate configs."""

from pathlib import Path

import pytest
import torch

from training.stage2.flow_matching import KontextBatch, flow_matching_loss, sample_sigmas
from training.stage2.flux import BUNDLED_CONFIG_DIR, image_ids, load_transformer, moe_target_modules, pack_latents

REPO = Path(__file__).resolve().parents[2]


def test_pack_and_kontext_ids():
    z = torch.randn(2, 4, 6, 8)
    tokens = pack_latents(z)
    assert tokens.shape == (2, 12, 16)
    # token (row i, col j) holds the 2x2 patch at (2i, 2j), channel-major: row 1, col 2 is token 1 * 4 + 2
    assert torch.equal(tokens[:, 0], z[:, :, :2, :2].reshape(2, 16))
    assert torch.equal(tokens[:, 6], z[:, :, 2:4, 4:6].reshape(2, 16))
    ids = image_ids(6, 8, index=2, row_offset=64)
    assert ids.shape == (12, 3) and ids[:, 0].eq(2).all() and ids[:, 1].min() == 64 and ids[-1].tolist() == [2, 66, 3]
    with pytest.raises(ValueError, match="even"):
        pack_latents(torch.randn(1, 4, 5, 8))


def test_target_specs(tmp_path):
    model = load_transformer("tiny")  # 1 double + 1 single block
    assert len(moe_target_modules(model, "attention")) == 8 + 3
    assert "single_transformer_blocks.0.proj_mlp" in moe_target_modules(model, "attention+mlp")
    assert moe_target_modules(model, "re:.*to_q") == ["transformer_blocks.0.attn.to_q",
                                                   "single_transformer_blocks.0.attn.to_q"]
    csv = tmp_path / "modules.csv"
    csv.write_text("base_key,rank\ntransformer.transformer_blocks.0.attn.to_k,8\n")
    assert moe_target_modules(model, f"csv:{csv}") == ["transformer_blocks.0.attn.to_k"]
    with pytest.raises(ValueError, match="unknown target spec"):
        moe_target_modules(model, "everything")
    csv.write_text("base_key\ntransformer.transformer_blocks.7.attn.to_k\n")
    with pytest.raises(ValueError, match="not Flux linear layers of this model"):
        moe_target_modules(model, f"csv:{csv}")


def test_bundled_kontext_config_describes_the_real_model():
    from diffusers import FluxTransformer2DModel

    config = FluxTransformer2DModel.load_config(str(BUNDLED_CONFIG_DIR))
    assert (config["num_layers"], config["num_single_layers"], config["guidance_embeds"]) == (19, 38, True)
    with torch.device("meta"):
        model = FluxTransformer2DModel.from_config(config)
    assert len(moe_target_modules(model, "attention")) == 266
    assert len(moe_target_modules(model, "attention+mlp")) == 418


def test_load_errors(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        load_transformer(str(tmp_path / "nope.safetensors"))
    (tmp_path / "model.ckpt").write_bytes(b"x")
    with pytest.raises(ValueError, match="refusing"):
        load_transformer(str(tmp_path / "model.ckpt"))
    with pytest.raises(ValueError, match="no transformer/config.json"):
        load_transformer(str(tmp_path))


def test_flow_matching_loss_uses_reference_tokens():
    torch.manual_seed(0)
    model = load_transformer("tiny")
    batch = KontextBatch(target=torch.randn(2, 4, 4, 4), content=torch.randn(2, 4, 4, 4),
                         text_seq=torch.randn(2, 3, 32), pooled=torch.randn(2, 32), style_latent=torch.randn(2, 8))
    noise, sigma = torch.randn(2, 4, 16), sample_sigmas(2, torch.Generator().manual_seed(0))
    loss = flow_matching_loss(model, batch, noise, sigma, guidance=1.0)
    other = KontextBatch(**{**batch.__dict__, "content": torch.randn(2, 4, 4, 4)})
    assert loss.ndim == 0 and loss != flow_matching_loss(model, other, noise, sigma, guidance=1.0)
    with_style = KontextBatch(**{**batch.__dict__, "style_ref": torch.randn(2, 4, 4, 4)})
    assert torch.isfinite(flow_matching_loss(model, with_style, noise, sigma, guidance=1.0))
    assert ((sample_sigmas(1000, shift=3.0) > 0) & (sample_sigmas(1000, shift=3.0) < 1)).all()


@pytest.mark.parametrize("name, kind", [("accelerate_ddp.yaml", "MULTI_GPU"),
                                        ("accelerate_deepspeed_zero2.yaml", "DEEPSPEED"),
                                        ("accelerate_fsdp2.yaml", "FSDP")])
def test_accelerate_configs_parse(name, kind):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(REPO / "training" / "configs" / name))
    assert config.distributed_type.value == kind and config.mixed_precision == "bf16"
    if kind == "DEEPSPEED":
        assert config.deepspeed_config["zero_stage"] == 2
    if kind == "FSDP":
        assert config.fsdp_config["fsdp_version"] == 2


@pytest.mark.slow
def test_bfl_single_file_loads_bit_exact(tmp_path):
    """The ComfyUI-format file path: a real-width (3072) 1+1-block Flux written with BFL keys by the
    core key table, read back offline through diffusers' single-file loader (~13 s, ~4 GB RAM).
    diffusers' converter hard-codes the real width, so this cannot run at tiny sizes."""
    import json

    from diffusers import FluxTransformer2DModel
    from safetensors.torch import save_file

    from styleexpert_core.keys import FluxShape, diffusers_to_bfl_params

    config = json.loads((BUNDLED_CONFIG_DIR / "config.json").read_text())
    config.update(num_layers=1, num_single_layers=1)
    (tmp_path / "config.json").write_text(json.dumps(config))
    torch.manual_seed(0)
    state = FluxTransformer2DModel.from_config(config).to(torch.bfloat16).state_dict()
    table = diffusers_to_bfl_params(FluxShape(3072, 1, 1))
    fused: dict[str, list] = {}
    for key, value in state.items():
        bfl_key, target = table[key]
        if target.transform == "swap_halves":
            value = torch.cat(value.chunk(2)[::-1])
        fused.setdefault(bfl_key, []).append((target.offset or 0, value))
    bfl = {k: torch.cat([v for _, v in sorted(parts, key=lambda p: p[0])]) for k, parts in fused.items()}
    save_file(bfl, str(tmp_path / "flux1-kontext-dev.safetensors"))
    loaded = load_transformer(str(tmp_path / "flux1-kontext-dev.safetensors"), dtype=torch.bfloat16,
                              config_dir=tmp_path).state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
