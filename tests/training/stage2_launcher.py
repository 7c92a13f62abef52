"""``python -m training.stage2`` for launched multi-process tests, with what they need around it.

Environment switches (all optional):

* ``SNAPSHOT_AT=k`` and ``SNAPSHOT_DIR=d``: after the save at step k, copy the run folder to d:
  the state a run interrupted right after that save leaves behind.
* ``FSDP_ON_CPU=1``: accelerate 1.x builds FSDP only on GPUs and otherwise falls back to
  plain multi-process training. This turns its CPU (gloo) state into FSDP with the plugin that
  ``accelerate launch --config_file accelerate_fsdp2.yaml`` describes in the environment, so
  the script's real FSDP2 path (accelerate's prepare, clipping, saving) runs on gloo; it also
  writes ``clip.rank<r>.json``: per clip, the norm returned and the norm of the gradients after it.
"""

import json
import os
import shutil
import sys
from pathlib import Path

import torch
from accelerate import Accelerator, PartialState
from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin
from torch.distributed.tensor import DTensor

from training.config import config_main
from training.stage2 import train


def fsdp_on_cpu_accelerator(*args, **kwargs) -> Accelerator:
    accelerator = Accelerator(*args, **kwargs)
    for state in (accelerator.state, PartialState()):  # accelerate copies the one into the other later
        state.distributed_type = DistributedType.FSDP
    accelerator.state.fsdp_plugin = FullyShardedDataParallelPlugin()
    return accelerator


def record_clipping(out_dir: Path) -> None:
    clip, records = Accelerator.clip_grad_norm_, []

    def clip_and_record(self, parameters, max_norm, norm_type=2):
        parameters = list(parameters)
        returned = clip(self, parameters, max_norm, norm_type)
        after = torch.nn.utils.get_total_norm([p.grad for p in parameters if p.grad is not None])
        after = after.full_tensor() if isinstance(after, DTensor) else after
        records.append({"returned": float(returned), "after": float(after), "max": max_norm,
                        "sharded": all(isinstance(p, DTensor) for p in parameters)})
        (out_dir / f"clip.rank{self.process_index}.json").write_text(json.dumps(records))
        return returned

    Accelerator.clip_grad_norm_ = clip_and_record


def snapshot_after_save(step: int, target: str) -> None:
    save = train.save

    def save_and_copy(run, cfg, position, final):
        save(run, cfg, position, final)
        if position.step == step and run.accelerator.is_main_process:
            shutil.copytree(run.out_dir, target)
        run.accelerator.wait_for_everyone()

    train.save = save_and_copy


if __name__ == "__main__":
    argv = sys.argv[1:]
    out_dir = Path(next(a.split("=", 1)[1] for a in argv if a.startswith("--out_dir=")))
    if os.environ.get("FSDP_ON_CPU") == "1":
        train.Accelerator = fsdp_on_cpu_accelerator
        out_dir.mkdir(parents=True, exist_ok=True)
        record_clipping(out_dir)
    if os.environ.get("SNAPSHOT_AT"):
        snapshot_after_save(int(os.environ["SNAPSHOT_AT"]), os.environ["SNAPSHOT_DIR"])
    config_main(train.Stage2Config, train.main, argv)
