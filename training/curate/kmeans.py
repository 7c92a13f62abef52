"""k-means and nearest-centroid search on faiss, in float32 and in chunks.

faiss (``faiss-cpu``, or ``faiss-gpu``) is a required part of the curation extra: one fast path
instead of a slow pure-numpy one to keep in step with it. Training follows faiss' defaults
(random initial centroids from the seed, at most ``max_points_per_centroid`` training points per
cluster, empty clusters split from big ones), except the start: k-means++ seeding on a random
subsample of ``seeding_points_per_centroid * k`` points, since faiss' uniform random start can
put two centroids in one blob and none in another. Assignment of all points runs in chunks against a
flat L2 index, so memory stays at one chunk of distances.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..data.errors import ConfigError

FAISS_INSTALL_HINT = "k-means needs faiss, part of the curation extra. Install it with: pip install faiss-cpu"
_CHUNK = 65536  # rows per nearest-centroid search


@dataclass(frozen=True)
class KMeansResult:
    centroids: np.ndarray  # [k, D] float32
    labels: np.ndarray  # [N] int64
    inertia: float  # sum of squared distances to the assigned centroid


def _import_faiss() -> Any:
    try:
        import faiss
    except ImportError as e:
        raise ImportError(f"{FAISS_INSTALL_HINT} ({e}).") from e
    return faiss


def _float32(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32)


def kmeans(x: np.ndarray, n_clusters: int, *, seed: int = 0, max_iter: int = 50,
           max_points_per_centroid: int = 256, seeding_points_per_centroid: int = 16) -> KMeansResult:
    """Lloyd k-means of the rows of ``x``; seeded, so a seed gives the same clusters on the same machine."""
    x = _float32(x)
    n = x.shape[0]
    if not 1 <= n_clusters <= n:
        raise ConfigError(f"k-means needs 1 <= clusters <= points; got {n_clusters} clusters for {n} points.")
    faiss = _import_faiss()
    rng = np.random.default_rng(seed)
    pool = x if n <= seeding_points_per_centroid * n_clusters else x[
        np.sort(rng.choice(n, seeding_points_per_centroid * n_clusters, replace=False))]
    model = faiss.Kmeans(x.shape[1], n_clusters, niter=max_iter, seed=seed, verbose=False,
                         min_points_per_centroid=1, max_points_per_centroid=max_points_per_centroid)
    model.train(x, init_centroids=_kmeans_plus_plus(pool, n_clusters, rng))
    centroids = _float32(model.centroids)
    labels, dist = assign(x, centroids)
    return KMeansResult(centroids, labels, float(dist.sum(dtype=np.float64)))


def assign(x: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centroid of every point and its squared distance (exact search, chunked)."""
    faiss = _import_faiss()
    x, centroids = _float32(x), _float32(centroids)
    index = faiss.IndexFlatL2(centroids.shape[1])
    index.add(centroids)
    labels = np.empty(x.shape[0], dtype=np.int64)
    dist = np.empty(x.shape[0], dtype=np.float32)
    for start in range(0, x.shape[0], _CHUNK):
        d, i = index.search(x[start:start + _CHUNK], 1)
        labels[start:start + _CHUNK] = i[:, 0]
        dist[start:start + _CHUNK] = np.maximum(d[:, 0], 0.0)
    return labels, dist


def _kmeans_plus_plus(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding: each next centroid is drawn with probability proportional to D(x)^2."""
    n = x.shape[0]
    chosen = [int(rng.integers(n))]
    closest = np.sum((x - x[chosen[0]]) ** 2, axis=1, dtype=np.float64)
    for _ in range(1, k):
        total = closest.sum()
        # Fewer distinct points than k: every distance is 0, fall back to a uniform pick.
        idx = int(rng.choice(n, p=closest / total)) if total > 0 else int(rng.integers(n))
        chosen.append(idx)
        closest = np.minimum(closest, np.sum((x - x[idx]) ** 2, axis=1, dtype=np.float64))
    return _float32(x[chosen])
