"""The Flux transformer for stage 2: loading, MoE target lists, latent packing and position ids.

Loading (``load_transformer``):
* ``flux1-kontext-dev.safetensors`` -- the BFL single file ComfyUI users already have -- is read
  offline with diffusers' ``from_single_file`` and the transformer config bundled in
  ``training/configs/flux1-kontext-dev/config.json`` (Kontext-dev has the shapes of FLUX.1-dev,
  ``guidance_embeds=true``). diffusers converts BFL keys itself; its converter hard-codes the
  real width (3072), so this path only works for full-size checkpoints.
* a diffusers folder: ``<dir>/transformer/config.json`` (a pipeline) or ``<dir>/config.json``
  (a bare transformer, e.g. the demo's ``save_pretrained`` output);
* ``tiny``: a seeded 1+1-layer model for smoke tests (diffusers' own test dimensions).

Targets (``moe_target_modules``): the official list of patched layers (``train_modules_csv``) is
not published; the default ``attention+mlp`` follows the paper (experts in the attention and the
FFN linears): every attention projection of the double and single blocks plus the feed-forward
and single-block mlp/out projections, 418 layers on the real model. ``attention`` keeps only the
attention projections (q, k, v, out for image and text streams; q, k, v in single blocks): 266;
``csv:<file>`` reads an official-style CSV (``base_key`` column, first component stripped);
``re:<regex>`` matches diffusers module names. Names always come from the core key table.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import torch
from torch import nn

from styleexpert_core.keys import FluxShape, attention_projection_modules, diffusers_to_bfl

from ..data.errors import InputError

BUNDLED_CONFIG_DIR = Path(__file__).parents[1] / "configs" / "flux1-kontext-dev"
TINY_FLUX = dict(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16,
                 num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, guidance_embeds=True,
                 axes_dims_rope=(4, 4, 8))
MLP_SUFFIXES = ("ff.net.0.proj", "ff.net.2", "ff_context.net.0.proj", "ff_context.net.2", "proj_mlp", "proj_out")


def load_transformer(source: str, *, dtype: torch.dtype = torch.float32, seed: int = 0,
                     config_dir: str | Path = BUNDLED_CONFIG_DIR):
    """FluxTransformer2DModel from a BFL single file, a diffusers folder, or ``tiny``.

    ``config_dir`` holds the diffusers ``config.json`` used for a single file (default: the
    bundled FLUX.1-Kontext-dev transformer config).
    """
    from diffusers import FluxTransformer2DModel

    if source == "tiny":
        torch.manual_seed(seed)
        return FluxTransformer2DModel(**TINY_FLUX).to(dtype)
    path = Path(source)
    if path.is_file():
        if path.suffix != ".safetensors":
            raise InputError(f"{path}: expected the BFL single file (flux1-kontext-dev.safetensors) or a "
                             "diffusers folder; refusing to read other file types.")
        return FluxTransformer2DModel.from_single_file(str(path), config=str(config_dir),
                                                       local_files_only=True, torch_dtype=dtype)
    if path.is_dir():
        sub = "transformer" if (path / "transformer" / "config.json").is_file() else None
        if sub is None and not (path / "config.json").is_file():
            raise InputError(f"{path}: no transformer/config.json or config.json; expected a diffusers "
                             "FLUX.1-Kontext-dev folder or a saved FluxTransformer2DModel.")
        return FluxTransformer2DModel.from_pretrained(str(path), subfolder=sub, local_files_only=True,
                                                      torch_dtype=dtype)
    raise InputError(f"model '{source}' not found: give the path to flux1-kontext-dev.safetensors, a "
                     "diffusers folder, or 'tiny'.")


def diffusers_flux_shape(model: nn.Module) -> FluxShape:
    """The core's FluxShape of a diffusers FluxTransformer2DModel (nodes/ reads ComfyUI's Flux instead)."""
    c = model.config
    hidden = c.num_attention_heads * c.attention_head_dim
    return FluxShape(hidden_size=hidden, depth=c.num_layers, depth_single=c.num_single_layers)


def _csv_targets(path: Path) -> list[str]:
    if not path.is_file():
        raise InputError(f"target CSV {path} not found.")
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or "base_key" not in rows[0]:
        raise InputError(f"{path}: expected a CSV with a 'base_key' column (the official train_modules_csv).")
    # The official loader drops the first component of base_key (e.g. "transformer.").
    return [".".join(r["base_key"].split(".")[1:]) for r in rows if r["base_key"].strip()]


def moe_target_modules(model: nn.Module, spec: str = "attention+mlp") -> list[str]:
    """Diffusers module names of the linears to wrap with MoE-LoRA (see module docstring)."""
    shape = diffusers_flux_shape(model)
    table = diffusers_to_bfl(shape)
    if spec == "attention":
        names = attention_projection_modules(shape)
    elif spec == "attention+mlp":
        names = attention_projection_modules(shape) + [m for m in table if m.endswith(MLP_SUFFIXES) and "blocks." in m]
    elif spec.startswith("csv:"):
        names = _csv_targets(Path(spec[4:]))
    elif spec.startswith("re:"):
        pattern = re.compile(spec[3:])
        names = [m for m in table if pattern.fullmatch(m)]
    else:
        raise InputError(f"unknown target spec {spec!r}; expected 'attention', 'attention+mlp', "
                         "'csv:<file>' or 're:<regex>'.")
    unknown = [n for n in names if n not in table]
    if unknown:
        raise InputError(f"target(s) {unknown[:3]} are not Flux linear layers of this model "
                         f"({shape.depth} double / {shape.depth_single} single blocks).")
    if not names:
        raise InputError(f"target spec {spec!r} selects no layer.")
    return sorted(dict.fromkeys(names), key=list(table).index)


# --------------------------------------------------------------------------- latents and ids

def pack_latents(z: torch.Tensor) -> torch.Tensor:
    """[B, C, h, w] -> [B, (h/2)(w/2), 4C]: Flux's 2x2 patch packing."""
    b, c, h, w = z.shape
    if h % 2 or w % 2:
        raise InputError(f"latent height and width must be even to pack 2x2, got {h}x{w}.")
    return z.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(b, (h // 2) * (w // 2), c * 4)


def unpack_latents(tokens: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Inverse of pack_latents for a latent of size h x w (sampling turns tokens back into latents)."""
    b, _, c4 = tokens.shape
    return tokens.view(b, h // 2, w // 2, c4 // 4, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(b, c4 // 4, h, w)


def image_ids(h: int, w: int, *, index: int = 0, row_offset: int = 0,
              device: torch.device | str = "cpu") -> torch.Tensor:
    """[(h/2)(w/2), 3] position ids of a packed latent: (index, row + row_offset, col).

    index 0 is the generated image, 1 the Kontext content reference, 2 the optional style
    reference (whose rows the official pipeline shifts by +64).
    """
    ids = torch.zeros(h // 2, w // 2, 3, device=device)
    ids[..., 0] = index
    ids[..., 1] = torch.arange(h // 2, device=device)[:, None] + row_offset
    ids[..., 2] = torch.arange(w // 2, device=device)[None, :]
    return ids.reshape(-1, 3)
