import importlib
import os
import sys
from pathlib import Path

import pytest

from styleexpert_core.keys import (FluxShape, attention_projection_modules, block_kind, diffusers_to_bfl,
                                   diffusers_to_bfl_params, is_flux_linear)

SHAPES = [FluxShape(64, 2, 3), FluxShape(3072, 19, 38), FluxShape(48, 1, 1, mlp_ratio=2.0)]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"h{s.hidden_size}")
def test_table_covers_every_block_and_slices_tile_fused_layers(shape):
    table = diffusers_to_bfl(shape)
    assert len(table) == 14 * shape.depth + 6 * shape.depth_single + 10
    # Slices of each fused layer tile its outputs exactly once: q|k|v and q|k|v|mlp.
    fused: dict[str, list[tuple[int, int]]] = {}
    for target in table.values():
        if target.offset is not None:
            fused.setdefault(target.module, []).append((target.offset, target.length))
    h = shape.hidden_size
    for module, parts in fused.items():
        parts.sort()
        assert parts[0][0] == 0
        assert all(a[0] + a[1] == b[0] for a, b in zip(parts, parts[1:]))
        end = parts[-1][0] + parts[-1][1]
        assert end == (3 * h + shape.mlp_hidden if module.endswith("linear1") else 3 * h)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"h{s.hidden_size}")
def test_round_trip_bfl_and_back(shape):
    table = diffusers_to_bfl(shape)
    inverse = {(t.module, t.offset): m for m, t in table.items()}
    assert len(inverse) == len(table)  # injective: nothing maps onto the same slice twice
    for module, target in table.items():
        assert inverse[(target.module, target.offset)] == module
        assert is_flux_linear(module)


def test_real_flux_targets():
    shape = FluxShape.FLUX_DEV
    table = diffusers_to_bfl(shape)
    t = table["single_transformer_blocks.37.proj_mlp"]
    assert (t.module, t.offset, t.length) == ("single_blocks.37.linear1", 9216, 12288)
    t = table["transformer_blocks.18.attn.add_v_proj"]
    assert (t.module, t.offset, t.length) == ("double_blocks.18.txt_attn.qkv", 6144, 3072)
    assert table["norm_out.linear"].transform == "swap_halves"
    assert len(attention_projection_modules(shape)) == 19 * 8 + 38 * 3
    assert "transformer_blocks.19.attn.to_q" not in table


def test_module_names_and_block_kinds():
    assert is_flux_linear("transformer_blocks.40.attn.to_q") and not is_flux_linear("transformer_blocks.0.attn.to_qq")
    assert [block_kind(m) for m in ("transformer_blocks.3.ff.net.2", "single_transformer_blocks.0.proj_out",
                                    "norm_out.linear")] == ["double", "single", None]


def _comfy_utils():
    root = Path(os.environ.get("COMFYUI_ROOT", Path.home() / ".cache/comfyui/ComfyUI"))
    if not (root / "comfy" / "utils.py").is_file():
        pytest.skip(f"SKIPPED ComfyUI key-table parity: no ComfyUI checkout at {root} "
                    "(run ../shared/tools/comfyui-checkout GITDIR, or set COMFYUI_ROOT)")
    if str(root) not in sys.path:
        sys.path.append(str(root))  # appended: never shadow our own packages
    from comfy.cli_args import args
    args.cpu = True
    return importlib.import_module("comfy.utils")


@pytest.mark.comfyui
@pytest.mark.parametrize("shape", SHAPES[:2], ids=lambda s: f"h{s.hidden_size}")
def test_agrees_with_comfyui_flux_to_diffusers_on_every_entry(shape):
    utils = _comfy_utils()
    if shape.mlp_ratio != 4.0:
        pytest.skip("ComfyUI hard-codes mlp_ratio 4")
    comfy_map = utils.flux_to_diffusers(
        {"depth": shape.depth, "depth_single_blocks": shape.depth_single, "hidden_size": shape.hidden_size},
        output_prefix="diffusion_model.")
    ours = diffusers_to_bfl_params(shape)
    comfy_map = {k: v for k, v in comfy_map.items() if not k.startswith("controlnet_")}  # ControlNet only
    assert set(ours) == set(comfy_map)
    for key, (bfl_key, target) in ours.items():
        value = comfy_map[key]
        if isinstance(value, str):
            assert value == f"diffusion_model.{bfl_key}" and target.offset is None and target.transform is None, key
        elif len(value) == 3:  # (key, None, fn): swap_scale_shift
            assert value[0] == f"diffusion_model.{bfl_key}" and target.transform == "swap_halves", key
        else:
            assert value == (f"diffusion_model.{bfl_key}", (0, target.offset, target.length)), key


def test_block_linear_features_match_fused_slices():
    from styleexpert_core.keys import block_linear_features
    shape = FluxShape(64, 2, 2)
    assert block_linear_features("single_transformer_blocks.1.proj_out", shape) == (320, 64)
    assert block_linear_features("transformer_blocks.0.norm1.linear", shape) == (64, 384)
    for module, target in diffusers_to_bfl(shape).items():
        if target.offset is not None:
            assert block_linear_features(module, shape)[1] == target.length
