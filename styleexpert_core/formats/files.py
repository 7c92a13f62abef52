"""Reading and writing tensor files safely, and telling which StyleExpert format a file holds.

Pickles are never unpickled: safetensors files are read as such, and a `.pt` state dict (the
official projector) only through torch.load(weights_only=True).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..errors import CheckpointError, StyleExpertError
from ..projector import projector_config_from_state_dict, strip_official_prefix

FORMAT_NAME = "styleexpert"  # metadata `format` of a native file
OFFICIAL_MARK = ".lora_layer."  # in every key of an official MoE file
PICKLE_MAGIC = (b"PK\x03\x04", b"\x80")  # torch zip archive, raw pickle protocol 2+
STATE_DICT_SUFFIXES = (".pt", ".pth", ".bin")
WRAPPER_KEYS = ("model_state_dict", "state_dict", "model")  # how training scripts nest state dicts


def _check_not_pickle(path: Path) -> None:
    with open(path, "rb") as f:
        head = f.read(9)
    # A safetensors file is an 8-byte header length followed by a JSON object.
    if head[8:9] != b"{" and head.startswith(PICKLE_MAGIC):
        raise CheckpointError(
            f"{path}: this is a pickled PyTorch file, which can run arbitrary code when loaded; "
            "refusing to unpickle it. Convert it to .safetensors (StyleExpert files are safetensors).")
    if len(head) < 9:
        raise CheckpointError(f"{path}: file is empty or truncated ({len(head)} bytes); download it again.")


def read_safetensors(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """All tensors (on CPU) and the metadata of a safetensors file, with clear errors."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: file not found.")
    _check_not_pickle(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(
            f"{path}: not a readable .safetensors file ({e}); it may be truncated or corrupt.") from None
    return tensors, metadata


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"{path}: file not found.")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # the restricted unpickler raises many types
        raise CheckpointError(
            f"{path}: cannot be read as a plain tensor state dict with weights_only=True ({e}). "
            "Only tensor dictionaries are accepted; convert the file to .safetensors.") from None
    for key in WRAPPER_KEYS:
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: expected a dict of tensors (optionally under one of {WRAPPER_KEYS}).")
    return obj


def read_tensors(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a .safetensors file, or of a .pt/.pth/.bin state dict (no metadata)."""
    path = Path(path)
    if path.suffix.lower() in STATE_DICT_SUFFIXES:
        return _read_state_dict(path), {}
    return read_safetensors(path)


def read_tensor_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a .safetensors file, or of a .pt/.pth/.bin state dict read with weights_only=True
    (optionally nested under one of WRAPPER_KEYS). Used for the official projector and for
    evaluation encoders' local weights."""
    return read_tensors(path)[0]


def write_safetensors(tensors: dict[str, torch.Tensor], path: str | os.PathLike,
                      metadata: dict[str, str]) -> None:
    """Write atomically: a crash never leaves a half-written file under the final name."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    os.replace(tmp, path)


def detect_format(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> str:
    """'native', 'official-moe' or 'official-projector'; anything else is an error."""
    if metadata.get("format") == FORMAT_NAME:
        return "native"
    if tensors and all(OFFICIAL_MARK in k for k in tensors):
        return "official-moe"
    try:
        projector_config_from_state_dict(strip_official_prefix(tensors), "file")
        return "official-projector"
    except StyleExpertError:
        pass
    sample = sorted(tensors)[:3]
    raise CheckpointError(
        f"not a StyleExpert checkpoint (keys like {sample}). Expected a native StyleExpert file "
        "(metadata format=styleexpert), an official MoE file (keys '<module>.lora_layer.loraA', ...) "
        "or an official projector file (keys 'embedding_linears.-2.0.weight', ...).")
