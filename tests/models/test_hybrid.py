"""The hybrid's scores: the weighted sum of its standardised signals, however it computes them."""

import copy

import numpy as np
import pytest

from metarec.data import Queries
from metarec.data.synthetic import WorldConfig, make_world
from metarec.models import make_scorer


def _reference(scorer, queries):
    """Each of the five signals standardised per user (what the weights are fit on), summed
    with the cold items' weights on items without training pairs and, on items with them: for
    a user the model was not trained on, the ``new-user`` row (all the way up to
    ``new_user_support`` items, by ``support / items`` beyond, the rest the warm row), for a
    known user the warm row; either moved towards the ``warm-after-new`` row by the share of
    the history that has no training pairs. One user at a time."""
    comp = scorer.components_
    signals = scorer._signals(queries.history, comp)  # (5, n, I)
    w0, w1, w2, w3 = scorer.weights_
    out = np.empty(signals.shape[1:], dtype=np.float64)
    for u in range(signals.shape[1]):
        hist = queries.history[u].indices
        share = (~comp.seen[hist]).mean() if len(hist) else 0.0
        user = queries.users[u]
        lean = 0.0
        if len(hist) and (user < 0 or user >= len(scorer.known_users_) or not scorer.known_users_[user]):
            lean = min(1.0, scorer.config.new_user_support / len(hist))
        base = w0 + lean * (w3 - w0)
        warm = base + share * (w2 - base)
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


def test_each_history_takes_its_weight_rows(fitted):
    """Items with training pairs are weighed: for a known user by the warm row; for a user the
    model was not trained on by the ``new-user`` row up to ``new_user_support`` items and by
    ``support / items`` of it beyond; either moved towards the ``warm-after-new`` row by the
    history's share of items without training pairs (all new: that row alone). Items without
    training pairs keep the cold row."""
    data, scorer = fitted
    scorer = copy.deepcopy(scorer)
    w0, w1 = scorer.weights_[:2]
    w2 = w0 * np.array([0.5, 1, 1, 1, 3], np.float32)
    w3 = w0 * np.array([0.2, 2, 1, 0.5, 5], np.float32)
    scorer.weights_ = np.stack([w0, w1, w2, w3])
    assert scorer.config.new_user_support == 5
    warm = [int(i) for i in scorer.components_.seen_idx[5:15]]
    (new,) = scorer.add_items(scorer.item_vectors_[[warm[0]]] + 1e-3, ["a near copy of a warm item"])
    comp = scorer.components_
    known = int(np.flatnonzero(scorer.known_users_)[0])
    cases = [  # user, history, the weights of its items with training pairs
        (known, [new], w2),
        (known, [new, warm[0]], (w0 + w2) / 2),
        (known, [warm[0]], w0),
        (-1, [warm[0]], w3),
        (-1, warm[:4], w3),
        (-1, [new, *warm[:4]], w3 + (w2 - w3) / 5),
        (-1, [new], w2),
        (-1, warm, (w0 + w3) / 2),  # 10 items: support 5 / 10 of the new-user row
        (scorer.n_users_ + 3, warm[:2], w3),  # an index beyond the trained users is new too
    ]
    q = Queries.from_histories([c[0] for c in cases], [c[1] for c in cases], scorer.n_items_)
    got = scorer.score(q)
    signals = scorer._signals(q.history, comp)
    for u, (_, _, warm_w) in enumerate(cases):
        w = np.where(comp.seen[None, :], warm_w[:, None], w1[:, None])
        expected = np.einsum("kI,kI->I", signals[:, u], w)
        expected[~(scorer.has_content_ | comp.seen)] = np.nan
        assert got[u] == pytest.approx(expected, abs=2e-4, nan_ok=True), u
    assert got == pytest.approx(_reference(scorer, q), abs=2e-4, nan_ok=True)
    # The warm row alone would score the new item's follower, and the new user, otherwise.
    for u in (0, 3):
        only_warm = np.einsum("kI,k->I", signals[:, u], w0)
        assert not np.allclose(got[u][comp.seen], only_warm[comp.seen], atol=1e-2)


def test_a_model_saved_with_two_weight_rows_scores_as_it_did(fitted):
    """Models saved before the later rows: a new-item history and a new user take the warm
    row, as then."""
    data, scorer = fitted
    scorer = copy.deepcopy(scorer)
    state = scorer.get_state()
    state["weights"] = state["weights"][:2] * np.float32(1.5)  # distinct from the fitted rows
    scorer.set_state(state)
    w = scorer.weights_
    assert w.shape == (4, 5) and np.array_equal(w[2], w[0]) and np.array_equal(w[3], w[0])
    new = int(np.flatnonzero(~scorer.components_.seen & scorer.has_content_)[0])
    q = Queries.from_histories([-1, -1], [[new], [int(scorer.components_.seen_idx[3])]], scorer.n_items_)
    assert scorer.score(q) == pytest.approx(_reference(scorer, q), abs=2e-4, nan_ok=True)
    assert scorer._user_weights(q.history, scorer.components_, q.users) is None  # the one-row path


def test_the_third_row_is_fit_on_held_out_pairs_and_leaves_the_first_two(monkeypatch):
    """Fitting the ``warm-after-new`` row does not move the other two (a history of items with
    training pairs scores exactly as before it existed); with too few validation users it is
    the warm row."""
    import metarec.models.content.hybrid as hybrid

    data = make_world(WorldConfig(n_users=500, n_items=90, seed=4))
    fitted = make_scorer("hybrid", encoder="hashing-64").fit(data)
    assert not np.allclose(fitted.weights_[2], fitted.weights_[0], atol=1e-3)
    no_new_user_row = make_scorer("hybrid", encoder="hashing-64", new_user_share=0.0).fit(data)
    assert np.array_equal(no_new_user_row.weights_[:3], fitted.weights_[:3])  # fit after the first three
    assert np.array_equal(no_new_user_row.weights_[3], no_new_user_row.weights_[0])
    monkeypatch.setattr(hybrid, "MIN_NEW_HISTORY_USERS", 10**9)
    without = make_scorer("hybrid", encoder="hashing-64").fit(data)
    assert np.array_equal(without.weights_[:2], fitted.weights_[:2])
    assert np.array_equal(without.weights_[2], without.weights_[0])
    assert np.array_equal(without.weights_[3], without.weights_[0])


def test_the_new_user_row_ranks_its_held_out_users_at_least_as_well_as_the_warm_row():
    """The ``new-user`` row is fit by coordinate ascent on NDCG@10 of users held out of one
    more EASE fit, each given their first items by time: the row it returns scores those
    users at least as well as the warm row it starts from. The model still knows every user."""
    from metarec.models.baselines.ease import value_weighted

    data = make_world(WorldConfig(n_users=500, n_items=90, seed=4))
    scorer = make_scorer("hybrid", encoder="hashing-64").fit(data)
    assert scorer.weights_.shape == (4, 5) and scorer.known_users_.all()
    weighted = value_weighted(data, data.matrix(), scorer.config.values)
    fitted = scorer._fit_new_user_weights(data, weighted, np.random.default_rng(1))
    ndcg = scorer._new_user_ndcg(data, weighted, np.random.default_rng(1))  # the same held-out users
    warm = scorer.weights_[0].astype(np.float64)
    assert ndcg(fitted.astype(np.float64)) >= ndcg(warm) > 0
    assert scorer._new_user_ndcg(data, weighted.tocsr()[:9], np.random.default_rng(1)) is None  # too few users
