"""The official release (HH-LG/StyleExpert), read losslessly.

    MoE file:       [transformer.]<diffusers module>.lora_layer.{loraA,loraB,shared_A,shared_B,cond_gate.weight}
    projector file: [proj_model.]embedding_linears..., as .safetensors or a .pt state dict
"""

from __future__ import annotations

import os

import torch

from ..config import MoEConfig, ProjectorConfig
from ..errors import CheckpointError, StyleExpertError
from ..moe_lora import ExpertTensors
from ..projector import build_projector, projector_config_from_state_dict, strip_official_prefix
from .checkpoint import StyleExpertCheckpoint, expert_layers
from .files import OFFICIAL_MARK, detect_format, read_safetensors, read_tensor_file

OFFICIAL_TENSORS = {"loraA": "A", "loraB": "B", "shared_A": "shared_A", "shared_B": "shared_B",
                    "cond_gate.weight": "gate"}
OFFICIAL_TOP_K = 2  # not stored in the release; the official inference config uses 2
OFFICIAL_PRECISION = "bf16"  # the release runs projector, router and experts in bf16
OFFICIAL_INFO = {"source": "official", "text_length": "128"}  # its pipeline's max_sequence_length


def official_to_layers(tensors: dict[str, torch.Tensor], source: str,
                       top_k: int = OFFICIAL_TOP_K) -> tuple[MoEConfig, dict[str, ExpertTensors]]:
    """(MoEConfig, layers) of an official MoE file's tensors; the sizes come from the tensors."""
    grouped: dict[str, dict[str, torch.Tensor]] = {}
    for key, t in tensors.items():
        module, mark, name = key.partition(OFFICIAL_MARK)
        if not mark or name not in OFFICIAL_TENSORS:
            raise CheckpointError(
                f"{source}: unknown key '{key}'; official MoE keys look like "
                f"'<module>{OFFICIAL_MARK}{{{','.join(OFFICIAL_TENSORS)}}}'.")
        module = module.removeprefix("transformer.")
        grouped.setdefault(module, {})[OFFICIAL_TENSORS[name]] = t
    if not grouped:
        raise CheckpointError(f"{source}: no expert layers found.")
    first = next(iter(grouped.values()))
    if "A" not in first or "gate" not in first or first["A"].ndim != 3:
        raise CheckpointError(f"{source}: cannot read the expert count and rank (need loraA [E, r, in] "
                              "and cond_gate.weight [E, cond_dim]).")
    e, r, _ = first["A"].shape
    config = MoEConfig(num_experts=e, rank=r, top_k=top_k, cond_dim=first["gate"].shape[1],
                       alignment="official", scale_rule="official", routing_precision=OFFICIAL_PRECISION)
    return config, expert_layers(grouped, config, source)


def official_projector(tensors: dict[str, torch.Tensor],
                       source: str) -> tuple[dict[str, torch.Tensor], ProjectorConfig]:
    """(projector tensors without the `proj_model.` prefix, their configuration), strictly checked."""
    if tensors and all(OFFICIAL_MARK in k for k in tensors):
        raise CheckpointError(f"{source}: this is an official MoE file (expert layers), not a style projector "
                              "file; pick it as the checkpoint and the projector file as the projector.")
    state = strip_official_prefix(tensors)
    config = projector_config_from_state_dict(state, source)
    build_projector(state, source, config=config)  # strict key/shape check
    return state, config


def read_official_projector(path: str | os.PathLike, *,
                            mmap: bool = True) -> tuple[dict[str, torch.Tensor], ProjectorConfig]:
    return official_projector(read_tensor_file(path, mmap=mmap), str(path))


def load_official(moe_path: str | os.PathLike | None, projector_path: str | os.PathLike | None = None,
                  *, top_k: int = OFFICIAL_TOP_K, mmap: bool = True) -> StyleExpertCheckpoint:
    """The official release, losslessly: MoE file and/or projector file."""
    if moe_path is None and projector_path is None:
        raise StyleExpertError("give the official MoE file, the projector file, or both.")
    config, layers = None, {}
    if moe_path is not None:
        tensors, metadata = read_safetensors(moe_path, mmap=mmap)
        if detect_format(tensors, metadata) != "official-moe":
            raise CheckpointError(f"{moe_path}: not an official StyleExpert MoE file "
                                  "(keys '<module>.lora_layer.loraA', ...).")
        config, layers = official_to_layers(tensors, str(moe_path), top_k)
    projector = projector_config = None
    if projector_path is not None:
        projector, projector_config = read_official_projector(projector_path, mmap=mmap)
    return StyleExpertCheckpoint(config, layers, projector, projector_config, dict(OFFICIAL_INFO))
