"""Balanced sampling with hierarchical k-means (Vo et al. 2024; used for MegaStyle's prompt gallery).

1. Hierarchical k-means: level 1 clusters the (L2-normalised) points; level l clusters the
   centroids of level l-1. Big concepts end up as many level-1 clusters under one top cluster.
   Each level is *resampled k-means* (the paper's key step, as in facebookresearch/ssl-data-curation):
   after the first k-means, ``resample_steps`` times take the ``sample_size`` points closest to
   each centroid, re-run k-means on that sample only, and reassign every point. Each cluster
   contributes the same number of points to the refit, so dense regions stop pulling centroids
   towards them and the centroids spread evenly over the concepts instead of following density.
2. Top-down quotas: a node's quota is spread over its children by water-filling,
   q_i = min(size_i, t), with t found by binary search so that sum(q_i) hits the quota
   (leftover units go to random children larger than t). Small children are taken whole; big
   ones are capped at the same t. At level 1, q points are drawn from each cluster.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..data.embeddings import l2_normalise
from ..data.errors import ConfigError
from .kmeans import assign, kmeans

STRATEGIES = ("random", "closest")


@dataclass(frozen=True)
class HierarchyConfig:
    level_sizes: tuple[int, ...] = (80, 10)  # clusters per level, bottom (points) first
    seed: int = 0
    max_iter: int = 50
    resample_steps: int = 10  # per level; 0 = plain hierarchical k-means
    # Points drawn per cluster in a resampling step, per level; None: half the mean cluster size
    # (the reference configs' rule). A level whose size is 1 is not resampled.
    sample_sizes: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "level_sizes", tuple(int(k) for k in self.level_sizes))
        if self.resample_steps < 0:
            raise ConfigError(f"resample_steps must be >= 0, got {self.resample_steps}.")
        if self.sample_sizes is not None:
            object.__setattr__(self, "sample_sizes", tuple(int(r) for r in self.sample_sizes))
            if len(self.sample_sizes) != len(self.level_sizes) or min(self.sample_sizes) < 1:
                raise ConfigError(f"sample_sizes needs one positive size per level ({len(self.level_sizes)}), "
                                  f"got {self.sample_sizes}.")
        sizes = self.level_sizes
        if not sizes or any(k < 1 for k in sizes):
            raise ConfigError(f"level_sizes must be positive cluster counts, got {sizes}.")
        if any(b >= a for a, b in zip(sizes, sizes[1:])):
            raise ConfigError(
                f"level_sizes must strictly decrease (each level clusters the previous level's "
                f"centroids), got {sizes}; e.g. 80,10."
            )


@dataclass(frozen=True)
class ClusterTree:
    """``parents[0][p]`` is point p's level-1 cluster; ``parents[l][c]`` is level-l cluster c's parent."""

    parents: tuple[np.ndarray, ...]
    centroids: tuple[np.ndarray, ...]
    points: np.ndarray  # the normalised points, for closest-to-centroid sampling

    @property
    def n_levels(self) -> int:
        return len(self.parents)

    def children(self, level: int) -> list[np.ndarray]:
        """For each cluster at ``level`` (1-based), the indices of its children at ``level - 1``."""
        parent = self.parents[level - 1]
        order = np.argsort(parent, kind="stable")
        bounds = np.searchsorted(parent[order], np.arange(self.centroids[level - 1].shape[0] + 1))
        return [order[bounds[c] : bounds[c + 1]] for c in range(len(bounds) - 1)]

    def sizes(self, level: int) -> np.ndarray:
        """Number of points under each cluster at ``level`` (level 0: the points themselves)."""
        counts = np.ones(self.parents[0].shape[0], dtype=np.int64)
        for lv in range(level):
            counts = np.bincount(self.parents[lv], weights=counts, minlength=self.centroids[lv].shape[0])
            counts = counts.astype(np.int64)
        return counts


def hierarchical_kmeans(x: np.ndarray, config: HierarchyConfig = HierarchyConfig()) -> ClusterTree:
    points = l2_normalise(np.asarray(x, dtype=np.float64))
    level_input = points
    parents, centroids = [], []
    for level, k in enumerate(config.level_sizes, start=1):
        if k > level_input.shape[0]:
            raise ConfigError(
                f"level {level} asks for {k} clusters but only {level_input.shape[0]} "
                f"{'points' if level == 1 else 'level-%d centroids' % (level - 1)} exist; use fewer clusters."
            )
        sample_size = (config.sample_sizes[level - 1] if config.sample_sizes is not None
                       else level_input.shape[0] // (2 * k))
        labels, level_centroids = resampled_kmeans(level_input, k, sample_size, config, seed=config.seed + level)
        parents.append(labels)
        centroids.append(level_centroids)
        level_input = level_centroids
    return ClusterTree(tuple(parents), tuple(centroids), points)


def resampled_kmeans(x: np.ndarray, k: int, sample_size: int, config: HierarchyConfig,
                     *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """k-means, then ``config.resample_steps`` refits on the ``sample_size`` points closest to each centroid."""
    result = kmeans(x, k, seed=seed, max_iter=config.max_iter)
    labels, centroids = result.labels, result.centroids
    if sample_size <= 1:
        return labels, centroids
    for step in range(config.resample_steps):
        sample = x[_closest_per_cluster(x, labels, centroids, sample_size)]
        if sample.shape[0] < k:
            break  # too few points survive to refit k clusters; keep the last fit
        centroids = kmeans(sample, k, seed=seed + 1000 * (step + 1), max_iter=config.max_iter).centroids
        labels, _ = assign(x, centroids)
    return labels, centroids


def _closest_per_cluster(x: np.ndarray, labels: np.ndarray, centroids: np.ndarray, r: int) -> np.ndarray:
    """Indices of the (up to) r points nearest to their own centroid, for every cluster."""
    dist = np.sum((x - centroids[labels]) ** 2, axis=1)
    order = np.lexsort((dist, labels))  # by cluster, nearest first
    rank = np.arange(order.size) - np.searchsorted(labels[order], labels[order])
    return order[rank < r]


def water_fill(sizes: Sequence[int] | np.ndarray, target: int, rng: np.random.Generator) -> np.ndarray:
    """Integer quotas q_i <= size_i summing to ``target`` that are as equal as the sizes allow."""
    sizes = np.asarray(sizes, dtype=np.int64)
    if target < 0 or (sizes < 0).any():
        raise ConfigError(f"water_fill needs a non-negative target and sizes, got {target} and {sizes}.")
    if target >= sizes.sum():
        return sizes.copy()
    lo, hi = 0, int(sizes.max())  # invariant: sum(min(sizes, lo)) <= target < sum(min(sizes, hi))
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if np.minimum(sizes, mid).sum() <= target:
            lo = mid
        else:
            hi = mid
    quotas = np.minimum(sizes, lo)
    remainder = int(target - quotas.sum())  # < number of children larger than lo, by the invariant
    if remainder:
        candidates = np.flatnonzero(sizes > lo)
        quotas[rng.choice(candidates, remainder, replace=False)] += 1
    return quotas


def balanced_sample(tree: ClusterTree, target_size: int, *, seed: int = 0, strategy: str = "random") -> np.ndarray:
    """Indices of ``target_size`` points chosen top-down with water-filled quotas (sorted)."""
    n = tree.points.shape[0]
    if not 1 <= target_size <= n:
        raise ConfigError(f"target size must be between 1 and {n} (the number of items), got {target_size}.")
    if strategy not in STRATEGIES:
        raise ConfigError(f"strategy must be one of {STRATEGIES}, got {strategy!r}.")
    rng = np.random.default_rng(seed)
    sizes = [tree.sizes(level) for level in range(tree.n_levels + 1)]
    children = {level: tree.children(level) for level in range(1, tree.n_levels + 1)}
    top = np.arange(tree.centroids[-1].shape[0])
    chosen: list[np.ndarray] = []
    stack = [(tree.n_levels, top, target_size)]  # (level of these nodes, node indices, quota)
    while stack:
        level, nodes, quota = stack.pop()
        quotas = water_fill(sizes[level][nodes], quota, rng)
        for node, q in zip(nodes, quotas):
            if q == 0:
                continue
            if level == 1:
                chosen.append(_pick_points(tree, node, children[1][node], int(q), rng, strategy))
            else:
                stack.append((level - 1, children[level][node], int(q)))
    return np.sort(np.concatenate(chosen))


def _pick_points(tree: ClusterTree, cluster: int, members: np.ndarray, q: int, rng: np.random.Generator,
                 strategy: str) -> np.ndarray:
    if strategy == "random":
        return rng.choice(members, q, replace=False)
    dist = np.sum((tree.points[members] - tree.centroids[0][cluster]) ** 2, axis=1)
    return members[np.argsort(dist, kind="stable")[:q]]


@dataclass(frozen=True)
class LabelStats:
    count: int
    distinct: int
    entropy: float  # nats
    largest_label: str
    largest_share: float

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def label_stats(labels: Sequence[object]) -> LabelStats:
    counts = Counter(str(label) for label in labels)
    total = sum(counts.values())
    if total == 0:
        raise ConfigError("label statistics need at least one label.")
    shares = np.array(list(counts.values()), dtype=np.float64) / total
    label, top = counts.most_common(1)[0]
    return LabelStats(total, len(counts), float(-(shares * np.log(shares)).sum()), label, top / total)


@dataclass(frozen=True)
class BalanceReport:
    label_source: str
    before: LabelStats
    after: LabelStats
    max_entropy: float  # ln(distinct labels before): the entropy of a perfectly even sample

    def to_dict(self) -> dict[str, object]:
        return {"label_source": self.label_source, "before": self.before.to_dict(),
                "after": self.after.to_dict(), "max_entropy": self.max_entropy}


def balance_report(labels: Sequence[object], selected: np.ndarray, label_source: str) -> BalanceReport:
    before = label_stats(labels)
    after = label_stats([labels[i] for i in selected])
    return BalanceReport(label_source, before, after, math.log(before.distinct))
