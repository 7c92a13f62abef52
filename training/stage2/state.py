"""What a stage-2 run saves to resume, and reads back: trainable tensors, optimizer, position, RNG.

Never the frozen base (12 B parameters). Rank 0 writes ``train_state.pt`` with the position
and, except under DeepSpeed, the full fp32 trainable tensors and optimizer state:

* one process / DDP: the tensors of the unwrapped model and the optimizer's state dict;
* FSDP2: the same, gathered from the shards (``DTensor.full_tensor``, torch's full
  optimizer state dict) and re-sharded on load, so the file does not depend on the world size;
* DeepSpeed: ZeRO keeps fp32 master weights and optimizer shards per rank, so accelerate's
  ``save_state`` writes them to ``accelerate_state/`` with ``exclude_frozen_parameters``.

Every rank also writes its RNG (``rng.rank<r>.pt``). The position says where the data stream
stands: the epoch and the micro-batches of it each rank has trained, so a resumed run skips
exactly those, and the micro-batch counter that keys the noise RNG.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from torch.distributed.tensor import DTensor

from ..checkpoints import load_state, rng_state, save_state, set_rng_state
from ..data.files import atomic_save

log = logging.getLogger("training.stage2")
DEEPSPEED_DIR = "accelerate_state"


@dataclass
class Position:
    step: int = 0  # optimizer steps done
    epoch: int = 0
    batch: int = 0  # micro-batches of ``epoch`` each rank has trained
    micro: int = 0  # micro-batches trained since the start (keys the noise RNG)
    num_processes: int = 1


def trainable_tensors(accelerator: Accelerator, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Full fp32 CPU copies of the trainable tensors by parameter name (gathers FSDP2 shards: all ranks call)."""
    out = {}
    for name, p in accelerator.unwrap_model(model).named_parameters():
        if p.requires_grad:
            full = p.full_tensor() if isinstance(p, DTensor) else p
            out[name] = full.detach().float().cpu().clone()
    return out


def _optimizer_state(model, optimizer, fsdp2: bool) -> dict:
    if not fsdp2:
        return optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    return get_optimizer_state_dict(model, optimizer.optimizer,
                                    options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def save_train_state(accelerator, model, optimizer, out_dir: Path, position: Position, mode: str) -> dict:
    """Write the resume state; returns the trainable tensors (for the export). All ranks call."""
    if mode == "deepspeed":
        accelerator.save_state(str(out_dir / DEEPSPEED_DIR), exclude_frozen_parameters=True)
    tensors = trainable_tensors(accelerator, model)
    optim = None if mode == "deepspeed" else _optimizer_state(model, optimizer, mode == "fsdp2")
    if accelerator.is_main_process:
        save_state(out_dir, {"position": asdict(position), "experts": tensors,
                             **({"optimizer": optim} if optim is not None else {})})
    atomic_save(out_dir / f"rng.rank{accelerator.process_index}.pt", lambda tmp: torch.save(rng_state(), tmp))
    return tensors


def load_train_state(accelerator, model, optimizer, out_dir: Path, mode: str) -> Position:
    """Restore what ``save_train_state`` wrote; the position to continue from (all zero without a state)."""
    state = load_state(out_dir)
    if state is None:
        log.warning("resume=true but %s has no train_state.pt; starting from scratch", out_dir)
        return Position(num_processes=accelerator.num_processes)
    if mode == "deepspeed":
        accelerator.load_state(str(out_dir / DEEPSPEED_DIR), load_module_strict=False)
    elif mode == "fsdp2":
        from torch.distributed.checkpoint.state_dict import (StateDictOptions, set_model_state_dict,
                                                             set_optimizer_state_dict)

        options = StateDictOptions(full_state_dict=True, strict=False)
        set_model_state_dict(model, state["experts"], options=options)
        set_optimizer_state_dict(model, optimizer.optimizer, state["optimizer"], options=options)
    else:
        accelerator.unwrap_model(model).load_state_dict(state["experts"], strict=False)
        optimizer.load_state_dict(state["optimizer"])
    rng_file = out_dir / f"rng.rank{accelerator.process_index}.pt"
    if rng_file.is_file():
        set_rng_state(torch.load(rng_file, weights_only=True))
    return rescale(Position(**state["position"]), accelerator.num_processes)


def rescale(position: Position, num_processes: int) -> Position:
    """A position saved on another number of processes: continue after the batches seen by all ranks."""
    if position.num_processes == num_processes:
        return position
    seen = position.batch * position.num_processes
    log.warning("the run was saved on %d processes and resumes on %d: the epoch continues after its first %d "
                "batches, but the batch-to-rank assignment and noise differ from an uninterrupted run",
                position.num_processes, num_processes, seen)
    return Position(position.step, position.epoch, seen // num_processes, position.micro, num_processes)
