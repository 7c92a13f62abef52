"""Tensors of a safetensors file as views into a read-only memory map (no copy, no pickle).

``safe_open(...).get_tensor`` copies each tensor into process memory. For the caches that is
the wrong trade at scale (T5 embeddings of 100k prompts are ~105 GB in bf16): here the file is
mapped once with ``torch.UntypedStorage.from_file(shared=False)`` (a private, copy-on-write
``mmap``), and every tensor is a view into it. Pages are read on first touch and live in the
OS page cache, which all ranks and DataLoader workers on a node share.

Only the safetensors layout is parsed: an 8-byte little-endian header length, a JSON header
``{name: {dtype, shape, data_offsets}, "__metadata__": {...}}``, then the raw bytes.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import torch

from .errors import InputError

DTYPES = {"BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32, "F64": torch.float64,
          "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
          "BOOL": torch.bool}


def map_safetensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(name -> tensor view into the mapped file, metadata) of one safetensors file."""
    path = Path(path)
    size = path.stat().st_size
    with path.open("rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
        if header_len > size - 8:
            raise InputError(f"{path}: not a safetensors file (header length {header_len} > file size {size}).")
        header = json.loads(f.read(header_len))
    metadata = header.pop("__metadata__", None) or {}
    data = torch.empty(0, dtype=torch.uint8).set_(torch.UntypedStorage.from_file(str(path), False, size))
    start = 8 + header_len
    tensors = {}
    for name, info in header.items():
        if info["dtype"] not in DTYPES:
            raise InputError(f"{path}: tensor {name} has unsupported dtype {info['dtype']}.")
        begin, end = info["data_offsets"]
        raw = data[start + begin: start + end]
        tensors[name] = raw.view(DTYPES[info["dtype"]]).view(info["shape"])
    return tensors, metadata
