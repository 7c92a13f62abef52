import numpy as np
import pytest

from training.data.errors import ConfigError, EmbeddingMismatchError
from training.curate.references import ReferenceConfig, select_style_references


def _random_set(seed=0, n=60):
    rng = np.random.default_rng(seed)
    styles = [f"s{i % 4}" for i in range(n)]
    contents = [f"c{rng.integers(6)}" for _ in range(n)]
    ids = [f"img{i:03d}" for i in range(n)]
    return ids, styles, contents, rng.normal(size=(n, 8)), rng.normal(size=(n, 5))


def test_reference_shares_style_never_content_nor_itself():
    ids, styles, contents, style_emb, content_emb = _random_set()
    choices = select_style_references(ids, styles, contents, style_emb, content_emb, ReferenceConfig(0.5))
    index = {i: k for k, i in enumerate(ids)}
    assert [c.id for c in choices] == ids
    for k, choice in enumerate(choices):
        assert choice.reference_id is not None
        j = index[choice.reference_id]
        assert j != k
        assert styles[j] == styles[k]
        assert contents[j] != contents[k]


def test_matches_brute_force_argmax():
    ids, styles, contents, style_emb, content_emb = _random_set(seed=3)
    lam = 0.7
    s = style_emb / np.linalg.norm(style_emb, axis=1, keepdims=True)
    c = content_emb / np.linalg.norm(content_emb, axis=1, keepdims=True)
    choices = select_style_references(ids, styles, contents, style_emb, content_emb, ReferenceConfig(lam))
    for k, choice in enumerate(choices):
        candidates = [j for j in range(len(ids)) if styles[j] == styles[k] and contents[j] != contents[k]]
        best = max(candidates, key=lambda j: s[k] @ s[j] - lam * (c[k] @ c[j]))
        assert choice.reference_id == ids[best]
        assert choice.score == pytest.approx(s[k] @ s[best] - lam * (c[k] @ c[best]))


def test_content_penalty_changes_the_choice():
    # "x" is closest in style but shares the query's look of content; "y" is a bit further in style
    # but depicts something else. lambda = 0 picks x, lambda = 1 picks y.
    ids = ["q", "x", "y"]
    style = np.array([[1.0, 0.0], [0.99, 0.14], [0.95, 0.31]])
    content = np.array([[1.0, 0.0], [1.0, 0.05], [0.0, 1.0]])
    args = (ids, ["s"] * 3, ["cq", "cx", "cy"], style, content)
    assert select_style_references(*args, ReferenceConfig(0.0))[0].reference_id == "x"
    assert select_style_references(*args, ReferenceConfig(1.0))[0].reference_id == "y"


def test_ties_break_to_the_smallest_id_in_any_input_order():
    base_ids = ["q", "m", "b", "k"]
    style = np.array([[1.0, 0.0], [0.6, 0.8], [0.6, 0.8], [0.6, 0.8]])  # m, b, k tie exactly
    for order in ([0, 1, 2, 3], [0, 3, 2, 1], [2, 0, 3, 1], [3, 1, 0, 2]):
        ids = [base_ids[i] for i in order]
        contents = [f"c_{i}" for i in ids]
        choices = select_style_references(ids, ["s"] * 4, contents, style[order])
        assert {c.id: c.reference_id for c in choices}["q"] == "b"


def test_no_candidate_gives_none_with_reason():
    choices = select_style_references(["a", "b", "c"], ["s1", "s1", "s2"], ["c1", "c1", "c9"],
                                      np.eye(3), np.eye(3))
    assert [c.reference_id for c in choices] == [None, None, None]
    assert "different content" in choices[0].reason


def test_bad_inputs():
    with pytest.raises(ConfigError, match="lambda"):
        ReferenceConfig(content_weight=-1)
    with pytest.raises(EmbeddingMismatchError, match="style embeddings have 2 rows for 3 records"):
        select_style_references(["a", "b", "c"], ["s"] * 3, ["1", "2", "3"], np.ones((2, 2)))
    with pytest.raises(EmbeddingMismatchError, match="content embeddings has 2"):
        select_style_references(["a", "b", "c"], ["s"] * 3, ["1", "2", "3"], np.ones((3, 2)), np.ones((2, 2)))
