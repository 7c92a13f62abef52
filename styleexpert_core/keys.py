"""The one table of Flux module names: diffusers <-> BFL/ComfyUI, including fused slices.

Checkpoints name layers by diffusers module path. ComfyUI's Flux (BFL naming) fuses
q|k|v into one `qkv` linear per stream, and q|k|v|mlp_in into a single block's `linear1`.
Everything else in the project (patch keys, hook output slices, baked LoRA names,
training target lists) derives from the tables below.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

from .errors import StyleExpertError

# (diffusers module, BFL module, part of the fused BFL output). "{i}" is the block index.
# Parts: "all" = the whole layer; q/k/v = thirds of the attention width H; mlp = the
# mlp_ratio*H rows after q|k|v in a single block's linear1.
DOUBLE_BLOCK_LINEARS = (
    ("transformer_blocks.{i}.attn.to_q", "double_blocks.{i}.img_attn.qkv", "q"),
    ("transformer_blocks.{i}.attn.to_k", "double_blocks.{i}.img_attn.qkv", "k"),
    ("transformer_blocks.{i}.attn.to_v", "double_blocks.{i}.img_attn.qkv", "v"),
    ("transformer_blocks.{i}.attn.add_q_proj", "double_blocks.{i}.txt_attn.qkv", "q"),
    ("transformer_blocks.{i}.attn.add_k_proj", "double_blocks.{i}.txt_attn.qkv", "k"),
    ("transformer_blocks.{i}.attn.add_v_proj", "double_blocks.{i}.txt_attn.qkv", "v"),
    ("transformer_blocks.{i}.attn.to_out.0", "double_blocks.{i}.img_attn.proj", "all"),
    ("transformer_blocks.{i}.attn.to_add_out", "double_blocks.{i}.txt_attn.proj", "all"),
    ("transformer_blocks.{i}.ff.net.0.proj", "double_blocks.{i}.img_mlp.0", "all"),
    ("transformer_blocks.{i}.ff.net.2", "double_blocks.{i}.img_mlp.2", "all"),
    ("transformer_blocks.{i}.ff_context.net.0.proj", "double_blocks.{i}.txt_mlp.0", "all"),
    ("transformer_blocks.{i}.ff_context.net.2", "double_blocks.{i}.txt_mlp.2", "all"),
    ("transformer_blocks.{i}.norm1.linear", "double_blocks.{i}.img_mod.lin", "all"),
    ("transformer_blocks.{i}.norm1_context.linear", "double_blocks.{i}.txt_mod.lin", "all"),
)
SINGLE_BLOCK_LINEARS = (
    ("single_transformer_blocks.{i}.attn.to_q", "single_blocks.{i}.linear1", "q"),
    ("single_transformer_blocks.{i}.attn.to_k", "single_blocks.{i}.linear1", "k"),
    ("single_transformer_blocks.{i}.attn.to_v", "single_blocks.{i}.linear1", "v"),
    ("single_transformer_blocks.{i}.proj_mlp", "single_blocks.{i}.linear1", "mlp"),
    ("single_transformer_blocks.{i}.proj_out", "single_blocks.{i}.linear2", "all"),
    ("single_transformer_blocks.{i}.norm.linear", "single_blocks.{i}.modulation.lin", "all"),
)
GLOBAL_LINEARS = (
    ("x_embedder", "img_in", "all"),
    ("context_embedder", "txt_in", "all"),
    ("time_text_embed.timestep_embedder.linear_1", "time_in.in_layer", "all"),
    ("time_text_embed.timestep_embedder.linear_2", "time_in.out_layer", "all"),
    ("time_text_embed.text_embedder.linear_1", "vector_in.in_layer", "all"),
    ("time_text_embed.text_embedder.linear_2", "vector_in.out_layer", "all"),
    ("time_text_embed.guidance_embedder.linear_1", "guidance_in.in_layer", "all"),
    ("time_text_embed.guidance_embedder.linear_2", "guidance_in.out_layer", "all"),
    ("proj_out", "final_layer.linear", "all"),
    # diffusers stores (scale, shift), BFL (shift, scale): output halves swap.
    ("norm_out.linear", "final_layer.adaLN_modulation.1", "swap_halves"),
)
# RMSNorm scales: diffusers `<module>.weight` is BFL `<module>.scale`.
DOUBLE_BLOCK_NORMS = (
    ("transformer_blocks.{i}.attn.norm_q", "double_blocks.{i}.img_attn.norm.query_norm"),
    ("transformer_blocks.{i}.attn.norm_k", "double_blocks.{i}.img_attn.norm.key_norm"),
    ("transformer_blocks.{i}.attn.norm_added_q", "double_blocks.{i}.txt_attn.norm.query_norm"),
    ("transformer_blocks.{i}.attn.norm_added_k", "double_blocks.{i}.txt_attn.norm.key_norm"),
)
SINGLE_BLOCK_NORMS = (
    ("single_transformer_blocks.{i}.attn.norm_q", "single_blocks.{i}.norm.query_norm"),
    ("single_transformer_blocks.{i}.attn.norm_k", "single_blocks.{i}.norm.key_norm"),
)


@dataclass(frozen=True)
class FluxShape:
    """The dimensions the key table depends on."""

    hidden_size: int
    depth: int
    depth_single: int
    mlp_ratio: float = 4.0

    FLUX_DEV: ClassVar["FluxShape"]

    @property
    def mlp_hidden(self) -> int:
        return int(self.hidden_size * self.mlp_ratio)


FluxShape.FLUX_DEV = FluxShape(hidden_size=3072, depth=19, depth_single=38)


@dataclass(frozen=True)
class BflTarget:
    """Where a diffusers linear lives in the BFL model: module, output rows, output transform."""

    module: str
    offset: int | None  # first output row inside a fused layer; None = whole layer
    length: int | None
    transform: str | None = None  # "swap_halves" for norm_out / adaLN_modulation


def _part_slice(part: str, shape: FluxShape) -> tuple[int | None, int | None, str | None]:
    h = shape.hidden_size
    return {
        "all": (None, None, None),
        "q": (0, h, None),
        "k": (h, h, None),
        "v": (2 * h, h, None),
        "mlp": (3 * h, shape.mlp_hidden, None),
        "swap_halves": (None, None, "swap_halves"),
    }[part]


def diffusers_to_bfl(shape: FluxShape) -> dict[str, BflTarget]:
    """Every Flux linear: diffusers module path -> BflTarget."""
    table: dict[str, BflTarget] = {}
    for rows, count in ((DOUBLE_BLOCK_LINEARS, shape.depth), (SINGLE_BLOCK_LINEARS, shape.depth_single)):
        for i in range(count):
            for src, dst, part in rows:
                table[src.format(i=i)] = BflTarget(dst.format(i=i), *_part_slice(part, shape))
    for src, dst, part in GLOBAL_LINEARS:
        table[src] = BflTarget(dst, *_part_slice(part, shape))
    return table


def diffusers_to_bfl_params(shape: FluxShape) -> dict[str, tuple[str, BflTarget]]:
    """Parameter-level view: diffusers param key -> (BFL param key, target). Includes norms."""
    params: dict[str, tuple[str, BflTarget]] = {}
    for module, target in diffusers_to_bfl(shape).items():
        for end in ("weight", "bias"):
            params[f"{module}.{end}"] = (f"{target.module}.{end}", target)
    for rows, count in ((DOUBLE_BLOCK_NORMS, shape.depth), (SINGLE_BLOCK_NORMS, shape.depth_single)):
        for i in range(count):
            for src, dst in rows:
                params[f"{src.format(i=i)}.weight"] = (f"{dst.format(i=i)}.scale", BflTarget(dst.format(i=i), None, None))
    return params


def attention_projection_modules(shape: FluxShape) -> list[str]:
    """Every attention projection of double and single blocks (the ``attention`` target set; training's
    default ``attention+mlp`` adds the feed-forwards)."""
    attn = {"to_q", "to_k", "to_v", "add_q_proj", "add_k_proj", "add_v_proj", "to_out.0", "to_add_out"}
    return [m for m in diffusers_to_bfl(shape) if m.rsplit("attn.", 1)[-1] in attn and ".attn." in m]


def block_kind(module: str) -> str | None:
    """"double" / "single" for a diffusers-named block layer, None for the global ones."""
    if module.startswith("transformer_blocks."):
        return "double"
    if module.startswith("single_transformer_blocks."):
        return "single"
    return None


def _template_pattern(template: str) -> re.Pattern[str]:
    return re.compile(re.escape(template).replace(r"\{i\}", r"(\d+)"))


_MODULE_PATTERNS = tuple(
    _template_pattern(src) for src, _, _ in DOUBLE_BLOCK_LINEARS + SINGLE_BLOCK_LINEARS + GLOBAL_LINEARS)


def is_flux_linear(module: str) -> bool:
    """True for any diffusers-named Flux linear layer, whatever the model's depth."""
    return any(p.fullmatch(module) for p in _MODULE_PATTERNS)


# (in, out) of block linears, in units of H (hidden) and M (mlp hidden), keyed by module suffix.
_BLOCK_FEATURES = {
    "attn.to_q": ("H", "H"), "attn.to_k": ("H", "H"), "attn.to_v": ("H", "H"),
    "attn.add_q_proj": ("H", "H"), "attn.add_k_proj": ("H", "H"), "attn.add_v_proj": ("H", "H"),
    "attn.to_out.0": ("H", "H"), "attn.to_add_out": ("H", "H"),
    "ff.net.0.proj": ("H", "M"), "ff.net.2": ("M", "H"),
    "ff_context.net.0.proj": ("H", "M"), "ff_context.net.2": ("M", "H"),
    "norm1.linear": ("H", "6H"), "norm1_context.linear": ("H", "6H"),
    "proj_mlp": ("H", "M"), "proj_out": ("H+M", "H"), "norm.linear": ("H", "3H"),
}


def block_linear_features(module: str, shape: FluxShape) -> tuple[int, int]:
    """(in_features, out_features) of a double/single block linear in diffusers naming."""
    suffix = module.split(".", 2)[2]
    if not module.startswith(("transformer_blocks.", "single_transformer_blocks.")) or suffix not in _BLOCK_FEATURES:
        raise StyleExpertError(f"'{module}' is not a Flux block linear in diffusers naming.")
    h, m = shape.hidden_size, shape.mlp_hidden
    units = {"H": h, "M": m, "H+M": h + m, "3H": 3 * h, "6H": 6 * h}
    d_in, d_out = _BLOCK_FEATURES[suffix]
    return units[d_in], units[d_out]
