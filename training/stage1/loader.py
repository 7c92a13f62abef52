"""Stage-1 batches read ahead by DataLoader workers, in exactly the order the training loop draws them.

The loop keeps drawing P x K indices from its own sampler (whose state the resume file
stores). A copy of that sampler, taken when the loop starts, drives a ``DataLoader`` whose
workers read the same future batches ahead of time: cached hidden states from the memory-mapped
shards, or decoded images for the live encoder, which then runs on the device in the main
process. ``Prefetched.hidden(indices)`` hands out the rows in draw order and checks that they
are the ones the loop asked for, so prefetching cannot change what is trained on.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..data.images import load_square
from ..data.samplers import PKSampler
from .data import CachedHidden, LiveHidden


class StepBatches(Sampler[list[int]]):
    """The item indices of steps ``start`` .. ``stop`` - 1, drawn from a copy of the loop's sampler."""

    def __init__(self, sampler: PKSampler, train_idx: np.ndarray, pair: bool, start: int, stop: int) -> None:
        self.sampler, self.train_idx, self.pair, self.steps = copy.deepcopy(sampler), train_idx, pair, stop - start

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        for _ in range(self.steps):
            a, b = self.sampler.pair() if self.pair else (self.sampler.batch(), np.array([], dtype=int))
            yield self.train_idx[np.concatenate([a, b])].tolist()


class SourceItems(Dataset):
    """One item of a feature source as the workers read it: hidden states, or the image for the live tower."""

    def __init__(self, source: CachedHidden | LiveHidden) -> None:
        self.source = source

    def __len__(self) -> int:
        return len(self.source.items.labels)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor]:
        if isinstance(self.source, LiveHidden):
            return i, load_square(self.source.paths[i], self.source.siglip.image_size)
        return i, self.source.reader.get(i, "hidden").clone()


def collate(items: list[tuple[int, torch.Tensor]]) -> tuple[list[int], torch.Tensor]:
    return [i for i, _ in items], torch.stack([t for _, t in items])


class Prefetched:
    """``hidden(indices)`` from the read-ahead loader, in draw order (same contract as the sources)."""

    def __init__(self, source: CachedHidden | LiveHidden, batches: StepBatches, num_workers: int) -> None:
        self.source = source
        self.loader = iter(DataLoader(SourceItems(source), batch_sampler=batches, collate_fn=collate,
                                      num_workers=num_workers, persistent_workers=num_workers > 0))
        self.indices: list[int] = []
        self.rows = torch.empty(0)

    def hidden(self, indices) -> torch.Tensor:
        if not self.indices:
            self.indices, self.rows = next(self.loader)
        wanted = [int(i) for i in indices]
        if self.indices[: len(wanted)] != wanted:
            raise RuntimeError("the read-ahead loader is out of step with the sampler (a bug): expected "
                               f"{wanted[:4]}..., got {self.indices[:4]}...")
        rows, self.rows, self.indices = self.rows[: len(wanted)], self.rows[len(wanted):], self.indices[len(wanted):]
        if isinstance(self.source, LiveHidden):
            return self.source.siglip.hidden_states(rows).float()
        return rows.float()
