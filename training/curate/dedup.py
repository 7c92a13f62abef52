"""Semantic deduplication inside k-means clusters (SemDeDup, Abbas et al. 2023; NeMo Curator runs it
for MegaStyle).

Embeddings are L2-normalised and clustered. Inside each cluster, items are ranked by their cosine
distance to the cluster centroid: farthest first with ``keep="hard"`` (the paper's default),
closest first with ``keep="easy"``. An item is dropped when its cosine similarity to any item
ranked before it reaches the threshold, exactly as SemDeDup's ``max(triu(sim), dim=0)`` does, so
in each group of near-duplicates the highest-ranked member survives. Clustering keeps the pairwise
work at sum(cluster_size^2) instead of N^2; the similarities are computed in row blocks, so memory
stays at block x cluster_size floats.
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

KEEP_RULES = ("hard", "easy")
_BLOCK = 1024  # rows of the similarity matrix held at once


@dataclass(frozen=True)
class DedupConfig:
    similarity_threshold: float = 0.95  # cosine >= this counts as a duplicate (epsilon = 1 - threshold)
    n_clusters: int = 16  # clamped to the number of items
    keep: str = "hard"  # "hard": keep the member farthest from the centroid (SemDeDup); "easy": closest
    seed: int = 0
    max_iter: int = 50

    def __post_init__(self) -> None:
        if not -1.0 < self.similarity_threshold <= 1.0:
            raise ConfigError(f"similarity_threshold must be in (-1, 1], got {self.similarity_threshold}.")
        if self.n_clusters < 1:
            raise ConfigError(f"n_clusters must be >= 1, got {self.n_clusters}.")
        if self.max_iter < 1:
            raise ConfigError(f"max_iter must be >= 1, got {self.max_iter}.")
        if self.keep not in KEEP_RULES:
            raise ConfigError(f"keep must be one of {KEEP_RULES}, got {self.keep!r}.")


@dataclass(frozen=True)
class DroppedItem:
    id: str
    duplicate_of: str  # the most similar item ranked before it
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
    x = l2_normalise(np.asarray(embeddings, dtype=np.float32))
    k = min(config.n_clusters, n)
    if k < config.n_clusters:
        logger.info("dedup: %d clusters requested for %d items, using %d", config.n_clusters, n, k)
    result = kmeans(x, k, seed=config.seed, max_iter=config.max_iter)
    centroids = l2_normalise(result.centroids.astype(np.float32))
    keep = np.ones(n, dtype=bool)
    dropped: list[DroppedItem] = []
    order = np.argsort(result.labels, kind="stable")
    bounds = np.searchsorted(result.labels[order], np.arange(k + 1))
    for c in tqdm(range(k), desc="dedup", unit="cluster", disable=None):
        members = order[bounds[c]:bounds[c + 1]]
        ranked = _rank_in_cluster(x[members], centroids[c], config.keep)
        dropped.extend(_dedup_cluster(members[ranked], x, ids, c, config.similarity_threshold, keep))
    position = {item_id: i for i, item_id in enumerate(ids)}
    dropped.sort(key=lambda d: position[d.id])  # report in manifest order, not cluster order
    kept_ids = tuple(ids[i] for i in np.flatnonzero(keep))
    logger.info("dedup: kept %d of %d, dropped %d", len(kept_ids), n, len(dropped))
    return DedupResult(kept_ids, tuple(dropped), result.labels)


def _rank_in_cluster(points: np.ndarray, centroid: np.ndarray, rule: str) -> np.ndarray:
    """Positions in keep-priority order; ties keep manifest order (a stable sort)."""
    distance = 1.0 - points @ centroid
    return np.argsort(-distance if rule == "hard" else distance, kind="stable")


def _dedup_cluster(
    ranked: np.ndarray, x: np.ndarray, ids: Sequence[str], cluster: int, threshold: float, keep: np.ndarray
) -> list[DroppedItem]:
    """Drop each item whose best similarity to an item ranked before it is >= threshold."""
    v = x[ranked]
    dropped = []
    for start in range(1, len(ranked), _BLOCK):
        stop = min(start + _BLOCK, len(ranked))
        sims = v[start:stop] @ v[:stop].T  # rows: items start..stop-1; columns: everything ranked before
        sims[np.arange(start, stop)[:, None] <= np.arange(stop)[None, :]] = -np.inf
        best = np.argmax(sims, axis=1)
        best_sim = sims[np.arange(stop - start), best]
        for row in np.flatnonzero(best_sim >= threshold):
            item = ranked[start + row]
            keep[item] = False
            dropped.append(DroppedItem(ids[item], ids[ranked[best[row]]], float(best_sim[row]), cluster))
    return dropped
