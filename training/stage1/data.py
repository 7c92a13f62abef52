"""Where stage 1 gets SigLIP hidden states from: the cache (frozen tower) or a live tower.

* ``CachedHidden``: the normal mode. Hidden states were computed once by the caching pass;
  small caches are held in memory, large ones read per batch from the memory-mapped shards.
* ``LiveHidden``: full SigLIP fine-tuning (MegaStyle's encoder is a full fine-tune). The
  vision tower changes every step, so cached features would be stale: this source reads
  the images and runs the trainable tower on every batch.

Both give ``hidden(indices) -> [n, L, T, W]`` over one list of items (image, style label,
style-prompt id), built the same way from a manifest, so labels and prompt ids agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data.backbones import SiglipHidden
from ..data.cache import CacheReader
from ..data.errors import InputError
from ..data.images import load_square
from ..data.triplets import read_triplets, style_images

PRELOAD_BYTES = 2 * 1024**3  # caches up to this size are loaded into memory


@dataclass
class StyleItems:
    labels: np.ndarray  # [N] style id
    prompts: np.ndarray  # [N] style-prompt id
    label_names: list[str]
    prompt_names: list[str]


def items_from_cache(reader: CacheReader) -> StyleItems:
    return StyleItems(np.array([it["label"] for it in reader.items]), np.array([it["prompt"] for it in reader.items]),
                      reader.index["labels"], reader.index["prompts"])


class CachedHidden:
    """Frozen-tower features from a stage-1 cache."""

    def __init__(self, reader: CacheReader) -> None:
        self.reader = reader
        first = reader.get(0, "hidden")
        self.shape = tuple(first.shape)  # (L, T, W)
        nbytes = len(reader) * first.numel() * first.element_size()
        self.memory = reader.stack(range(len(reader)), "hidden", first.dtype) if nbytes <= PRELOAD_BYTES else None
        self.items = items_from_cache(reader)
        self.layers = tuple(reader.index["layers"])

    def hidden(self, indices) -> torch.Tensor:
        if self.memory is not None:
            return self.memory[torch.as_tensor(np.asarray(indices))].float()
        return self.reader.stack(indices, "hidden")


def manifest_items(manifest: str) -> tuple[list[Path], StyleItems]:
    """The unique stylised images of a manifest and their items, numbered as the caching pass numbers them."""
    images = style_images(read_triplets(manifest))
    labels = sorted({im.style_label for im in images})
    prompts = sorted({im.style_prompt for im in images})
    return [im.path for im in images], StyleItems(np.array([labels.index(im.style_label) for im in images]),
                                                  np.array([prompts.index(im.style_prompt) for im in images]),
                                                  labels, prompts)


class LiveHidden:
    """A trainable SigLIP run on the manifest's images every batch (full fine-tune mode)."""

    def __init__(self, siglip: SiglipHidden, manifest: str) -> None:
        self.paths, self.items = manifest_items(manifest)
        self.siglip = siglip
        self.layers = siglip.layers
        probe = siglip.encode_style_hidden(load_square(self.paths[0], siglip.image_size)[None])
        self.shape = tuple(probe.shape[1:])

    def hidden(self, indices) -> torch.Tensor:
        pixels = torch.stack([load_square(self.paths[int(i)], self.siglip.image_size) for i in indices])
        return self.siglip.hidden_states(pixels).float()


def split_styles(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Hold out whole styles: (train indices, validation indices)."""
    styles = np.unique(labels)
    n_val = int(round(len(styles) * val_fraction))
    if val_fraction > 0 and not 2 <= n_val < len(styles):
        raise InputError(f"val_fraction {val_fraction} of {len(styles)} styles leaves {n_val} validation styles; "
                         "need at least 2 held-out styles and at least one training style.")
    held = set(np.random.default_rng(seed).choice(styles, n_val, replace=False).tolist())
    is_val = np.array([label in held for label in labels])
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)
