"""The hybrid's scores: the weighted sum of its standardised signals, however it computes them."""

import copy

import numpy as np
import pytest

from metarec.data import Queries
from metarec.data.synthetic import WorldConfig, make_world
from metarec.models import make_scorer


def _reference(scorer, queries):
    """Each of the five signals standardised per user (what the weights are fit on), summed
    with the warm items' weights on items with training pairs and the cold ones' elsewhere."""
    comp = scorer.components_
    signals = scorer._signals(queries.history, comp)  # (5, n, I)
    w = np.where(comp.seen[None, :], scorer.weights_[0][:, None], scorer.weights_[1][:, None])
    out = np.einsum("knI,kI->nI", signals, w)
    out[:, ~(scorer.has_content_ | comp.seen)] = np.nan
    return out


@pytest.fixture(scope="module")
def fitted():
    # Items 0-9 get no interaction: cold, scored from their content through the cold weights.
    data = make_world(WorldConfig(n_users=150, n_items=90, seed=3))
    keep = ~data.interactions["item"].isin(range(10)).to_numpy()
    data = data.subset(keep)
    return data, make_scorer("hybrid", encoder="hashing-64").fit(data)


def _queries(data, n_items, users):
    return Queries.from_histories(users, [list(data.matrix()[u].indices) for u in users], n_items)


def test_the_score_is_the_weighted_sum_of_the_standardised_signals(fitted):
    data, scorer = fitted
    assert (~scorer.components_.seen).sum() >= 10 and not np.allclose(scorer.weights_[0], scorer.weights_[1])
    many = _queries(data, scorer.n_items_, list(range(40)))  # a batch, as evaluation scores
    assert scorer.score(many) == pytest.approx(_reference(scorer, many), abs=2e-4, nan_ok=True)
    for u in (0, 7):  # one user, as the service scores
        one = _queries(data, scorer.n_items_, [u])
        assert scorer.score(one) == pytest.approx(_reference(scorer, one), abs=2e-4, nan_ok=True)
    empty = Queries.from_histories([-1], [[]], scorer.n_items_)  # a new user with no history
    assert scorer.score(empty) == pytest.approx(_reference(scorer, empty), abs=2e-4, nan_ok=True)


def test_items_added_or_re_encoded_are_scored_from_their_new_vectors(fitted):
    data, scorer = fitted
    scorer = copy.deepcopy(scorer)
    q = _queries(data, scorer.n_items_, [3])
    scorer.score(q)  # the cached moments of the first catalogue
    (new,) = scorer.add_items(scorer.item_vectors_[[20]] + 0.01, ["a copy of item 20"])
    q = _queries(data, scorer.n_items_, [3, 4])
    got = scorer.score(q)
    assert got == pytest.approx(_reference(scorer, q), abs=2e-4, nan_ok=True)
    assert np.isfinite(got[:, new]).all()
    warm = int(np.flatnonzero(scorer.components_.seen)[0])
    before = scorer.score(q)[:, warm]
    scorer.update_items(np.array([warm]), scorer.item_vectors_[[new]], ["another text"])
    after = scorer.score(q)
    assert after == pytest.approx(_reference(scorer, q), abs=2e-4, nan_ok=True)
    assert not np.allclose(before, after[:, warm])


def test_a_new_item_in_the_history_stands_for_its_warm_content_neighbours(fitted):
    """The collaborative signal of a history holding an item without training pairs is EASE
    applied to that item's neighbour row (its warm neighbours, softmax-weighted), as a cold
    candidate borrows its neighbours' scores. Before, such an item added nothing: a user
    whose history was a new item got the same signal as a user with no history."""
    from metarec.models.content.hybrid import _standardise

    data, scorer = fitted
    scorer = copy.deepcopy(scorer)
    comp = scorer.components_
    warm = int(comp.seen_idx[5])
    (new,) = scorer.add_items(scorer.item_vectors_[[warm]] + 1e-3, ["a near copy of a warm item"])
    comp = scorer.components_
    cold, rows = scorer._cold_neighbours(comp)
    row = rows[int(np.flatnonzero(cold == new)[0])]
    assert row.nnz and abs(row.sum() - 1) < 1e-5
    q = Queries.from_histories([-1], [[new]], scorer.n_items_)
    collab = dict(scorer._other_signals(q.history.astype(np.float32), comp))[0]
    own = np.asarray(row @ comp.ease)  # (1, W)
    expected = np.empty((1, scorer.n_items_), np.float32)
    expected[:, comp.seen_idx] = own
    expected[:, cold] = np.asarray(rows @ own.T).T
    expected = _standardise(expected, scorer._warm_weights(comp))
    np.testing.assert_allclose(collab, expected, atol=2e-4)
    # Its neighbours are mostly the warm item it copies, so the lists agree.
    like = dict(scorer._other_signals(Queries.from_histories([-1], [[warm]], scorer.n_items_).history.astype(np.float32), comp))[0]
    assert np.corrcoef(collab[0, comp.seen_idx], like[0, comp.seen_idx])[0, 1] > 0.8
    assert scorer.score(q) == pytest.approx(_reference(scorer, q), abs=2e-4, nan_ok=True)
