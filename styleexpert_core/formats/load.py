"""load_checkpoint: any supported file, read once and dispatched on what its tensors are."""

from __future__ import annotations

import dataclasses
import os

from ..errors import CheckpointError
from .checkpoint import StyleExpertCheckpoint
from .files import detect_format, read_tensors
from .native import native_from_tensors
from .official import OFFICIAL_INFO, official_projector, official_to_layers, read_official_projector


def load_checkpoint(path: str | os.PathLike, projector_path: str | os.PathLike | None = None, *,
                    mmap: bool = True) -> StyleExpertCheckpoint:
    """A native file, an official MoE file or an official projector file; `projector_path` adds the
    official projector file to a checkpoint that has none. mmap=False reads the files without
    memory-mapping them (the tensors own their memory either way)."""
    tensors, metadata = read_tensors(path, mmap=mmap)
    source = str(path)
    kind = detect_format(tensors, metadata)
    if kind == "native":
        ckpt = native_from_tensors(tensors, metadata, source)
    elif kind == "official-moe":
        ckpt = StyleExpertCheckpoint(*official_to_layers(tensors, source), info=dict(OFFICIAL_INFO))
    else:
        projector, config = official_projector(tensors, source)
        ckpt = StyleExpertCheckpoint(projector=projector, projector_config=config, info=dict(OFFICIAL_INFO))
    if projector_path is None:
        return ckpt
    if kind == "official-projector":
        raise CheckpointError(f"{path} is an official style projector file; pick it as the projector and the "
                              "MoE file (or a native StyleExpert file) as the checkpoint.")
    if ckpt.projector is not None:
        raise CheckpointError(f"{path} already holds a style projector; do not pass a second one.")
    projector, config = read_official_projector(projector_path, mmap=mmap)
    return dataclasses.replace(ckpt, projector=projector, projector_config=config)
