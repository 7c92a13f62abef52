"""Reading and writing tensor files safely, and telling which StyleExpert format a file holds.

Pickles are never unpickled: safetensors files are read as such, and a `.pt` state dict (the
official projector) only through torch.load(weights_only=True). Tensors read here own their
memory (never a view of a memory-mapped file), so a file changed or cut on disk afterwards cannot
crash the process (SIGBUS), and every floating-point tensor read is finite.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save_file

from ..errors import CheckpointError, StyleExpertError
from ..finite import check_finite_tensors
from ..projector import projector_config_from_state_dict, strip_official_prefix
from ..safe_write import write_atomically

FORMAT_NAME = "styleexpert"  # metadata `format` of a native file
OFFICIAL_MARK = ".lora_layer."  # in every key of an official MoE file
ZIP_MAGIC = b"PK\x03\x04"  # torch.save's zip archive
PICKLE_PROTOCOLS = range(2, 6)  # a raw pickle of protocol 2+ starts with PROTO (0x80) and the protocol
STATE_DICT_SUFFIXES = (".pt", ".pth", ".bin")
WRAPPER_KEYS = ("model_state_dict", "state_dict", "model")  # how training scripts nest state dicts


def _check_not_pickle(path: Path) -> None:
    with open(path, "rb") as f:
        head = f.read(9)
    # A safetensors file is an 8-byte header length followed by a JSON object.
    pickled = head.startswith(ZIP_MAGIC) or (head[:1] == b"\x80" and len(head) > 1 and head[1] in PICKLE_PROTOCOLS)
    if head[8:9] != b"{" and pickled:
        raise CheckpointError(
            f"{path}: this is a pickled PyTorch file, which can run arbitrary code when loaded; "
            "refusing to unpickle it. Convert it to .safetensors (StyleExpert files are safetensors).")
    if len(head) < 9:
        raise CheckpointError(f"{path}: file is empty or truncated ({len(head)} bytes); download it again.")


def _read_owned(path: Path, mmap: bool) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors that own their memory: copied out of the memory map, or (mmap=False, ComfyUI's
    --disable-mmap) parsed from the file's bytes read in one go."""
    if mmap:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return {k: f.get_tensor(k).clone() for k in f.keys()}, dict(f.metadata() or {})
    data = path.read_bytes()
    header = json.loads(data[8:8 + int.from_bytes(data[:8], "little")]) if len(data) >= 8 else {}
    return load_safetensors_bytes(data), dict(header.get("__metadata__") or {})


def read_safetensors(path: str | os.PathLike, *, mmap: bool = True) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """All tensors (on CPU, owning their memory, finite) and the metadata of a safetensors file,
    with clear errors."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: file not found.")
    _check_not_pickle(path)
    try:
        tensors, metadata = _read_owned(path, mmap)
    except (SafetensorError, OSError, ValueError, RuntimeError, AttributeError) as e:
        raise CheckpointError(
            f"{path}: not a readable .safetensors file ({e}); it may be truncated or corrupt.") from None
    check_finite_tensors(tensors, str(path))
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
    check_finite_tensors(obj, str(path))
    return obj


def read_tensors(path: str | os.PathLike, *, mmap: bool = True) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a .safetensors file, or of a .pt/.pth/.bin state dict (no metadata)."""
    path = Path(path)
    if path.suffix.lower() in STATE_DICT_SUFFIXES:
        return _read_state_dict(path), {}
    return read_safetensors(path, mmap=mmap)


def tensor_file_keys(path: str | os.PathLike) -> set[str]:
    """The tensor names of a file without reading its tensors: a safetensors header, or the keys of a
    .pt/.pth/.bin state dict (memory-mapped, weights_only)."""
    path = Path(path)
    if path.suffix.lower() not in STATE_DICT_SUFFIXES:
        _check_not_pickle(path)
        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                return set(f.keys())
        except (SafetensorError, OSError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"{path}: not a readable .safetensors file ({e}).") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # the restricted unpickler raises many types
        raise CheckpointError(f"{path}: cannot be read as a tensor state dict ({e}).") from None
    for key in WRAPPER_KEYS:
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    return set(obj) if isinstance(obj, dict) else set()


def read_tensor_file(path: str | os.PathLike, *, mmap: bool = True) -> dict[str, torch.Tensor]:
    """Tensors of a .safetensors file, or of a .pt/.pth/.bin state dict read with weights_only=True
    (optionally nested under one of WRAPPER_KEYS). Used for the official projector and for
    evaluation encoders' local weights."""
    return read_tensors(path, mmap=mmap)[0]


def write_safetensors(tensors: dict[str, torch.Tensor], path: str | os.PathLike,
                      metadata: dict[str, str]) -> None:
    """Write atomically: a crash never leaves a half-written file under the final name, nor a temp file."""
    write_atomically(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


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
