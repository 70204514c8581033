"""Metrics: hand-computed values and properties."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from metarec.evaluation import metrics as M


def test_hand_computed_ranking_metrics():
    # One user, 3 relevant items; hits at ranks 1 and 3 of the top 5.
    hits = np.array([[1, 0, 1, 0, 0]], dtype=bool)
    n_rel = np.array([3])
    v = {k: float(x[0]) for k, x in M.ranking_metrics(hits, n_rel, [3, 5]).items()}
    assert v["Recall@3"] == pytest.approx(2 / 3)
    assert v["Precision@5"] == pytest.approx(2 / 5)
    assert v["HitRate@3"] == 1.0
    assert v["MRR@5"] == 1.0
    dcg = 1 + 1 / math.log2(4)
    idcg = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert v["NDCG@3"] == pytest.approx(dcg / idcg)
    assert v["MAP@3"] == pytest.approx((1 + 2 / 3) / 3)
    # First hit at rank 4: MRR@5 = 1/4, nothing within 3.
    hits2 = np.array([[0, 0, 0, 1, 0]], dtype=bool)
    v2 = M.ranking_metrics(hits2, np.array([1]), [3, 5])
    assert v2["MRR@5"][0] == 0.25 and v2["MRR@3"][0] == 0.0
    assert v2["NDCG@5"][0] == pytest.approx(1 / math.log2(5))


def test_ndcg_ideal_uses_min_k_relevant():
    hits = np.ones((1, 2), dtype=bool)
    assert M.ndcg(hits, np.array([10]), 2)[0] == pytest.approx(1.0)


def test_short_lists_count_as_misses():
    v = M.ranking_metrics(np.array([[True]]), np.array([2]), [5])
    assert v["Recall@5"][0] == 0.5 and v["Precision@5"][0] == pytest.approx(0.2)


@settings(max_examples=100, deadline=None)
@given(arrays(bool, st.tuples(st.integers(1, 6), st.integers(1, 12))), st.integers(0, 5))
def test_ranking_metric_properties(hits, extra):
    n_rel = hits.sum(axis=1) + extra
    n_rel = np.maximum(n_rel, 1)
    k = hits.shape[1]
    vals = M.ranking_metrics(hits, n_rel, [1, k])
    for name, x in vals.items():
        assert np.all((x >= 0) & (x <= 1 + 1e-12)), name
    assert np.all(vals[f"Recall@{k}"] >= vals["Recall@1"])
    assert np.all(vals[f"HitRate@{k}"] >= vals["HitRate@1"])
    # Moving every hit to the front never lowers NDCG.
    front = np.sort(hits.astype(int), axis=1)[:, ::-1].astype(bool)
    assert np.all(M.ndcg(front, n_rel, k) >= M.ndcg(hits, n_rel, k) - 1e-12)
    perfect = M.ndcg(front, hits.sum(axis=1), k)
    assert np.allclose(perfect[hits.any(axis=1)], 1.0)


def test_coverage():
    assert M.coverage(np.array([[0, 1], [1, -1]]), 4) == 0.5


def test_pointwise_hand_computed():
    y = np.array([1, 0, 1, 0])
    s = np.array([0.9, 0.1, 0.4, 0.4])
    assert M.auc(y, s) == pytest.approx(0.875)  # 3.5 of 4 pairs ordered (a tie counts 1/2)
    assert M.log_loss([1, 0], [0.8, 0.2]) == pytest.approx(-math.log(0.8))
    assert M.rmse([1, 2, 3], [1, 2, 5]) == pytest.approx(math.sqrt(4 / 3))
    assert M.mae([1, 2, 3], [1, 2, 5]) == pytest.approx(2 / 3)
    assert math.isnan(M.auc([1, 1], [0.2, 0.3]))


@settings(max_examples=100, deadline=None)
@given(arrays(np.int8, st.integers(2, 30), elements=st.integers(0, 1)), st.integers(0, 2**16))
def test_auc_matches_pair_counting(y, seed):
    s = np.random.default_rng(seed).integers(0, 5, len(y)).astype(float)
    pos, neg = s[y == 1], s[y == 0]
    if len(pos) == 0 or len(neg) == 0:
        assert math.isnan(M.auc(y, s))
        return
    brute = np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg])
    assert M.auc(y, s) == pytest.approx(brute)
