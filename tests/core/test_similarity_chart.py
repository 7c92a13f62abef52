"""The similarity matrix of style references: values, summary line and chart."""

import numpy as np
import pytest
import torch

from styleexpert_core.similarity_chart import cosine_matrix, similarity_chart, similarity_summary


def test_similarity_summary_names_the_pairs_and_the_odd_one():
    embeddings = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]], dtype=np.float32)
    matrix = cosine_matrix(torch.from_numpy(embeddings))
    line = similarity_summary(matrix, ["a", "b", "c"])
    assert line.startswith("3 style references; mean similarity") and "closest a & b (0.994)" in line
    assert "most apart a & c (0.000)" in line and "least like the others: c" in line
    chart = similarity_chart(matrix, ["a", "b", "c"])
    assert chart.shape[1] >= 560 and chart.dtype == np.uint8


def test_one_reference_and_bad_embeddings():
    assert similarity_summary(np.ones((1, 1), np.float32), ["a"]).startswith("1 style reference")
    assert similarity_chart(np.ones((1, 1), np.float32), ["a"]).shape[1] >= 560
    with pytest.raises(ValueError, match="expected embeddings"):
        cosine_matrix(torch.zeros(0, 4))
