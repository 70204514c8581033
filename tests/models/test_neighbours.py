"""Nearest neighbours (faiss) against a brute-force reference with known answers."""

import numpy as np

from metarec.models.content.base import content_neighbours
from metarec.ranking import nearest, top_k


def test_nearest_matches_a_matrix_product_and_a_sort():
    rng = np.random.default_rng(0)
    base = rng.standard_normal((500, 16)).astype(np.float32)
    queries = rng.standard_normal((40, 16)).astype(np.float32)
    scores, idx = nearest(base, queries, 7)
    sim = queries @ base.T
    np.testing.assert_array_equal(idx, top_k(sim, 7))
    np.testing.assert_allclose(scores, np.take_along_axis(sim, idx, axis=1), rtol=1e-5, atol=1e-5)
    # More than there is: all of it, best first; nothing asked: nothing.
    assert nearest(base[:3], queries, 10)[1].shape == (40, 3)
    assert nearest(base, queries[:0], 5)[1].shape == (0, 5)


def test_content_neighbours_are_the_nearest_warm_items_never_the_item_itself():
    rng = np.random.default_rng(1)
    v = rng.standard_normal((60, 8)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    warm = np.zeros(60, dtype=bool)
    warm[::2] = True  # even items are warm
    nb = content_neighbours(v, warm, k=5, temperature=0.1)
    assert nb.shape == (60, 60)
    np.testing.assert_allclose(np.asarray(nb.sum(axis=1)).ravel(), 1.0, rtol=1e-5)
    warm_idx = np.flatnonzero(warm)
    for i in range(60):
        sim = v[warm_idx] @ v[i]
        sim[warm_idx == i] = -np.inf
        expected = set(warm_idx[np.argsort(-sim)[:5]])
        row = nb.getrow(i)
        assert set(row.indices) == expected and i not in row.indices
        # Softmax(cosine / temperature): the nearest gets the largest weight.
        assert row.indices[np.argmax(row.data)] == warm_idx[np.argmax(sim)]
    sub = content_neighbours(v, warm, k=5, temperature=0.1, rows=np.array([3, 4]))
    np.testing.assert_allclose(sub.toarray(), nb[[3, 4]].toarray(), rtol=1e-6)
