"""Splits: property tests on random logs, known answers on small ones."""

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from metarec.data.splits import cold_item, cold_user, holdout, leave_last, temporal
from metarec.testing import tiny_dataset

histories = st.lists(st.lists(st.integers(0, 14), min_size=1, max_size=30), min_size=2, max_size=25)


def pairs_of(m):
    r, c = m.nonzero()
    return set(zip(r.tolist(), c.tolist()))


@settings(max_examples=40, deadline=None)
@given(histories, st.integers(0, 2**16))
def test_holdout_partitions_pairs_per_user(hs, seed):
    data = tiny_dataset(hs)
    split = holdout(data, seed)
    train = pairs_of(split.train.matrix())
    test = set()
    for qs in split.query_sets:
        rows = qs.queries.users
        test |= {(int(rows[r]), c) for r, c in pairs_of(qs.relevant)}
        assert pairs_of(qs.queries.history) <= {(r, c) for r, c in pairs_of(split.train.matrix()[rows])}
    all_pairs = pairs_of(data.matrix())
    assert train | test == all_pairs and not (train & test)
    per_user = pd.Series([u for u, _ in all_pairs]).value_counts()
    n_test = pd.Series([u for u, _ in test]).value_counts()
    for u, n in per_user.items():
        assert n_test.get(u, 0) == n - int(np.floor(0.75 * n + 0.5))
    # Same seed, same split.
    assert pairs_of(holdout(data, seed).train.matrix()) == train


@settings(max_examples=40, deadline=None)
@given(histories, st.integers(0, 100))
def test_temporal_test_is_the_last_fifth_by_time(hs, seed):
    data = tiny_dataset(hs)
    split = temporal(data, seed)
    n_test = data.n_interactions - split.train.n_interactions
    assert n_test == int(np.ceil(data.n_interactions * 0.2))
    cut = split.train.interactions["timestamp"].max()
    test_times = data.interactions["timestamp"].sort_values().iloc[data.n_interactions - n_test :]
    assert (test_times >= cut).all()


def test_leave_last_known_answer():
    data = tiny_dataset([[0, 1, 2], [3, 1], [4]])
    split = leave_last(data, 0)
    qs, new = split.query_sets
    assert qs.segment == "warm" and qs.queries.users.tolist() == [0, 1]  # user 2 has a single item: nothing to learn from
    assert [qs.relevant[i].indices.tolist() for i in range(2)] == [[2], [1]]
    assert pairs_of(split.train.matrix()) == {(0, 0), (0, 1), (1, 3), (2, 4)}
    # Item 2 has no training pair: user 0 is asked for it again, in the whole catalogue.
    assert new.segment == "cold-item" and new.candidates is None and new.queries.users.tolist() == [0]
    assert new.relevant[0].indices.tolist() == [2] and new.queries.history[0].indices.tolist() == [0, 1]


@settings(max_examples=40, deadline=None)
@given(histories, st.integers(0, 2**16))
def test_the_cold_item_segment_is_the_test_pairs_on_items_without_training_pairs(hs, seed):
    data = tiny_dataset(hs)
    split = holdout(data, seed)
    trained = set(np.flatnonzero(split.train.matrix().getnnz(axis=0)).tolist())
    expected = {(int(qs.queries.users[r]), c) for qs in split.query_sets if qs.segment == "warm"
                for r, c in pairs_of(qs.relevant) if c not in trained}  # fmt: skip
    new = [qs for qs in split.query_sets if qs.segment == "cold-item"]
    assert len(new) == (1 if expected else 0)
    if new:
        (qs,) = new
        assert {(int(qs.queries.users[r]), c) for r, c in pairs_of(qs.relevant)} == expected
        assert qs.candidates is None and (qs.relevant.getnnz(axis=1) > 0).all()


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**16))
def test_cold_user_support_query_and_eligibility(seed):
    rng = np.random.default_rng(seed)
    hs = [list(rng.permutation(40)[: rng.integers(1, 40)]) for _ in range(50)]
    data = tiny_dataset(hs, 40)
    split = cold_user(data, seed)
    train_users = set(np.flatnonzero(split.train.matrix().getnnz(axis=1)))
    for qs in split.query_sets:
        n = qs.support
        assert qs.segment == "cold-user"
        users = qs.queries.users
        assert not (set(users.tolist()) & train_users)
        for row, u in enumerate(users):
            sup = qs.queries.history[row].indices
            qry = qs.relevant[row].indices
            assert len(sup) == n and len(qry) >= 5 and not set(sup) & set(qry)
            assert sorted(sup.tolist()) == sorted(hs[u][:n])  # the first n by time
        eligible = [u for u in range(50) if u not in train_users and len(hs[u]) >= n + 5]
        assert sorted(users.tolist()) == eligible
    held_out = set(range(50)) - train_users
    assert len(held_out) == 10


def test_cold_item_items_have_no_training_events():
    rng = np.random.default_rng(0)
    data = tiny_dataset([list(rng.permutation(30)[:10]) for _ in range(40)], 30)
    split = cold_item(data, 7)
    (qs,) = split.query_sets
    assert len(qs.candidates) == 6
    assert split.train.matrix()[:, qs.candidates].nnz == 0
    assert set(qs.relevant.nonzero()[1]) <= set(qs.candidates.tolist())
    assert qs.queries.history[:, qs.candidates].nnz == 0


def test_melu_on_data_without_ratings_is_an_error_not_a_perfect_score():
    """Every value 1 (clicks): MAE 0 and nDCG 1 for every reference, by construction."""
    import pytest

    from metarec.data.splits import melu
    from metarec.errors import DataError

    data = tiny_dataset([list(range(15)) for _ in range(10)], 20)
    with pytest.raises(DataError, match="protocol 'melu' evaluates predicted ratings, and every pair of .* has the value 1"):
        melu(data, 0)
