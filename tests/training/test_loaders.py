"""Stage-1 live-encoder mode and DataLoader workers that read ahead without changing the batches."""

import numpy as np
import pytest
import torch

from training.data.cache import CacheReader
from training.data.samplers import PKSampler
from training.stage1.data import CachedHidden
from training.stage1.loader import Prefetched, StepBatches
from training.stage1.train import Stage1Config, main
from training.stage2.train import Stage2Config, build_data

SMALL = dict(style_tokens=2, out_dim=4, styles_per_batch=3, images_per_style=2, val_fraction=0.34, steps=1,
             eval_every=1, log_every=1, warmup_steps=1, lr=1e-3)


def test_live_encoder_runs_the_frozen_tower_every_step(tiny, tmp_path):
    tiny["siglip"].model.save_pretrained(tmp_path / "siglip")
    live = main(Stage1Config(manifest=str(tiny["manifest"]), siglip=str(tmp_path / "siglip"), live_encoder=True,
                             out_dir=str(tmp_path / "live"), **SMALL))
    cached = main(Stage1Config(cache_dir=str(tiny["stage1_cache"]), out_dir=str(tmp_path / "cached"), **SMALL))
    # the same items, features and draws: the cache only stored the tower's output (in fp16)
    assert live["train"][0]["loss"] == pytest.approx(cached["train"][0]["loss"], rel=1e-2)
    assert live["val"][-1]["map"] == pytest.approx(cached["val"][-1]["map"], abs=0.05)
    assert not (tmp_path / "live" / "siglip_finetuned").exists()  # frozen: nothing of the tower is saved


def step_rows(source, sampler, train_idx, workers: int, steps: int = 3) -> list[tuple[np.ndarray, torch.Tensor]]:
    """What the loop sees: for each step, the drawn indices and the rows ``Prefetched`` returns for them."""
    prefetched = Prefetched(source, StepBatches(sampler, train_idx, True, 0, steps), workers)
    out = []
    for _ in range(steps):
        a, b = sampler.pair()
        out += [(train_idx[a], prefetched.hidden(train_idx[a])), (train_idx[b], prefetched.hidden(train_idx[b]))]
    return out


def test_workers_read_the_batches_the_sampler_draws(tiny):
    source = CachedHidden(CacheReader(tiny["stage1_cache"]))
    train_idx = np.arange(2, 24)
    labels = source.items.labels[train_idx]
    serial = step_rows(source, PKSampler(labels, 3, 2, seed=5), train_idx, workers=0)
    parallel = step_rows(source, PKSampler(labels, 3, 2, seed=5), train_idx, workers=2)
    for (ia, a), (ib, b) in zip(serial, parallel):
        assert np.array_equal(ia, ib) and torch.equal(a, b) and torch.equal(a, source.hidden(ia))
    with pytest.raises(RuntimeError, match="out of step"):  # a draw the loader did not make is caught
        Prefetched(source, StepBatches(PKSampler(labels, 3, 2, seed=5), train_idx, True, 0, 1), 0).hidden([0])


def test_stage2_workers_load_the_same_batches(tiny):
    def batches(workers: int) -> list:
        cfg = Stage2Config(cache_dir=str(tiny["stage2_cache"]), model="tiny", batch_size=2, num_workers=workers)
        return list(build_data(cfg)[2])

    serial, parallel = batches(0), batches(2)
    assert len(serial) == len(parallel) == 12
    for x, y in zip(serial, parallel):
        assert all(torch.equal(getattr(x, f), getattr(y, f)) for f in ("target", "content", "text_seq", "pooled",
                                                                         "style_latent"))
