"""Stage-2 batches from the triplet cache: bucket-uniform, everything precomputed.

Each item holds VAE latents of target and content (and of the style reference when style
tokens are used), the frozen stage-1 style latent of the reference, and a prompt id whose
T5/CLIP embeddings sit in the cache's text shards. Nothing here runs a neural network, and
nothing is loaded whole: shards are memory-mapped (in the cache's dtype, bf16 by default) and
a batch copies only its own rows, so every rank and DataLoader worker shares the page cache.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from ..data.buckets import BucketBatchSampler
from ..data.cache import CacheReader, MappedRows
from ..data.errors import InputError
from .flow_matching import KontextBatch


class TripletCache(Dataset):
    """The triplets of a cache, or only those whose style is (``keep_styles=True``) or is not in ``styles``."""

    def __init__(self, cache_dir: str, *, style_tokens: bool = False, styles: frozenset[int] = frozenset(),
                 keep_styles: bool = False) -> None:
        self.reader = CacheReader(cache_dir, kind="triplets")
        self.rows = [i for i, it in enumerate(self.reader.items) if (it["label"] in styles) == keep_styles] \
            if styles or keep_styles else list(range(len(self.reader)))
        if style_tokens and not self.reader.index.get("style_reference_latents"):
            raise InputError(f"{cache_dir} has no style-reference latents; re-cache with style reference "
                             "latents on, or set style_tokens=false.")
        self.style_tokens = style_tokens
        self.items = [self.reader.items[r] for r in self.rows]
        self.buckets = [tuple(it["bucket"]) for it in self.items]
        self.labels = np.array([it["label"] for it in self.items])
        self.cond_dim = self.reader.get(0, "style_latent").shape[-1]
        self.reader.text_rows()  # a cache without text embeddings fails here, not at the first batch

    @property
    def text_seq(self) -> MappedRows:
        """T5 rows of every prompt, memory-mapped (a property, so pickling a dataset never copies them)."""
        return self.reader.text_rows()["seq"]

    @property
    def pooled(self) -> MappedRows:
        return self.reader.text_rows()["pooled"]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        fields = ["target", "content", "style_latent"] + (["style_ref"] if self.style_tokens else [])
        item = {f: self.reader.get(self.rows[i], f).float() for f in fields}
        item["prompt"] = self.items[i]["prompt"]
        item["index"] = i
        return item

    def collate(self, items: list[dict]) -> KontextBatch:
        prompts = torch.tensor([it["prompt"] for it in items])
        stack = lambda f: torch.stack([it[f] for it in items])  # noqa: E731
        return KontextBatch(target=stack("target"), content=stack("content"), text_seq=self.text_seq[prompts].float(),
                            pooled=self.pooled[prompts].float(), style_latent=stack("style_latent"),
                            style_ref=stack("style_ref") if self.style_tokens else None)

    def batch_sampler(self, batch_size: int, *, seed: int, shuffle: bool = True,
                      drop_last: bool = True) -> BucketBatchSampler:
        return BucketBatchSampler(self.buckets, batch_size, seed=seed, shuffle=shuffle, drop_last=drop_last)

    def other_style_latents(self, indices: list[int], seed: int) -> torch.Tensor:
        """For each item, the style latent of a random item of a *different* style (the shuffled control)."""
        rng = np.random.default_rng(seed)
        out = []
        for i in indices:
            others = np.flatnonzero(self.labels != self.labels[i])
            if len(others) == 0:
                raise InputError("the shuffled-style control needs at least two styles in the evaluation data.")
            out.append(self.reader.get(self.rows[int(rng.choice(others))], "style_latent").float())
        return torch.stack(out)
