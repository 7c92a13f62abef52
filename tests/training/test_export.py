"""Export: a stage-2 experts file + a stage-1 projector file -> one native file the core loads."""

import torch
from PIL import Image

from styleexpert_core.config import MoEConfig
from styleexpert_core.formats import load_checkpoint, load_native
from styleexpert_core.moe_lora import ExpertTensors
from training.checkpoints import export_experts
from training.stage2.export import merge


def test_merge_round_trip(tiny, tmp_path):
    config = MoEConfig(num_experts=2, rank=2, top_k=1, cond_dim=24, alignment="paper")
    g = torch.Generator().manual_seed(0)
    layer = ExpertTensors(torch.randn(2, 2, 32, generator=g), torch.randn(2, 32, 2, generator=g),
                          torch.randn(1, 2, 32, generator=g), torch.randn(1, 32, 2, generator=g),
                          torch.randn(2, 24, generator=g))
    experts = export_experts(tmp_path / "e.safetensors", config, {"transformer_blocks.0.attn.to_q": layer},
                             base_model="tiny", style_token_concat=True)
    assert load_native(experts).projector is None
    merged = load_checkpoint(merge(experts, tiny["projector"], tmp_path / "m.safetensors"))
    assert merged.config == config and merged.info["base_model"] == "tiny"
    assert merged.info["style_token_concat"] == "true"
    assert torch.equal(merged.layers["transformer_blocks.0.attn.to_q"].gate, layer.gate)
    assert merged.projector_config == tiny["projector_config"]
    with Image.open(tmp_path / "m.preview.png") as card:  # its picture in ComfyUI's Model Library
        assert card.size == (384, 384)
