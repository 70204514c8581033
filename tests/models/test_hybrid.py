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
    a user the model was not trained on, the ``new-user`` row up to ``new_user_support``
    items, the ``new-user-long`` row up to ``new_user_long_support``, by ``long_support /
    items`` of it beyond (the rest the warm row); for a known user the warm row; either moved
    towards the ``warm-after-new`` row by the share of the history that has no training
    pairs. One user at a time. (``new_user_long_support`` at most ``new_user_support``: the
    ``new-user`` row up to the support and by ``support / items`` beyond.)"""
    comp = scorer.components_
    signals = scorer._signals(queries.history, comp)  # (5, n, I)
    w0, w1, w2, w3, w4 = scorer.weights_
    short = scorer.config.new_user_support
    long = max(short, scorer.config.new_user_long_support)
    out = np.empty(signals.shape[1:], dtype=np.float64)
    for u in range(signals.shape[1]):
        hist = queries.history[u].indices
        share = (~comp.seen[hist]).mean() if len(hist) else 0.0
        user = queries.users[u]
        lean, row = 0.0, w3
        if len(hist) and (user < 0 or user >= len(scorer.known_users_) or not scorer.known_users_[user]):
            lean = min(1.0, long / len(hist))
            row = w3 if len(hist) <= short else w4
        base = w0 + lean * (row - w0)
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
    model was not trained on by the ``new-user`` row up to ``new_user_support`` items, the
    ``new-user-long`` row up to ``new_user_long_support`` and by ``long_support / items`` of
    it beyond; either moved towards the ``warm-after-new`` row by the history's share of items
    without training pairs (all new: that row alone). Items without training pairs keep the
    cold row."""
    data, scorer = fitted
    scorer = copy.deepcopy(scorer)
    w0, w1 = scorer.weights_[:2]
    w2 = w0 * np.array([0.5, 1, 1, 1, 3], np.float32)
    w3 = w0 * np.array([0.2, 2, 1, 0.5, 5], np.float32)
    w4 = w0 * np.array([2, 0.5, 1, 3, 0.3], np.float32)
    scorer.weights_ = np.stack([w0, w1, w2, w3, w4])
    scorer.config.new_user_long_support = 8  # (the fixture's users have 14 to 39 items)
    assert scorer.config.new_user_support == 5
    warm = [int(i) for i in scorer.components_.seen_idx[5:21]]
    (new,) = scorer.add_items(scorer.item_vectors_[[warm[0]]] + 1e-3, ["a near copy of a warm item"])
    comp = scorer.components_
    known = int(np.flatnonzero(scorer.known_users_)[0])
    cases = [  # user, history, the weights of its items with training pairs
        (known, [new], w2),
        (known, [new, warm[0]], (w0 + w2) / 2),
        (known, [warm[0]], w0),
        (known, warm, w0),
        (-1, [warm[0]], w3),
        (-1, warm[:5], w3),
        (-1, [new, *warm[:4]], w3 + (w2 - w3) / 5),
        (-1, [new], w2),
        (-1, warm[:6], w4),  # past the support: the long row
        (-1, warm[:8], w4),
        (-1, [new, *warm[:7]], w4 + (w2 - w4) / 8),
        (-1, warm, (w0 + w4) / 2),  # 16 items: long support 8 / 16 of the long row
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
    for u in (0, 4):
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
    assert w.shape == (5, 5) and all(np.array_equal(w[k], w[0]) for k in (2, 3, 4))
    new = int(np.flatnonzero(~scorer.components_.seen & scorer.has_content_)[0])
    q = Queries.from_histories([-1, -1], [[new], [int(scorer.components_.seen_idx[3])]], scorer.n_items_)
    assert scorer.score(q) == pytest.approx(_reference(scorer, q), abs=2e-4, nan_ok=True)
    assert scorer._user_weights(q.history, scorer.components_, q.users) is None  # the one-row path


def test_a_model_saved_with_four_weight_rows_loads_and_scores_as_it_did(fitted, tmp_path):
    """A model directory saved before the ``new-user-long`` row (four weight rows, no
    ``new_user_long_support`` in its config) loads with that setting at 0: a new user with
    more items than ``new_user_support`` leans on the ``new-user`` row by ``support /
    items``, as then. So does such a hybrid inside a saved ensemble."""
    import json

    from metarec.models.io import load_model, save_model
    from safetensors.numpy import load_file, save_file

    data, scorer = fitted
    scorer = copy.deepcopy(scorer)
    w0 = scorer.weights_[0]
    scorer.weights_[3] = w0 * np.array([0.2, 2, 1, 0.5, 5], np.float32)
    save_model(scorer, data, tmp_path / "m")
    cfg, weights = tmp_path / "m" / "config.json", tmp_path / "m" / "weights.safetensors"
    saved = json.loads(cfg.read_text())
    del saved["config"]["new_user_long_support"]
    cfg.write_text(json.dumps(saved))
    state = load_file(weights)
    state["weights"] = state["weights"][:4]
    save_file(state, weights)
    model = load_model(tmp_path / "m")
    old = model.scorer
    assert old.config.new_user_long_support == 0 and np.array_equal(old.weights_[4], old.weights_[3])
    warm = [int(i) for i in scorer.components_.seen_idx[:10]]
    q = Queries.from_histories([-1, -1], [warm[:3], warm], scorer.n_items_)
    w3 = scorer.weights_[3]
    for u, expected_w in ((0, w3), (1, (w0 + w3) / 2)):  # 10 items: support 5 / 10, as then
        assert np.allclose(old._user_weights(q.history, old.components_, q.users)[u], expected_w, atol=1e-6)
    assert old.score(q) == pytest.approx(_reference(old, q), abs=2e-4, nan_ok=True)

    ens = make_scorer("ensemble", members="pop,hybrid", folds=1, **{"hybrid.encoder": "hashing-64"}).fit(data)
    save_model(ens, data, tmp_path / "e")
    cfg = tmp_path / "e" / "config.json"
    saved = json.loads(cfg.read_text())
    assert saved["config"]["params"]["hybrid"]["new_user_long_support"] == 20
    del saved["config"]["params"]["hybrid"]["new_user_long_support"]
    cfg.write_text(json.dumps(saved))
    loaded = load_model(tmp_path / "e").scorer
    assert loaded.members_[1].scorers[0].config.new_user_long_support == 0


def test_the_third_row_is_fit_on_held_out_pairs_and_leaves_the_first_two(monkeypatch):
    """Fitting the ``warm-after-new`` row does not move the other two (a history of items with
    training pairs scores exactly as before it existed); with too few validation users it is
    the warm row. The ``new-user-long`` row is fit after the ``new-user`` row and leaves it
    as it was."""
    import metarec.models.content.hybrid as hybrid

    data = make_world(WorldConfig(n_users=500, n_items=90, seed=4))
    fitted = make_scorer("hybrid", encoder="hashing-64").fit(data)
    assert not np.allclose(fitted.weights_[2], fitted.weights_[0], atol=1e-3)
    no_new_user_row = make_scorer("hybrid", encoder="hashing-64", new_user_share=0.0).fit(data)
    assert np.array_equal(no_new_user_row.weights_[:3], fitted.weights_[:3])  # fit after the first three
    assert all(np.array_equal(no_new_user_row.weights_[k], no_new_user_row.weights_[0]) for k in (3, 4))
    no_long_row = make_scorer("hybrid", encoder="hashing-64", new_user_long_support=0).fit(data)
    assert np.array_equal(no_long_row.weights_[:4], fitted.weights_[:4])
    assert np.array_equal(no_long_row.weights_[4], no_long_row.weights_[3])
    monkeypatch.setattr(hybrid, "MIN_NEW_HISTORY_USERS", 10**9)
    without = make_scorer("hybrid", encoder="hashing-64").fit(data)  # (and the warm row unscaled)
    assert np.array_equal(without.weights_[1], fitted.weights_[1])
    assert np.array_equal(without.weights_[0, 1:], fitted.weights_[0, 1:])
    assert all(np.array_equal(without.weights_[k], without.weights_[0]) for k in (2, 3, 4))


def test_the_new_user_rows_rank_their_held_out_users_at_least_as_well_as_the_warm_row():
    """The ``new-user`` and ``new-user-long`` rows are fit by coordinate ascent on NDCG@10 of
    users held out of one more EASE fit, each given their first items by time (1 to 5, and
    6 to 20 at four supports): each row scores its histories at least as well as the warm row
    it starts from. The model still knows every user."""
    from metarec.models.baselines.ease import value_weighted

    data = make_world(WorldConfig(n_users=500, n_items=90, seed=4))
    scorer = make_scorer("hybrid", encoder="hashing-64", rank_share=0.0).fit(data)  # the warm row they start from
    assert scorer.weights_.shape == (5, 5) and scorer.known_users_.all()
    weighted = value_weighted(data, data.matrix(), scorer.config.values)
    fitted = scorer._fit_new_user_weights(data, weighted, np.random.default_rng(1))
    bands = scorer._new_user_ndcg(data, weighted, np.random.default_rng(1))  # the same held-out users
    warm = scorer.weights_[0].astype(np.float64)
    assert len(bands) == 2 and all(r is not None and r.shape == (5,) for r in fitted)
    for ndcg, row in zip(bands, fitted):
        assert ndcg(row.astype(np.float64)) >= ndcg(warm) > 0
    assert not np.allclose(fitted[0], fitted[1])
    assert scorer._new_user_ndcg(data, weighted.tocsr()[:9], np.random.default_rng(1)) is None  # too few users


def test_without_users_long_enough_for_it_the_long_row_is_the_new_user_row():
    """Held-out users need ``new_user_support + 1`` items and 5 more to fit the
    ``new-user-long`` row; where none has that many (every user here has at most 10 pairs)
    it is the ``new-user`` row, which is still fit."""
    data = make_world(WorldConfig(n_users=500, n_items=90, seed=4))
    inter = data.interactions
    first = inter.drop_duplicates(["user", "item"])
    first = first[first.groupby("user").cumcount() < 10]  # each user's first 10 items
    keep = inter.set_index(["user", "item"]).index.isin(first.set_index(["user", "item"]).index)
    short = data.subset(keep)
    n = short.matrix().getnnz(axis=1)
    assert n.max() == 10 and (n >= 6).sum() > 100
    scorer = make_scorer("hybrid", encoder="hashing-64").fit(short)
    w = scorer.weights_
    assert np.array_equal(w[4], w[3]) and not np.array_equal(w[3], w[0])


def test_the_signals_the_weights_are_fit_on_are_computed_a_block_of_users_at_a_time(fitted, monkeypatch):
    """:meth:`_candidate_signals` is :meth:`_signals` on the candidates, whatever the block."""
    import metarec.models.content.hybrid as hybrid

    data, scorer = fitted
    comp = scorer.components_
    q = _queries(data, scorer.n_items_, list(range(23)))
    cand = np.sort(np.random.default_rng(0).choice(scorer.n_items_, 40, replace=False))
    whole = scorer._signals(q.history, comp)[:, :, cand]
    monkeypatch.setattr(hybrid, "SIGNAL_BLOCK_CELLS", scorer.n_items_ * 5)  # blocks of 5 users, the last of 3
    np.testing.assert_allclose(scorer._candidate_signals(q.history, comp, cand), whole, atol=1e-5)


def test_the_warm_rows_collaborative_weight_is_scaled_by_the_best_ranking_scale(monkeypatch):
    """After every other row is fit, the warm row's collaborative weight is multiplied by the
    one of ``collab_scales`` whose row ranks best the pairs held out of one more EASE fit (a
    stand-in NDCG here, best at 3); the other weights and rows do not move. ``rank_share=0``
    or one scale: the softmax fit as it is."""
    import metarec.models.content.hybrid as hybrid
    from metarec.models.baselines.ease import value_weighted

    data = make_world(WorldConfig(n_users=500, n_items=90, seed=4))
    plain = make_scorer("hybrid", encoder="hashing-64", rank_share=0.0).fit(data)
    base = float(plain.weights_[0, 0])
    asked = []

    def fake_ndcg(self, hist, rel, comp, cand):
        assert hist.shape == rel.shape and hist.shape[0] >= 10 and rel.nnz  # held-out users and pairs
        return lambda w: asked.append(w[0] / base) or -abs(w[0] / base - 3.0)

    weighted = value_weighted(data, data.matrix(), plain.config.values)
    with monkeypatch.context() as m:
        m.setattr(hybrid.HybridScorer, "_ndcg_of_weights", fake_ndcg)
        plain.config.rank_share = 0.5
        assert plain._collab_scale(weighted) == 3.0
        assert asked == pytest.approx([1.0, 1.5, 2.0, 3.0, 5.0], rel=1e-5)
        plain.config.rank_share = 0.0
        assert plain._collab_scale(weighted) == 1.0  # (rank_share 0)
    monkeypatch.setattr(hybrid.HybridScorer, "_collab_scale", lambda self, weighted: 3.0)
    scaled = make_scorer("hybrid", encoder="hashing-64").fit(data)
    assert scaled.weights_[0, 0] == pytest.approx(3 * base, rel=1e-6)
    assert np.array_equal(scaled.weights_[0, 1:], plain.weights_[0, 1:])
    assert np.array_equal(scaled.weights_[1:], plain.weights_[1:])  # the new-user rows start from the unscaled row
    monkeypatch.undo()
    one = make_scorer("hybrid", encoder="hashing-64", collab_scales=(1.0,)).fit(data)
    assert np.array_equal(one.weights_, plain.weights_)


@pytest.mark.parametrize("param, value, message", [
    ("rank_share", 1.5, "rank_share must be a share, at most 1, not 1.5"),
    ("new_user_share", 2, "new_user_share must be a share, at most 1, not 2"),
    ("validation_share", 1.01, "validation_share must be a share"),
    ("collab_scales", (1.0, 0.0), "collab_scales must be above 0"),
    ("collab_scales", ("x",), "collab_scales must be above 0"),
])  # fmt: skip
def test_shares_and_scales_out_of_range_are_refused_when_the_model_is_made(param, value, message):
    """Before, a share above 1 failed deep in numpy's sampling after the encoder ran."""
    from metarec.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        make_scorer("hybrid", encoder="hashing-64", **{param: value})
