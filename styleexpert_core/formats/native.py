"""The native format: one self-describing safetensors file.

    moe.<diffusers module>.{A,B,shared_A,shared_B,gate}   expert layers (optional)
    projector.<projector key>                               style projector (optional)
    metadata format=styleexpert, styleexpert.version / .moe / .projector / .module_naming /
             .base_model / .style_token_concat / .source   (JSON values)
"""

from __future__ import annotations

import json
import os

import torch

from ..config import MoEConfig, ProjectorConfig
from ..errors import CheckpointError, StyleExpertError
from ..moe_lora import TENSOR_NAMES
from ..projector import build_projector, projector_config_from_state_dict
from .checkpoint import INFO_DEFAULTS, StyleExpertCheckpoint, expert_layers
from .files import FORMAT_NAME, detect_format, read_safetensors, write_safetensors

FORMAT_VERSION = 2  # 2 added the MoE config's routing_precision, which version-1 readers would refuse
READABLE_VERSIONS = ("1", "2")  # version 1 has no routing_precision: those experts route in fp32
MOE_PREFIX = "moe."
PROJECTOR_PREFIX = "projector."


def save_native(ckpt: StyleExpertCheckpoint, path: str | os.PathLike, *, dtype: torch.dtype | None = None) -> None:
    """Write a native file (atomically: a crash never leaves a half-written checkpoint)."""
    tensors: dict[str, torch.Tensor] = {}
    for module, layer in ckpt.layers.items():
        for name, t in layer.as_dict().items():
            tensors[f"{MOE_PREFIX}{module}.{name}"] = t
    for key, t in (ckpt.projector or {}).items():
        tensors[f"{PROJECTOR_PREFIX}{key}"] = t
    if not tensors:
        raise StyleExpertError("nothing to save: the checkpoint has neither expert layers nor a projector.")
    tensors = {k: (v.to(dtype) if dtype else v).detach().cpu().contiguous() for k, v in tensors.items()}
    metadata = {
        "format": FORMAT_NAME,
        "styleexpert.version": str(FORMAT_VERSION),
        "styleexpert.moe": json.dumps(ckpt.config.to_dict() if ckpt.config else None),
        "styleexpert.projector": json.dumps(ckpt.projector_config.to_dict() if ckpt.projector_config else None),
        **{f"styleexpert.{k}": v for k, v in ckpt.info.items()},
    }
    write_safetensors(tensors, path, metadata)


def _read_metadata(metadata: dict[str, str], source: str) -> tuple[dict | None, dict | None, dict[str, str]]:
    """(MoE config dict, projector config dict, info) from a native file's metadata."""
    version = metadata.get("styleexpert.version")
    if version not in READABLE_VERSIONS:
        raise CheckpointError(
            f"{source}: StyleExpert format version {version!r}; this version of the pack reads "
            f"versions {', '.join(READABLE_VERSIONS)}. Update the node pack.")
    try:
        moe = json.loads(metadata.get("styleexpert.moe", "null"))
        proj = json.loads(metadata.get("styleexpert.projector", "null"))
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{source}: corrupt StyleExpert metadata ({e}).") from None
    info = {k.removeprefix("styleexpert."): v for k, v in metadata.items()
            if k.startswith("styleexpert.") and k.removeprefix("styleexpert.") in INFO_DEFAULTS}
    return moe, proj, info


def _split_tensors(tensors: dict[str, torch.Tensor], source: str):
    """(expert tensors grouped by module, projector tensors) of a native file; any other key is an error."""
    grouped: dict[str, dict[str, torch.Tensor]] = {}
    projector: dict[str, torch.Tensor] = {}
    for key, t in tensors.items():
        if key.startswith(MOE_PREFIX):
            module, _, name = key[len(MOE_PREFIX):].rpartition(".")
            if name not in TENSOR_NAMES or not module:
                raise CheckpointError(f"{source}: unknown expert tensor '{key}'; expected "
                                      f"'moe.<module>.{{{','.join(TENSOR_NAMES)}}}'.")
            grouped.setdefault(module, {})[name] = t
        elif key.startswith(PROJECTOR_PREFIX):
            projector[key[len(PROJECTOR_PREFIX):]] = t
        else:
            raise CheckpointError(f"{source}: unknown key '{key}'; native files hold only 'moe.*' and "
                                  "'projector.*' tensors.")
    return grouped, projector


def _config_from_metadata(cls, data, key: str, source: str):
    """MoEConfig/ProjectorConfig from one metadata field (None when absent), or an error naming
    the file and the field."""
    if data is None:
        return None
    try:
        if not isinstance(data, dict):
            raise StyleExpertError(f"expected a JSON object, got {data!r}")
        return cls.from_dict(data)
    except (TypeError, ValueError) as e:  # StyleExpertError is a ValueError
        raise CheckpointError(f"{source}: metadata '{key}' is not a valid {cls.__name__} ({e}); the file "
                              "was not written by StyleExpert or was edited by hand.") from None


def native_from_tensors(tensors: dict[str, torch.Tensor], metadata: dict[str, str],
                        source: str) -> StyleExpertCheckpoint:
    """The checkpoint a native file's tensors and metadata describe, every key accounted for."""
    moe, proj, info = _read_metadata(metadata, source)
    if not tensors:
        raise CheckpointError(f"{source}: the file holds neither expert layers nor a style projector (no tensors); "
                              "it is incomplete. Export or convert it again.")
    config = _config_from_metadata(MoEConfig, moe, "styleexpert.moe", source)
    grouped, projector = _split_tensors(tensors, source)
    if grouped and config is None:
        raise CheckpointError(f"{source}: expert tensors present but no 'styleexpert.moe' metadata.")
    layers = expert_layers(grouped, config, source) if grouped else {}
    projector_config = None
    if projector:
        projector_config = _config_from_metadata(ProjectorConfig, proj, "styleexpert.projector", source)
        if projector_config is None:
            raise CheckpointError(f"{source}: projector tensors present but no 'styleexpert.projector' metadata.")
        _check_projector(projector, projector_config, source)
    return StyleExpertCheckpoint(config, layers, projector or None, projector_config, info)


def _check_projector(projector: dict[str, torch.Tensor], config: ProjectorConfig, source: str) -> None:
    inferred = projector_config_from_state_dict(projector, source)
    # Layer order is part of the meaning; compare as sets here, order comes from metadata.
    if inferred.to_dict() | {"layers": sorted(inferred.layers)} != config.to_dict() | {"layers": sorted(config.layers)}:
        raise CheckpointError(f"{source}: projector tensors describe {inferred}, metadata says {config}.")
    build_projector(projector, source, config=config)  # strict key/shape check, in the stored layer order


def load_native(path: str | os.PathLike) -> StyleExpertCheckpoint:
    tensors, metadata = read_safetensors(path)
    if metadata.get("format") != FORMAT_NAME:
        detect_format(tensors, metadata)  # raises with the list of expected formats if unknown
        raise CheckpointError(f"{path}: this is an official StyleExpert release file, not a native one; "
                              "load it with load_official or convert it with `convert-official`.")
    return native_from_tensors(tensors, metadata, str(path))
