"""Semantic deduplication inside k-means clusters (SemDeDup, as NeMo Curator runs it for MegaStyle).

Embeddings are L2-normalised and clustered; within each cluster items are visited in manifest
order and an item is dropped when its cosine similarity to an already kept item reaches the
threshold. Clustering keeps the pairwise work at sum(cluster_size^2) instead of N^2; near-identical
items land in the same cluster, so almost no duplicate escapes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from ..data.embeddings import l2_normalise
from ..data.errors import ConfigError, EmbeddingMismatchError
from .kmeans import kmeans

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DedupConfig:
    similarity_threshold: float = 0.95  # cosine >= this counts as a duplicate (epsilon = 1 - threshold)
    n_clusters: int = 16  # clamped to the number of items
    seed: int = 0
    max_iter: int = 50

    def __post_init__(self) -> None:
        if not -1.0 < self.similarity_threshold <= 1.0:
            raise ConfigError(f"similarity_threshold must be in (-1, 1], got {self.similarity_threshold}.")
        if self.n_clusters < 1:
            raise ConfigError(f"n_clusters must be >= 1, got {self.n_clusters}.")
        if self.max_iter < 1:
            raise ConfigError(f"max_iter must be >= 1, got {self.max_iter}.")


@dataclass(frozen=True)
class DroppedItem:
    id: str
    duplicate_of: str  # the kept item it is too similar to
    similarity: float
    cluster: int


@dataclass(frozen=True)
class DedupResult:
    kept_ids: tuple[str, ...]  # manifest order
    dropped: tuple[DroppedItem, ...]
    clusters: np.ndarray  # cluster of every input item


def semantic_dedup(ids: Sequence[str], embeddings: np.ndarray, config: DedupConfig = DedupConfig()) -> DedupResult:
    n = len(ids)
    if embeddings.shape[0] != n:
        raise EmbeddingMismatchError(f"{embeddings.shape[0]} embedding rows for {n} ids.")
    x = l2_normalise(np.asarray(embeddings, dtype=np.float64))
    k = min(config.n_clusters, n)
    if k < config.n_clusters:
        logger.info("dedup: %d clusters requested for %d items, using %d", config.n_clusters, n, k)
    clusters = kmeans(x, k, seed=config.seed, max_iter=config.max_iter).labels
    keep = np.ones(n, dtype=bool)
    dropped: list[DroppedItem] = []
    for c in tqdm(range(k), desc="dedup", unit="cluster", disable=None):
        members = np.flatnonzero(clusters == c)  # ascending = manifest order
        dropped.extend(_dedup_cluster(members, x, ids, c, config.similarity_threshold, keep))
    position = {item_id: i for i, item_id in enumerate(ids)}
    dropped.sort(key=lambda d: position[d.id])  # report in manifest order, not cluster order
    kept_ids = tuple(ids[i] for i in np.flatnonzero(keep))
    logger.info("dedup: kept %d of %d, dropped %d", len(kept_ids), n, len(dropped))
    return DedupResult(kept_ids, tuple(dropped), clusters)


def _dedup_cluster(
    members: np.ndarray, x: np.ndarray, ids: Sequence[str], cluster: int, threshold: float, keep: np.ndarray
) -> list[DroppedItem]:
    if len(members) > 20_000:
        logger.warning("dedup: cluster %d has %d items (%.1f GB of similarities); use more clusters",
                       cluster, len(members), len(members) ** 2 * 8 / 1e9)
    sims = x[members] @ x[members].T
    kept_local: list[int] = []
    dropped = []
    for local, i in enumerate(members):
        if kept_local:
            row = sims[local, kept_local]
            best = int(np.argmax(row))
            if row[best] >= threshold:
                keep[i] = False
                dropped.append(DroppedItem(ids[i], ids[members[kept_local[best]]], float(row[best]), cluster))
                continue
        kept_local.append(local)
    return dropped
