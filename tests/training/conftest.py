"""Shared tiny data for the training tests: procedural triplets, caches, a tiny Flux folder.

Everything is built in code and cached per test session (a few seconds in total).
"""

from __future__ import annotations

import pytest
import torch

from styleexpert_core.config import ProjectorConfig
from styleexpert_core.projector import StyleProjector
from training.checkpoints import save_projector
from training.data.backbones import ProjectedStyle
from training.data.cache import TripletCacheSpec, cache_style_hidden, cache_triplets
from training.data.triplets import read_triplets
from training.demo.backbones import ByteStyleText, ByteText, PatchVAE, demo_flux, gabor_siglip
from training.demo.dataset import write_split
from training.demo.styles import make_triplets, sample_styles

SIZE = 32


@pytest.fixture(autouse=True, scope="session")
def _threads():
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    """accelerate keeps one process-wide state (e.g. mixed precision); a training script owns a
    process, but tests call several in one, so each test starts from a clean state."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    yield


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """Manifests, caches, a random projector file and a tiny Flux folder, shared by the tests."""
    return build_tiny(tmp_path_factory.mktemp("tiny"))


def build_tiny(root):
    styles = sample_styles(6, seed=0)
    manifest = write_split(root / "data", "train", make_triplets(styles, 4, size=SIZE, seed=1, colour_jitter=0.5))
    val_manifest = write_split(root / "data", "val", make_triplets(styles, 2, size=SIZE, seed=2))
    siglip = gabor_siglip(width=16, image_size=SIZE, patch=8)
    stage1_cache = cache_style_hidden(read_triplets(manifest), siglip, root / "cache1", style_text=ByteStyleText(16),
                                      shard_size=10, batch_size=8)
    torch.manual_seed(0)
    pconfig = ProjectorConfig(layers=siglip.layers, num_tokens=16, width=16, style_tokens=2, out_dim=4)
    projector = StyleProjector(pconfig)
    projector_file = save_projector(root / "projector.safetensors", projector, pconfig)
    style = ProjectedStyle(siglip, projector)
    spec = TripletCacheSpec(bucket_side=SIZE)
    stage2_cache = cache_triplets(read_triplets(manifest), PatchVAE(), ByteText(16, 16, 4), style, root / "cache2",
                                  spec=spec, shard_size=10, batch_size=4, dtype=torch.float32)
    val_cache = cache_triplets(read_triplets(val_manifest), PatchVAE(), ByteText(16, 16, 4), style, root / "cache2v",
                               spec=spec, shard_size=10, batch_size=4, dtype=torch.float32)
    flux_dir = root / "flux"
    demo_flux(width=32, double=1, single=1, text_dim=16).save_pretrained(str(flux_dir))
    return {"root": root, "manifest": manifest, "siglip": siglip, "stage1_cache": stage1_cache,
            "projector": projector_file, "projector_config": pconfig, "stage2_cache": stage2_cache,
            "stage2_val_cache": val_cache, "flux": flux_dir}


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than 30 s on 2 CPU cores")
