"""Top-k selection: ties broken by a second key (the items' popularity when serving)."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from metarec.ranking import top_k


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 40), st.integers(1, 50), st.integers(0, 2**32 - 1), st.integers(1, 4))
def test_ties_follow_the_tiebreak_exactly_as_a_full_sort_would(m, k, seed, levels):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, levels, size=(3, m)).astype(np.float64)  # few levels: many ties
    scores[rng.random((3, m)) < 0.2] = np.nan
    tiebreak = rng.permutation(m).astype(np.float64)  # distinct, so the answer is unique
    got = top_k(scores, k, tiebreak)
    s = np.where(np.isnan(scores), -np.inf, scores)
    want = np.stack([np.lexsort((-tiebreak, -row))[: min(k, m)] for row in s])
    np.testing.assert_array_equal(got, want)


def test_a_row_of_equal_scores_is_the_tiebreak_order_and_distinct_scores_ignore_it():
    pop = np.array([3.0, 50.0, 7.0, 20.0, 1.0])
    np.testing.assert_array_equal(top_k(np.zeros((1, 5)), 3, pop), [[1, 3, 2]])
    scores = np.array([[0.5, 0.1, 0.9, 0.3, 0.7]])
    np.testing.assert_array_equal(top_k(scores, 4, pop), top_k(scores, 4))
