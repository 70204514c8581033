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


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([1, 3, 10, 100, 1000]), st.sampled_from([2, 50, 10**6]),
       st.floats(0.0, 0.9), st.sampled_from([20_000, 100_003]))  # fmt: skip
def test_a_long_row_cut_to_candidates_ranks_exactly_as_the_whole_row(seed, k, levels, nan_share, m):
    """Serving ranks a long row (a large catalogue) among the items at or above a sampled
    threshold; the answer is the whole row's, ties and popularity ties included."""
    from metarec.ranking import _candidates, _top_k_exact

    rng = np.random.default_rng(seed)
    row = rng.integers(0, levels, size=m).astype(np.float32)
    row[rng.random(m) < nan_share] = np.nan
    tiebreak = rng.integers(0, 5, size=m).astype(np.float64)  # popularity: ties among ties
    got = top_k(row[None, :], k, tiebreak)[0]
    whole = _top_k_exact(np.where(np.isnan(row), -np.inf, row), k, tiebreak)
    np.testing.assert_array_equal(got, whole)
    s = np.where(np.isnan(row), -np.inf, row)
    np.testing.assert_array_equal(s[got], -np.sort(-s)[:k])  # the k best scores, best first
    if levels == 10**6 and nan_share < 0.5:
        cand = _candidates(row, k)
        step = m // 4096  # about 2k + 8 steps of the sample are expected to pass (1.5x that in 200 draws)
        assert cand is not None and k <= len(cand) <= 4 * (2 * k + 8 * step) < m  # the cut was made, and it is small


def test_a_row_of_one_score_or_no_finite_score_is_ranked_whole():
    from metarec.ranking import _candidates

    pop = np.arange(20_000, dtype=np.float64)
    np.testing.assert_array_equal(top_k(np.zeros((1, 20_000)), 3, pop), [[19_999, 19_998, 19_997]])
    nan = np.full(20_000, np.nan)
    assert _candidates(nan, 3) is None
    np.testing.assert_array_equal(top_k(nan[None, :], 2, pop), [[19_999, 19_998]])  # NaN last, as before


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 30), st.integers(1, 25), st.floats(0, 1), st.integers(0, 2**32 - 1))
def test_explore_new_keeps_the_share_in_every_prefix_and_each_kind_in_score_order(m, k, share, seed):
    """Every first p places hold at least floor(p * share) new items (while any are left), the
    rest is the scores' order, and share 0 changes nothing."""
    from metarec.ranking import explore_new

    rng = np.random.default_rng(seed)
    scores = rng.random((2, m))
    scores[rng.random((2, m)) < 0.2] = np.nan  # unscorable: never shown
    is_new = rng.random(m) < 0.3

    def ranked(s):
        top = top_k(s, k)
        return np.where(np.isnan(np.take_along_axis(s, top, axis=1)), -1, top)

    order, news = ranked(scores), ranked(np.where(is_new, scores, np.nan))
    got = explore_new(order, news, is_new, k, share)
    assert got.shape == (2, k)
    for r in range(2):
        shown = [int(i) for i in got[r] if i >= 0]
        scorable = np.flatnonzero(~np.isnan(scores[r]))
        assert len(shown) == len(set(shown)) == min(k, len(scorable))  # no repeat, no gap
        assert (got[r][len(shown) :] == -1).all() and set(shown) <= set(scorable.tolist())
        n_new = int(is_new[scorable].sum())
        for p in range(1, len(shown) + 1):
            assert sum(is_new[i] for i in shown[:p]) >= min(int(np.floor(p * share + 1e-9)), n_new)
        for kind in (True, False):  # each kind in its score order, from its best
            mine = [i for i in shown if is_new[i] == kind]
            best = scorable[is_new[scorable] == kind]
            assert mine == best[np.argsort(-scores[r][best], kind="stable")][: len(mine)].tolist()
    if share == 0:
        np.testing.assert_array_equal(got[:, : order.shape[1]], order)
