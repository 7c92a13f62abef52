"""Small random-weight model files that ComfyUI's stock loader nodes accept, cached across runs.

What the stock loaders need (read from ComfyUI 0.3.64):
* UNETLoader (comfy.model_detection): a BFL-named Flux state dict is recognised by
  `double_blocks.0.img_attn.norm.key_norm.scale` + `img_in.weight`; depth, single depth and the
  vec/in widths are read from the weights, but hidden 3072 / 24 heads / context 4096 / axes
  (16,56,56) are hard-coded. The smallest loadable "Flux" is therefore full width with one
  double and one single block (0.55 B params; stored as fp8 e4m3fn, 0.55 GB).
* VAELoader (comfy.sd.VAE): a file with `taesd_decoder.*`/`taesd_encoder.*` keys is built as
  TAESD with latent channels read from the weights; 16 channels = a Flux-latent VAE of 2.4 M
  params (the taef1 architecture). The full AutoencoderKL path has a fixed 128-channel width.
* CLIPVisionLoader (comfy.clip_vision.load): only so400m-shaped SigLIP (width 1152, 729
  positions, 27 layers) is detected, so the file is full size (fp16, 0.83 GB).

Files are written once into $STYLEEXPERT_TEST_MODELS_DIR or ~/.cache/styleexpert/test-models/<version>/
and reused; bump the version when a writer changes. Writers need ComfyUI imported (the
`comfy` fixture). A file is written to a temporary name and renamed, so parallel runs are safe.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch

log = logging.getLogger(__name__)

TEST_MODELS_VERSION = "v1"
TEST_MODELS_DIR_ENV = "STYLEEXPERT_TEST_MODELS_DIR"

FLUX_UNET_FILE = "flux_dev_width_d1s1_fp8_seed0.safetensors"
TINY_VAE_FILE = "taef1_shaped_random_seed0.safetensors"
SIGLIP_FILE = "siglip_so400m_random_fp16_seed0.safetensors"

# Names the files get inside a test server's models/ folders.
FLUX_UNET_NAME = "styleexpert_test_flux_d1s1.safetensors"
TINY_VAE_NAME = "styleexpert_test_tiny_vae.safetensors"
SIGLIP_NAME = "styleexpert_test_siglip_so400m.safetensors"

# Latent scale/shift VAELoader uses for the real taef1, so latents look like Flux latents.
_TAEF1_SCALE, _TAEF1_SHIFT = 0.3611, 0.1159


def test_models_dir() -> Path:
    configured = os.environ.get(TEST_MODELS_DIR_ENV)
    base = Path(configured) if configured else Path.home() / ".cache" / "styleexpert" / "test-models"
    return base / TEST_MODELS_VERSION


def cached_model_file(name: str, writer: Callable[[Path], None]) -> Path:
    """Path of `name` in the cache, calling writer(tmp_path) first if it is absent."""
    path = test_models_dir() / name
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    started = time.perf_counter()
    try:
        writer(partial)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    log.info("wrote test model %s (%.1f MB) in %.1f s", path, path.stat().st_size / 1e6, time.perf_counter() - started)
    return path


def flux_unet_file() -> Path:
    return cached_model_file(FLUX_UNET_FILE, lambda p: write_flux_unet_file(p, seed=0))


def tiny_vae_file() -> Path:
    return cached_model_file(TINY_VAE_FILE, lambda p: write_tiny_flux_vae_file(p, seed=0))


def siglip_file() -> Path:
    return cached_model_file(SIGLIP_FILE, lambda p: write_siglip_file(p, seed=0))


def server_model_files(flux_unet: Path, vae: Path, siglip: Path) -> dict[str, Path]:
    """model_files for prepare_base_directory: "<models folder>/<name>" -> cached file."""
    return {
        f"diffusion_models/{FLUX_UNET_NAME}": flux_unet,
        f"vae/{TINY_VAE_NAME}": vae,
        f"clip_vision/{SIGLIP_NAME}": siglip,
    }


def write_flux_unet_file(
    path: Path,
    *,
    depth: int = 1,
    depth_single_blocks: int = 1,
    seed: int = 0,
    dtype: torch.dtype = torch.float8_e4m3fn,
) -> None:
    """BFL-named Flux weights (no `model.diffusion_model.` prefix) that UNETLoader detects as Flux.

    Same initialisation rule as tiny_flux.init_weights_deterministically_."""
    import safetensors.torch
    from .tiny_flux import build_flux_base_model, deterministic_parameter_values, flux_dev_width_shape

    with torch.device("meta"):
        skeleton = build_flux_base_model(flux_dev_width_shape(depth, depth_single_blocks), torch.float32, "meta")
    parameters = skeleton.diffusion_model.named_parameters()
    state = {name: value.to(dtype) for name, value in deterministic_parameter_values(parameters, seed)}
    safetensors.torch.save_file(state, str(path), metadata={"styleexpert_test": "random weights"})


def write_tiny_flux_vae_file(path: Path, *, seed: int = 0, latent_channels: int = 16) -> None:
    """TAESD-architecture VAE with `latent_channels` (16 = Flux) and random weights."""
    import comfy.taesd.taesd
    import safetensors.torch

    model = comfy.taesd.taesd.TAESD(latent_channels=latent_channels)
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, parameter in model.named_parameters():
        if name in ("vae_scale", "vae_shift"):
            continue
        fan_in = max(1, parameter[0].numel()) if parameter.ndim > 1 else 1
        std = (1.0 / fan_in) ** 0.5 if parameter.ndim > 1 else 0.01  # keeps activations O(1) through 30 convs
        state[name] = (torch.randn(parameter.shape, generator=generator) * std).to(torch.float16)
    state["vae_scale"] = torch.tensor(_TAEF1_SCALE)
    state["vae_shift"] = torch.tensor(_TAEF1_SHIFT)
    safetensors.torch.save_file(state, str(path), metadata={"styleexpert_test": "random weights"})


def write_siglip_file(path: Path, *, seed: int = 0) -> None:
    """so400m-shaped SigLIP vision tower that CLIPVisionLoader recognises, random fp16 weights."""
    import safetensors.torch
    from .tiny_siglip import SO400M, siglip_state_dict

    safetensors.torch.save_file(
        siglip_state_dict(SO400M, seed), str(path), metadata={"styleexpert_test": "random weights"}
    )
