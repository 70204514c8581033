"""The hybrid's scores: the weighted sum of its standardised signals, however it computes them."""

import copy

import numpy as np
import pytest

from metarec.data import Queries
from metarec.data.synthetic import WorldConfig, make_world
from metarec.models import make_scorer


def _reference(scorer, queries):
    """Each of the five signals standardised per user (what the weights are fit on), summed
    with the cold items' weights on items without training pairs and, on items with them, the
    warm weights moved towards the ``warm-after-new`` row by the share of the user's history
    that has no training pairs, and for a user the model was not trained on by at least one
    over the history's length; one user at a time."""
    comp = scorer.components_
    signals = scorer._signals(queries.history, comp)  # (5, n, I)
    w0, w1, w2 = scorer.weights_
    out = np.empty(signals.shape[1:], dtype=np.float64)
    for u in range(signals.shape[1]):
        hist = queries.history[u].indices
        share = (~comp.seen[hist]).mean() if len(hist) else 0.0
        user = queries.users[u]
        if len(hist) and (user < 0 or user >= len(scorer.known_users_) or not scorer.known_users_[user]):
            share = max(share, 1 / len(hist))
        warm = w0 + share * (w2 - w0)
        w = np.where(comp.seen[None, :], warm[:, None], w1[:, None])
        out[u] = np.einsum("kI,kI->I", signals[:, u], w)
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


def test_a_history_of_new_items_takes_the_third_weight_row(fitted):
    """Items with training pairs are weighed by the ``warm-after-new`` row for a history of
    items without any, by the warm row for a known user's history with training pairs, and
    in proportion for a history of both; a user the model was not trained on moves towards
    the third row by at least one over the history's length (one item: all the way); items
    without training pairs keep the cold row."""
    data, scorer = fitted
    scorer = copy.deepcopy(scorer)
    w0, w1, _ = scorer.weights_
    w2 = w0 * np.array([0.5, 1, 1, 1, 3], np.float32)
    scorer.weights_ = np.stack([w0, w1, w2])
    warm = [int(i) for i in scorer.components_.seen_idx[5:9]]
    (new,) = scorer.add_items(scorer.item_vectors_[[warm[0]]] + 1e-3, ["a near copy of a warm item"])
    comp = scorer.components_
    known = int(np.flatnonzero(scorer.known_users_)[0])
    users = [known, known, known, -1, -1, -1, scorer.n_users_ + 3]
    histories = [[new], [new, warm[0]], [warm[0]], [warm[0]], warm, [new, *warm], warm[:2]]
    expected_w = [w2, (w0 + w2) / 2, w0, w2, w0 + (w2 - w0) / 4, w0 + (w2 - w0) / 5, (w0 + w2) / 2]
    q = Queries.from_histories(users, histories, scorer.n_items_)
    got = scorer.score(q)
    signals = scorer._signals(q.history, comp)
    for u, warm_w in enumerate(expected_w):
        w = np.where(comp.seen[None, :], warm_w[:, None], w1[:, None])
        expected = np.einsum("kI,kI->I", signals[:, u], w)
        expected[~(scorer.has_content_ | comp.seen)] = np.nan
        assert got[u] == pytest.approx(expected, abs=2e-4, nan_ok=True)
    assert got == pytest.approx(_reference(scorer, q), abs=2e-4, nan_ok=True)
    # The warm row alone would score the new item's follower, and the new user, otherwise.
    for u in (0, 3):
        only_warm = np.einsum("kI,k->I", signals[:, u], w0)
        assert not np.allclose(got[u][comp.seen], only_warm[comp.seen], atol=1e-2)


def test_a_model_saved_with_two_weight_rows_scores_as_it_did(fitted):
    """Models saved before the third row: a new-item history takes the warm row, as then."""
    data, scorer = fitted
    scorer = copy.deepcopy(scorer)
    state = scorer.get_state()
    state["weights"] = state["weights"][:2] * np.float32(1.5)  # distinct from the fitted rows
    scorer.set_state(state)
    assert scorer.weights_.shape == (3, 5) and np.array_equal(scorer.weights_[2], scorer.weights_[0])
    new = int(np.flatnonzero(~scorer.components_.seen & scorer.has_content_)[0])
    q = Queries.from_histories([-1], [[new]], scorer.n_items_)
    assert scorer.score(q) == pytest.approx(_reference(scorer, q), abs=2e-4, nan_ok=True)


def test_the_third_row_is_fit_on_held_out_pairs_and_leaves_the_first_two(monkeypatch):
    """Fitting the ``warm-after-new`` row does not move the other two (a history of items with
    training pairs scores exactly as before it existed); with too few validation users it is
    the warm row."""
    import metarec.models.content.hybrid as hybrid

    data = make_world(WorldConfig(n_users=500, n_items=90, seed=4))
    fitted = make_scorer("hybrid", encoder="hashing-64").fit(data)
    assert not np.allclose(fitted.weights_[2], fitted.weights_[0], atol=1e-3)
    monkeypatch.setattr(hybrid, "MIN_NEW_HISTORY_USERS", 10**9)
    without = make_scorer("hybrid", encoder="hashing-64").fit(data)
    assert np.array_equal(without.weights_[:2], fitted.weights_[:2])
    assert np.array_equal(without.weights_[2], without.weights_[0])
