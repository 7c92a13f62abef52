import math

import numpy as np
import pytest

from training.curate.balance import (HierarchyConfig, balance_report, balanced_sample, hierarchical_kmeans,
                                     label_stats, water_fill)
from training.curate.dedup import DedupConfig, semantic_dedup
from training.data.errors import ConfigError, EmbeddingMismatchError
from training.curate.kmeans import kmeans


def _blobs(sizes, dim=16, spread=0.15, seed=0):
    """Gaussian blobs around random unit centres; returns points and integer labels."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(sizes), dim))
    points = [c + spread * rng.normal(size=(n, dim)) for c, n in zip(centres, sizes)]
    labels = np.concatenate([np.full(n, i) for i, n in enumerate(sizes)])
    return np.concatenate(points), labels


def test_kmeans_recovers_separated_blobs_and_is_seeded():
    x, labels = _blobs([30, 30, 30], spread=0.05)
    a = kmeans(x, 3, seed=1)
    b = kmeans(x, 3, seed=1)
    np.testing.assert_array_equal(a.labels, b.labels)
    # Each true blob maps to exactly one cluster.
    assert all(len(set(a.labels[labels == i])) == 1 for i in range(3))
    assert len(set(a.labels)) == 3
    with pytest.raises(ConfigError, match="clusters <= points"):
        kmeans(x[:2], 3)


def test_chunked_assignment_is_the_exact_nearest_centroid(monkeypatch):
    import training.curate.kmeans as km

    rng = np.random.default_rng(5)
    x, centroids = rng.normal(size=(1000, 8)), rng.normal(size=(13, 8))
    monkeypatch.setattr(km, "_CHUNK", 97)
    labels, dist = km.assign(x, centroids)
    full = ((x[:, None, :] - centroids[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(labels, full.argmin(1))
    np.testing.assert_allclose(dist, full.min(1), rtol=1e-4)
    assert km.kmeans(x, 13).centroids.dtype == np.float32


def test_kmeans_without_faiss_says_how_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "faiss", None)
    with pytest.raises(ImportError, match="pip install faiss-cpu"):
        kmeans(np.ones((4, 2)), 2)


def test_planted_duplicates_leave_one_member_per_pair_the_one_farthest_from_its_centroid():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(200, 32))
    originals = rng.choice(200, size=25, replace=False)
    copies = base[originals] + 1e-3 * rng.normal(size=(25, 32))  # near-identical copies
    x = np.concatenate([base, copies])
    ids = [f"orig{i}" for i in range(200)] + [f"dup{i}" for i in range(25)]
    result = semantic_dedup(ids, x, DedupConfig(similarity_threshold=0.99, n_clusters=8, seed=0))
    easy = semantic_dedup(ids, x, DedupConfig(similarity_threshold=0.99, n_clusters=8, seed=0, keep="easy"))
    assert len(result.dropped) == len(easy.dropped) == 25
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    for i, original in enumerate(originals):
        pair = [int(original), 200 + i]
        assert result.clusters[pair[0]] == result.clusters[pair[1]]
        members = unit[result.clusters == result.clusters[pair[0]]]
        centroid = members.mean(axis=0) / np.linalg.norm(members.mean(axis=0))
        farther, closer = sorted(pair, key=lambda p: unit[p] @ centroid)
        hard_drop = [(d.id, d.duplicate_of) for d in result.dropped if d.id in (ids[pair[0]], ids[pair[1]])]
        easy_drop = [(d.id, d.duplicate_of) for d in easy.dropped if d.id in (ids[pair[0]], ids[pair[1]])]
        assert hard_drop == [(ids[closer], ids[farther])]
        assert easy_drop == [(ids[farther], ids[closer])]
    assert min(d.similarity for d in result.dropped) > 0.999


def test_dedup_ranks_by_distance_to_centroid_and_compares_with_every_earlier_item():
    # One cluster; cosine to the centroid rises a < d < b (c sits far away on the other axis).
    x = np.array([[1.0, 0.0], [1.0, 0.001], [0.0, 1.0], [1.0, 0.0005]])
    ids = ["a", "b", "c", "d"]
    hard = semantic_dedup(ids, x, DedupConfig(similarity_threshold=0.999, n_clusters=1))
    assert hard.kept_ids == ("a", "c")  # the member farthest from the centroid survives
    assert [(d.id, d.duplicate_of) for d in hard.dropped] == [("b", "d"), ("d", "a")]
    easy = semantic_dedup(ids, x, DedupConfig(similarity_threshold=0.999, n_clusters=1, keep="easy"))
    assert easy.kept_ids == ("b", "c")  # the member closest to the centroid survives
    # SemDeDup's max over earlier items: "a" goes because of "d", itself dropped for "b".
    assert [(d.id, d.duplicate_of) for d in easy.dropped] == [("a", "d"), ("d", "b")]
    with pytest.raises(ConfigError, match="similarity_threshold"):
        DedupConfig(similarity_threshold=1.5)
    with pytest.raises(ConfigError, match="keep must be one of"):
        DedupConfig(keep="first")
    with pytest.raises(EmbeddingMismatchError):
        semantic_dedup(["a"], x)


def test_blocked_similarities_match_the_full_matrix(monkeypatch):
    import training.curate.dedup as dedup

    rng = np.random.default_rng(3)
    x = np.repeat(rng.normal(size=(40, 16)), 3, axis=0) + 0.02 * rng.normal(size=(120, 16))
    ids = [f"i{k}" for k in range(120)]
    config = DedupConfig(similarity_threshold=0.98, n_clusters=2)
    whole = semantic_dedup(ids, x, config)
    monkeypatch.setattr(dedup, "_BLOCK", 7)  # many row blocks, crossing group boundaries
    blocked = semantic_dedup(ids, x, config)
    assert blocked.kept_ids == whole.kept_ids
    assert [(d.id, d.duplicate_of) for d in blocked.dropped] == [(d.id, d.duplicate_of) for d in whole.dropped]
    np.testing.assert_allclose([d.similarity for d in blocked.dropped], [d.similarity for d in whole.dropped],
                               atol=1e-5)  # float32 sums in another order
    assert 60 <= len(whole.dropped) <= 80  # most triples collapse to one record


def test_water_fill_caps_big_clusters_at_a_common_level():
    rng = np.random.default_rng(0)
    quotas = water_fill([2, 50, 10, 100], 40, rng)
    # t = 14: small clusters whole (2, 10), the two big ones share the rest as evenly as possible.
    assert quotas.sum() == 40
    assert quotas[0] == 2 and quotas[2] == 10
    assert sorted(quotas[[1, 3]].tolist()) == [14, 14]
    assert water_fill([3, 4], 100, rng).tolist() == [3, 4]
    odd = water_fill([10, 10, 10], 7, rng)
    assert odd.sum() == 7 and odd.max() - odd.min() <= 1


def test_balancing_raises_entropy_and_caps_the_largest_share():
    sizes = [int(400 / (i + 1) ** 1.3) + 3 for i in range(20)]  # power law: biggest style ~28 %
    x, labels = _blobs(sizes, spread=0.1, seed=2)
    tree = hierarchical_kmeans(x, HierarchyConfig(level_sizes=(40, 8), seed=0))
    selected = balanced_sample(tree, 200, seed=0)
    assert selected.size == 200 and len(set(selected.tolist())) == 200
    report = balance_report(labels.tolist(), selected, "style")
    assert report.before.largest_share > 0.25
    assert report.after.entropy > report.before.entropy + 0.3
    assert report.after.largest_share < 0.5 * report.before.largest_share
    uniform = label_stats(labels[np.random.default_rng(0).choice(labels.size, 200, replace=False)].tolist())
    assert report.after.entropy > uniform.entropy + 0.2  # better than a plain random subset
    assert report.after.entropy <= report.max_entropy == pytest.approx(math.log(20))
    # Deterministic for a seed.
    np.testing.assert_array_equal(selected, balanced_sample(tree, 200, seed=0))


def test_hierarchy_structure_and_closest_strategy():
    x, _ = _blobs([20, 20, 20, 20], seed=4)
    tree = hierarchical_kmeans(x, HierarchyConfig(level_sizes=(8, 3), seed=1))
    assert tree.parents[0].shape == (80,) and tree.parents[1].shape == (8,)
    assert tree.sizes(1).sum() == tree.sizes(2).sum() == 80
    assert sum(len(c) for c in tree.children(2)) == 8
    chosen = balanced_sample(tree, 16, strategy="closest")
    assert chosen.size == 16


def test_label_stats_by_hand():
    stats = label_stats(["a", "a", "b", "c"])
    assert stats.entropy == pytest.approx(-(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25)))
    assert (stats.largest_label, stats.largest_share, stats.distinct) == ("a", 0.5, 3)


def test_balance_bad_configs():
    with pytest.raises(ConfigError, match="strictly decrease"):
        HierarchyConfig(level_sizes=(10, 10))
    x, _ = _blobs([5, 5])
    with pytest.raises(ConfigError, match="only 10 points"):
        hierarchical_kmeans(x, HierarchyConfig(level_sizes=(20, 2)))
    tree = hierarchical_kmeans(x, HierarchyConfig(level_sizes=(4, 2)))
    with pytest.raises(ConfigError, match="between 1 and 10"):
        balanced_sample(tree, 11)
    with pytest.raises(ConfigError, match="strategy"):
        balanced_sample(tree, 3, strategy="best")


def _concept_of_each_cluster(tree, labels):
    """The majority ground-truth concept of every non-empty level-1 cluster."""
    clusters = tree.parents[0]
    return [int(np.bincount(labels[clusters == c]).argmax()) for c in np.unique(clusters)]


def test_resampling_spreads_the_centroids_evenly_over_concepts():
    """Vo et al.'s point: plain k-means spends centroids in proportion to density, so a dominant
    concept owns many clusters; resampled k-means gives the concepts more equal numbers."""
    sizes = [int(1200 / (i + 1) ** 1.5) + 5 for i in range(12)]  # 1205, 429, ... 31: heavily skewed
    x, labels = _blobs(sizes, spread=0.1, seed=2)
    stats = {0: [], 10: []}
    dominant = {0: 0, 10: 0}  # level-1 clusters of the 1205-point concept, over the seeds
    for steps in stats:
        for seed in range(3):
            tree = hierarchical_kmeans(x, HierarchyConfig(level_sizes=(24, 4), resample_steps=steps, seed=seed))
            concepts = _concept_of_each_cluster(tree, labels)
            stats[steps].append(label_stats(concepts))
            dominant[steps] += concepts.count(0)
    mean_entropy = {steps: np.mean([s.entropy for s in runs]) for steps, runs in stats.items()}
    assert mean_entropy[10] > mean_entropy[0] + 0.08  # clusters per concept: flatter
    assert dominant[10] * 2 <= dominant[0]  # 22 -> 8 of 72 with these seeds
    assert max(s.largest_share for s in stats[10]) < max(s.largest_share for s in stats[0])
    assert all(s.distinct == 12 for s in stats[10])  # every concept keeps a cluster of its own
    selected = balanced_sample(tree, 240, seed=0)
    assert label_stats(labels[selected].tolist()).entropy > label_stats(labels.tolist()).entropy + 0.4
    with pytest.raises(ConfigError, match="one positive size per level"):
        HierarchyConfig(level_sizes=(24, 4), sample_sizes=(5,))
