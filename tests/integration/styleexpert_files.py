"""Tiny StyleExpert checkpoints that fit the harness's tiny Flux and tiny SigLIP."""

from __future__ import annotations

from pathlib import Path

import torch

from styleexpert_core import (ExpertTensors, FluxShape, MoEConfig, ProjectorConfig, StyleExpertCheckpoint,
                              StyleProjector, save_native)
from styleexpert_core.keys import attention_projection_modules, block_linear_features

TINY_FLUX = FluxShape(hidden_size=64, depth=2, depth_single=2)
TINY_PROJECTOR = ProjectorConfig(num_tokens=16, style_tokens=2, width=32, out_dim=8)  # tiny SigLIP: 16 x 32
EXTRA_MODULES = ["transformer_blocks.0.ff.net.2", "transformer_blocks.1.norm1.linear",
                 "single_transformer_blocks.1.proj_mlp", "single_transformer_blocks.0.proj_out"]


def tiny_checkpoint(seed: int = 0, alignment: str = "official", shape: FluxShape = TINY_FLUX,
                    projector: ProjectorConfig = TINY_PROJECTOR) -> StyleExpertCheckpoint:
    config = MoEConfig(num_experts=6, rank=4, top_k=2, cond_dim=projector.cond_dim, alignment=alignment)
    g = torch.Generator().manual_seed(seed)
    layers = {}
    for module in attention_projection_modules(shape) + EXTRA_MODULES:
        d_in, d_out = block_linear_features(module, shape)
        e, r = config.num_experts, config.rank
        layers[module] = ExpertTensors(
            A=torch.randn(e, r, d_in, generator=g) / r, B=torch.randn(e, d_out, r, generator=g) * 0.05,
            shared_A=torch.randn(1, r, d_in, generator=g) / r, shared_B=torch.randn(1, d_out, r, generator=g) * 0.05,
            gate=torch.randn(e, config.cond_dim, generator=g))
    torch.manual_seed(seed)
    proj = StyleProjector(projector).state_dict()
    return StyleExpertCheckpoint(config, layers, proj, projector, {"source": "native"})


def write_tiny_checkpoint(folder: Path, name: str = "tiny_styleexpert.safetensors", **kwargs) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    save_native(tiny_checkpoint(**kwargs), path)
    return path


EXAMPLE_IMAGES = ("content.png", "style.png", "style_b.png")  # small random inputs for the server tests


def write_example_images(input_dir: Path, size: int = 64) -> None:
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(0)
    input_dir.mkdir(parents=True, exist_ok=True)
    for name in EXAMPLE_IMAGES:
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(input_dir / name)
