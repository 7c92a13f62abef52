"""Launched on 2 processes by test_distributed.py: the item indices each rank trains on per epoch,
read through stage 2's own ``epoch_loader`` from an accelerate-prepared loader.

    python -m torch.distributed.run --nproc_per_node 2 tests/training/epoch_probe.py CACHE_DIR OUT_DIR
"""

import json
import sys
from pathlib import Path

import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader

from training.stage2.data import TripletCache
from training.stage2.train import epoch_loader

if __name__ == "__main__":
    cache_dir, out_dir = sys.argv[1], Path(sys.argv[2])
    accelerator = Accelerator(cpu=True)
    data = TripletCache(cache_dir)
    sampler = data.batch_sampler(2, seed=0)
    loader = accelerator.prepare(DataLoader(data, batch_sampler=sampler,
                                            collate_fn=lambda items: torch.tensor([it["index"] for it in items])))
    seen = {f"epoch{e}": [b.tolist() for b in epoch_loader(loader, sampler, e)] for e in (0, 1)}
    seen["epoch1_skip2"] = [b.tolist() for b in epoch_loader(loader, sampler, 1, skip=2)]
    (out_dir / f"epochs.rank{accelerator.process_index}.json").write_text(json.dumps(seen))
    accelerator.wait_for_everyone()
    accelerator.end_training()
