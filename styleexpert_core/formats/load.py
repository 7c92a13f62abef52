"""load_checkpoint: any supported file, read once and dispatched on what its tensors are."""

from __future__ import annotations

import dataclasses
import os

from ..errors import CheckpointError
from .checkpoint import StyleExpertCheckpoint
from .files import detect_format, read_tensors
from .native import native_from_tensors
from .official import OFFICIAL_INFO, official_projector, official_to_layers, read_official_projector


def load_checkpoint(path: str | os.PathLike, projector_path: str | os.PathLike | None = None) -> StyleExpertCheckpoint:
    """A native file, an official MoE file or an official projector file; `projector_path` adds the
    official projector file to a checkpoint that has none."""
    tensors, metadata = read_tensors(path)
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
    if ckpt.projector is not None:
        raise CheckpointError(f"{path} already holds a style projector; do not pass a second one.")
    projector, config = read_official_projector(projector_path)
    return dataclasses.replace(ckpt, projector=projector, projector_config=config)
