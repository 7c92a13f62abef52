"""One process: a run interrupted right after a save and resumed equals an uninterrupted run, bit for bit.

The interruption is the run folder copied after the save at step k (what a killed run leaves);
the copy is resumed with the same command plus resume=true. Two-process runs: test_distributed.py.
"""

import shutil

import torch
from accelerate.state import AcceleratorState
from safetensors.torch import load_file

from training.stage1 import train as stage1
from training.stage2 import train as stage2
from training.stage2.state import Position, rescale


def snapshot_after(module, monkeypatch, step: int, target) -> None:
    save = module.save

    def save_and_copy(run, where, position, *args, **kwargs):  # stage 1: (out_dir, step); stage 2: (cfg, Position)
        save(run, where, position, *args, **kwargs)
        if getattr(position, "step", position) == step:
            shutil.copytree(getattr(where, "out_dir", where), target)

    monkeypatch.setattr(module, "save", save_and_copy)


def assert_same_file(a, b) -> None:
    ta, tb = load_file(a), load_file(b)
    assert sorted(ta) == sorted(tb) and all(torch.equal(ta[k], tb[k]) for k in ta)


def test_stage1_resume_is_exact(tiny, tmp_path, monkeypatch):
    small = dict(style_tokens=2, out_dim=4, styles_per_batch=3, images_per_style=2, val_fraction=0.34, steps=4,
                 eval_every=2, log_every=1, warmup_steps=1, loss="infonce")
    snapshot_after(stage1, monkeypatch, 2, tmp_path / "resumed")
    full = stage1.main(stage1.Stage1Config(cache_dir=str(tiny["stage1_cache"]), out_dir=str(tmp_path / "full"),
                                           **small))
    torch.manual_seed(123)  # a fresh process starts from other RNG states; resume must restore them
    resumed = stage1.main(stage1.Stage1Config(cache_dir=str(tiny["stage1_cache"]),
                                              out_dir=str(tmp_path / "resumed"), resume=True, **small))
    assert [r["step"] for r in resumed["train"]] == [1, 2, 3, 4]
    assert_same_file(full["projector"], resumed["projector"])


def test_stage2_resume_with_accumulation_is_exact(tiny, tmp_path, monkeypatch):
    # 24 items / batch 4 = 6 micro-batches an epoch = 3 steps of 2: the snapshot at step 2 is mid-epoch
    cfg = dict(cache_dir=str(tiny["stage2_cache"]), model=str(tiny["flux"]), num_experts=4, rank=2, steps=5,
               batch_size=4, grad_accum=2, lr=1e-2, warmup_steps=1, grad_clip=0.05, gradient_checkpointing=False,
               save_every=2, log_every=1, device="cpu")
    snapshot_after(stage2, monkeypatch, 2, tmp_path / "resumed")
    full = stage2.main(stage2.Stage2Config(out_dir=str(tmp_path / "full"), **cfg))
    AcceleratorState._reset_state(reset_partial_state=True)
    torch.manual_seed(123)
    resumed = stage2.main(stage2.Stage2Config(out_dir=str(tmp_path / "resumed"), resume=True, **cfg))
    assert [r["step"] for r in resumed["train"]] == [1, 2, 3, 4, 5]
    assert_same_file(full["checkpoint"], resumed["checkpoint"])


def test_a_position_saved_on_other_process_counts_continues_after_the_batches_all_ranks_saw():
    saved = Position(step=3, epoch=1, batch=2, micro=6, num_processes=4)  # 8 batches of epoch 1 trained
    assert rescale(saved, 4) == saved
    assert rescale(saved, 2) == Position(step=3, epoch=1, batch=4, micro=6, num_processes=2)
    assert rescale(saved, 3).batch == 2  # 8 // 3: a batch is trained again rather than skipped
