"""A small seeded k-means (k-means++ seeding, Lloyd iterations) in numpy.

Enough for tests and datasets up to ~10^5 points. At 10^6+ use faiss (``faiss.Kmeans``) or a GPU
torch k-means and feed the labels to the same dedup/balancing functions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.errors import ConfigError

_CHUNK = 4096  # rows per distance block: bounds memory at chunk x k floats


@dataclass(frozen=True)
class KMeansResult:
    centroids: np.ndarray  # [k, D]
    labels: np.ndarray  # [N] int64
    inertia: float


def kmeans(x: np.ndarray, n_clusters: int, *, seed: int = 0, max_iter: int = 50, tol: float = 1e-7) -> KMeansResult:
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    if not 1 <= n_clusters <= n:
        raise ConfigError(f"k-means needs 1 <= clusters <= points; got {n_clusters} clusters for {n} points.")
    rng = np.random.default_rng(seed)
    centroids = _kmeans_plus_plus(x, n_clusters, rng)
    labels, dist = assign(x, centroids)
    for _ in range(max_iter):
        new_centroids = _update(x, labels, dist, centroids)
        shift = float(np.max(np.sum((new_centroids - centroids) ** 2, axis=1)))
        centroids = new_centroids
        labels, dist = assign(x, centroids)
        if shift <= tol:
            break
    return KMeansResult(centroids, labels, float(dist.sum()))


def _kmeans_plus_plus(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    n = x.shape[0]
    chosen = [int(rng.integers(n))]
    closest = np.sum((x - x[chosen[0]]) ** 2, axis=1)
    for _ in range(1, k):
        total = closest.sum()
        # Fewer distinct points than k: every distance is 0, fall back to a uniform pick.
        idx = int(rng.choice(n, p=closest / total)) if total > 0 else int(rng.integers(n))
        chosen.append(idx)
        closest = np.minimum(closest, np.sum((x - x[idx]) ** 2, axis=1))
    return x[chosen].copy()


def assign(x: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centroid of every point and its squared distance."""
    labels = np.empty(x.shape[0], dtype=np.int64)
    dist = np.empty(x.shape[0], dtype=np.float64)
    c_sq = np.sum(centroids**2, axis=1)
    for start in range(0, x.shape[0], _CHUNK):
        block = x[start : start + _CHUNK]
        d = np.sum(block**2, axis=1, keepdims=True) - 2.0 * block @ centroids.T + c_sq
        labels[start : start + _CHUNK] = np.argmin(d, axis=1)
        dist[start : start + _CHUNK] = np.maximum(d[np.arange(block.shape[0]), labels[start : start + _CHUNK]], 0.0)
    return labels, dist


def _update(x: np.ndarray, labels: np.ndarray, dist: np.ndarray, old: np.ndarray) -> np.ndarray:
    k = old.shape[0]
    counts = np.bincount(labels, minlength=k)
    sums = np.zeros_like(old)
    np.add.at(sums, labels, x)
    centroids = old.copy()
    filled = counts > 0
    centroids[filled] = sums[filled] / counts[filled, None]
    # An empty cluster takes the point worst served by its centroid, so k clusters survive.
    far = np.argsort(-dist, kind="stable")
    for slot, point in zip(np.flatnonzero(~filled), far):
        centroids[slot] = x[point]
    return centroids
