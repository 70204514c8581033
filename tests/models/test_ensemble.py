"""Ensembles: normalisation, weight fitting with known answers, segments, saving, validation split."""

import numpy as np
import pytest
import scipy.sparse as sp

from metarec.data import Queries
from metarec.data.splits import HISTORY_SEGMENTS, history_segment, validation
from metarec.errors import ConfigError
from metarec.models import make_scorer
from metarec.models.registry import MODELS
from metarec.models.ensemble import choose_weights, coordinate_ascent, normalise, parse_members
from metarec.models.io import load_model, save_model
from metarec.testing import checkerboard


def test_zscore_is_per_user_over_unseen_items_and_nan_stays_nan():
    s = np.array([[10.0, 1.0, 2.0, 3.0, np.nan], [5.0, 5.0, 5.0, 5.0, 5.0]], dtype=np.float32)
    hist = sp.csr_matrix(np.array([[1, 0, 0, 0, 0], [0, 0, 0, 0, 0]]))
    z = normalise(s, hist, "zscore")
    # Row 0: statistics over items 1..3 (item 0 is seen, item 4 not scorable).
    np.testing.assert_allclose(z[0, 1:4], [-np.sqrt(1.5), 0.0, np.sqrt(1.5)], rtol=1e-5)
    assert z[0, 0] > z[0, 3]  # the seen item is normalised like the rest
    assert np.isnan(z[0, 4])
    np.testing.assert_array_equal(z[1], 0.0)  # a constant row carries no preference


def test_rank_normalisation_is_a_percentile_and_a_row_of_nan_stays_nan():
    s = np.array([[3.0, 1.0, 2.0, 4.0], [np.nan] * 4], dtype=np.float32)
    z = normalise(s, sp.csr_matrix((2, 4)), "rank")
    np.testing.assert_allclose(z[0], [2 / 3, 0.0, 1 / 3, 1.0], rtol=1e-6)
    assert np.isnan(z[1]).all()


def test_rrf_normalisation_is_one_over_k_plus_the_rank_among_unseen_items():
    """Known answers: rank 1 is the top unseen item; a seen item takes the rank it would have
    among the unseen ones, and NaN stays NaN."""
    from metarec.models.ensemble import RRF_K

    s = np.array([[3.0, 1.0, 2.0, 4.0, np.nan]], dtype=np.float32)
    seen = sp.csr_matrix(([1.0], ([0], [3])), shape=(1, 5))  # item 3, the highest, is seen
    z = normalise(s, seen, "rrf")
    np.testing.assert_allclose(1 / z[0, :3], [RRF_K + 1, RRF_K + 3, RRF_K + 2], rtol=1e-6)
    assert z[0, 3] == pytest.approx(1 / (RRF_K + 1))  # above every unseen item: rank 1
    assert np.isnan(z[0, 4])


def test_coordinate_ascent_never_ends_below_its_best_start():
    rng = np.random.default_rng(0)
    target = rng.dirichlet(np.ones(4))

    def f(w):
        return -np.abs(w - target).sum()

    starts = [np.eye(4)[j] for j in range(4)]
    w, v = coordinate_ascent(f, starts)
    assert v >= max(f(s) for s in starts)
    assert np.all(w >= 0) and w.sum() == pytest.approx(1.0)
    assert np.abs(w - target).sum() < 0.15


def test_a_mixture_must_win_on_users_it_was_not_fit_on():
    """Known answers on synthetic per-user metrics of two members' weights: where every user
    is best served by an even mix, the mixture is kept; where each user's metric is a random
    wiggle in the weights (no mixture is better for the population), a search over weights
    still finds in-sample gains, and the cross-fitted test rejects most of them."""
    starts = [np.array([1.0, 0.0]), np.array([0.0, 1.0]), np.array([0.5, 0.5])]
    everyone = np.arange(300)
    in_sample = cross_fitted = 0
    for seed in range(20):
        rng = np.random.default_rng(seed)
        t = 0.5 + 0.1 * rng.normal(size=300)
        w = choose_weights(lambda w, rows: -((w[0] - t[rows]) ** 2), everyone, starts, 1.0, np.random.default_rng(seed))
        assert abs(w[0] - 0.5) < 0.05
        eps = rng.normal(size=(300, 6))

        def wiggle(w, rows):
            return sum(eps[rows, j] * np.cos((j + 1) * np.pi * w[0]) for j in range(6))

        in_sample += choose_weights(wiggle, everyone, starts, 0.0, np.random.default_rng(seed)).max() < 1
        cross_fitted += choose_weights(wiggle, everyone, starts, 1.0, np.random.default_rng(seed)).max() < 1
    assert in_sample >= 8 and cross_fitted <= 4


def test_known_users_weights_read_known_significance_and_new_users_weights_do_not(world):
    """Known answers: with a prohibitive ``known_significance`` every known-user row that has
    validation users of its own is one member alone (no mixture's gain is 100 standard
    errors), while with 0 some of them are mixtures; the new users' rows are fit on rows with
    new users, which read ``significance`` only, so they are the same either way."""
    kw = dict(members="pop,ease", folds=1, significance=0.0, min_segment_users=10)
    strict = make_scorer("ensemble", known_significance=100.0, **kw).fit(world)
    loose = make_scorer("ensemble", known_significance=0.0, **kw).fit(world)
    n = len(strict.segments_)  # known users' rows first, then new users'
    fitted = np.array(strict.describe()["segment_users"][:n]) >= 10
    assert fitted.any()
    assert np.isin(strict.weights_[:n][fitted], [0.0, 1.0]).all()
    assert (loose.weights_[:n][fitted].max(axis=1) < 1.0).any()
    np.testing.assert_array_equal(strict.weights_[n:], loose.weights_[n:])


def test_members_parse_and_bad_members_are_named():
    assert parse_members("pop, ease*2") == [("pop", 1), ("ease", 2)]
    for bad, word in (("ease,nope", "nope"), ("ease*x", r"ease\*x"), ("ease,ease", "twice"), ("", "no members"),
                      ("ensemble", "ensemble")):  # fmt: skip
        with pytest.raises(ConfigError, match=word):
            parse_members(bad)
    with pytest.raises(ConfigError, match="ials"):
        make_scorer("ensemble", members="ease,pop", **{"ials.factors": 8})
    with pytest.raises(ConfigError, match="normalise"):
        make_scorer("ensemble", normalise="softmax")


@pytest.mark.parametrize(
    ("param", "value"),
    [("metric", "NDCG10"), ("metric", "NDCG@0"), ("metric", "AUC@10"), ("folds", 0), ("validation_users", 0.0),
     ("new_users", 1.0), ("holdout_share", 0.0), ("holdout_share", 1.0), ("min_segment_users", 0),
     ("significance", -1.0), ("known_significance", -1.0)],
)  # fmt: skip
def test_bad_settings_are_named_before_any_member_trains(param, value):
    with pytest.raises(ConfigError, match=f"ensemble: {param}"):
        make_scorer("ensemble", members="pop,ease", **{param: value})


def test_a_members_bad_setting_is_named_when_the_ensemble_is_made():
    with pytest.raises(ConfigError, match="ials: factors must be a finite number, at least 0, not -3"):
        make_scorer("ensemble", members="ease,ials", **{"ials.factors": -3})


def test_without_validation_users_the_members_get_equal_weights_and_a_warning(world, caplog):
    s = make_scorer("ensemble", members="pop,ease", folds=1, validation_users=1e-6).fit(world)
    assert "no validation users" in caplog.text
    np.testing.assert_allclose(s.weights_, 0.5)
    assert s.validation_ == {}


def test_member_parameters_reach_the_members(world):
    s = make_scorer("ensemble", members="pop,ials", folds=1, **{"ials.factors": 8}).fit(world)
    ials = s.members_[1].scorers[0]
    assert ials.config.factors == 8 and ials.item_factors_.shape[1] == 8


def test_history_segments():
    assert HISTORY_SEGMENTS[0] == (0, 0)
    np.testing.assert_array_equal(history_segment(np.array([0, 3, 7, 30])), [0, 1, 2, 3])


def test_validation_split_never_trains_on_what_it_asks(world):
    v = validation(world, seed=1, users=0.6, new_users=0.5)
    train = v.train.matrix()
    segments = {qs.segment: qs for qs in v.query_sets}
    assert set(segments) == {"cold-user", "warm"}
    new = segments["cold-user"]
    assert train[new.queries.users].nnz == 0  # new users left training entirely
    lengths = new.queries.history.getnnz(axis=1)
    assert set(history_segment(lengths)) == {0, 1, 2, 3}  # every segment is represented
    users, asked = np.unique(new.queries.users, return_counts=True)
    assert asked.max() > 1  # a new user is asked once per segment it can fill
    for u in users[asked > 1][:5]:  # ... with different history lengths, the same pairs
        rows = np.flatnonzero(new.queries.users == u)
        assert len(set(lengths[rows])) == len(rows)
        total = (new.queries.history[rows] + new.relevant[rows]).toarray()
        assert (total == total[0]).all() and total.max() == 1
    warm = segments["warm"]
    # Held-out pairs are not in training; the history is exactly the user's training row.
    assert train[warm.queries.users].multiply(warm.relevant).nnz == 0
    assert (warm.queries.history != train[warm.queries.users]).nnz == 0
    assert (warm.relevant.getnnz(axis=1) >= 1).all()
    # Repeatable per seed, different across seeds.
    again = validation(world, seed=1, users=0.6, new_users=0.5)
    assert (again.query_sets[1].relevant != warm.relevant).nnz == 0
    other = validation(world, seed=2, users=0.6, new_users=0.5)
    assert not np.array_equal(other.query_sets[0].queries.users, new.queries.users)


def test_weights_follow_the_member_that_works_per_segment():
    """On a checkerboard, EASE ranks the missing item of the user's block first and popularity
    cannot tell blocks apart (both are equally popular): the weights must favour EASE for users
    with a history, and ensemble must rank as EASE does."""
    data, missing = checkerboard(n_users=60, n_items=20, seed=0)
    s = make_scorer("ensemble", members="pop,ease", folds=2, min_segment_users=5).fit(data)
    d = s.describe()
    names = ["0", "1", "2-5", "6-20", ">20"]  # one click apart (one_click)
    assert d["members"] == ["pop", "ease"] and d["segments"] == names + [f"new {n}" for n in names]
    w = np.array(d["weights"])
    has_history = (np.array(d["segment_users"]) >= 5) & (np.arange(10) % 5 > 0)
    assert (w[has_history, 1] > w[has_history, 0]).all()
    # The validation split's new users are counted in the new-user rows, the others not.
    assert sum(d["segment_users"][5:]) > 0 and d["segment_users"][5] > 0 and d["segment_users"][0] == 0
    assert d["segment_users"][6] > 0  # validation's new users are asked at one click too
    four = make_scorer("ensemble", members="pop,ease", one_click=False)  # the segments
    assert four.group_names_ == ["0", "1-5", "6-20", ">20", "new 0", "new 1-5", "new 6-20", "new >20"]
    assert d["validation"]["ensemble"] >= max(d["validation"]["pop"], d["validation"]["ease"])
    ids, _ = s.recommend(Queries(np.arange(data.n_users), data.matrix()), n=1)
    assert (ids[:, 0] == missing).mean() >= 0.9


def test_new_users_get_the_weights_of_their_own_rows(world):
    """Known answer: known users ranked by pop alone, new users (never trained on, or -1) by
    ease alone, whatever their history length."""
    s = make_scorer("ensemble", members="pop,ease", folds=1).fit(world)
    n = len(s.segments_)
    s.weights_[:n] = [1.0, 0.0]
    s.weights_[n:] = [0.0, 1.0]
    m = world.matrix()
    known = np.flatnonzero(s.known_users_)[:3]
    q = Queries(np.concatenate([known, [-1, -1]]), sp.vstack([m[known], m[known[:2]]]).tocsr())
    got = s.score(q)
    pop, ease = (normalise(x.scorers[0].score(q), q.history) for x in s.members_)
    np.testing.assert_allclose(got[:3], pop[:3], rtol=1e-5, atol=1e-6, equal_nan=True)
    np.testing.assert_allclose(got[3:], ease[3:], rtol=1e-5, atol=1e-6, equal_nan=True)
    # One weight row for everyone when new users are not apart.
    flat = make_scorer("ensemble", members="pop,ease", folds=1, new_apart=False, segments=False)
    assert flat.group_names_ == ["all"]


def test_a_seed_ensemble_averages_its_copies(world):
    s = make_scorer("ensemble", members="ials*3", seed=5).fit(world)
    seeds = [m.config.seed for m in s.members_[0].scorers]
    assert seeds == [5, 6, 7] and s.member_names == ["ials*3"]
    q = Queries(np.arange(4), world.matrix()[:4])
    each = [normalise(m.score(q), q.history) for m in s.members_[0].scorers]
    # Items no copy can score (never trained on) stay NaN, as the scorer contract says.
    np.testing.assert_allclose(s.score(q), np.mean(each, axis=0), rtol=1e-5, atol=1e-6, equal_nan=True)
    assert not np.allclose(each[0], each[1])  # the copies differ


def test_weights_and_validation_survive_saving(world, tmp_path):
    s = make_scorer("ensemble", members="pop,ease,itemknn", folds=1).fit(world)
    save_model(s, world, tmp_path / "m")
    loaded = load_model(tmp_path / "m").scorer
    np.testing.assert_array_equal(loaded.weights_, s.weights_)
    assert loaded.describe() == s.describe()
    # Saved before new users had rows of their own: they take their segment's weights.
    state = s.get_state()
    state["weights"], state["segment_users"] = state["weights"][:4], state["segment_users"][:4]
    old = make_scorer("ensemble", members="pop,ease,itemknn", folds=1)
    old.set_state(state)
    np.testing.assert_array_equal(old.weights_, np.concatenate([s.weights_[:4], s.weights_[:4]]))


def test_an_evaluated_ensemble_combines_the_models_beside_it(world):
    from metarec.evaluation.harness import ensemble_params, evaluate

    got = ensemble_params(["pop", "ials", "ensemble"], {"ials": {"factors": 8}, "ensemble": {"folds": 1}})
    assert got["ensemble"] == {"members": "pop,ials", "ials.factors": 8, "folds": 1}
    assert got["ials"] == {"factors": 8}
    # Given members, or nothing beside it: untouched.
    assert ensemble_params(["pop", "ensemble"], {"ensemble": {"members": "ease"}})["ensemble"] == {"members": "ease"}
    assert ensemble_params(["ensemble"], {}) == {}
    # The ensemble's own setting of a member's parameter wins.
    assert ensemble_params(["ials", "ensemble"], {"ials": {"factors": 8}, "ensemble": {"ials.factors": 4}})[
        "ensemble"]["ials.factors"] == 4  # fmt: skip
    res = evaluate(world, "holdout", ["pop", "ials", "ensemble"], params={"ials": {"factors": 8}, "ensemble": {"folds": 1}})
    assert res.details["ensemble"][0]["members"] == ["pop", "ials"]
    # results.json keeps each member's whole config as the ensemble resolved it.
    assert res.configs["ensemble"]["params"]["ials"]["factors"] == 8
    assert res.configs["ensemble"]["params"]["ials"]["l2"] == res.configs["ials"]["l2"]


def test_each_member_alone_is_judged_on_the_items_it_can_score():
    """Known answer: the validation figure of a member on its own is that member's metric on
    the validation split, computed here from scratch; items it cannot score (their only pair
    held out) are not ranked, rather than taking the other member's score."""
    from metarec.evaluation.metrics import ranking_metrics
    from metarec.ranking import top_k
    from metarec.testing import tiny_dataset

    rng = np.random.default_rng(3)
    histories = []
    for u in range(60):  # two blocks of ten items, then a rare item of the user's block
        block = range(10) if u < 30 else range(10, 20)
        histories.append([i for i in block if rng.random() < 0.7] + [20 + u])
    titles = [f"{'red kettle' if i < 10 or 20 <= i < 50 else 'blue tent'} {i}" for i in range(80)]
    data = tiny_dataset(histories, 80, titles)
    s = make_scorer("ensemble", members="ease,hybrid", folds=1, **{"hybrid.encoder": "hashing-32"}).fit(data)
    c = s.config
    split = validation(data, c.seed, c.validation_users, c.new_users, c.holdout_share, segments=s.segments_)
    q = Queries(np.concatenate([qs.queries.users for qs in split.query_sets]),
                sp.vstack([qs.queries.history for qs in split.query_sets]).tocsr())  # fmt: skip
    rel = sp.vstack([qs.relevant for qs in split.query_sets]).toarray() > 0
    keep = rel.sum(axis=1) > 0
    q, rel = q[np.flatnonzero(keep)], rel[keep]
    cannot = 0
    for name in ("ease", "hybrid"):
        member = make_scorer(name, **({"encoder": "hashing-32"} if name == "hybrid" else {})).fit(split.train)
        scores = member.score(q)
        cannot += int(np.isnan(scores).sum())
        scores[(q.history.toarray() > 0) | np.isnan(scores)] = -np.inf
        hits = np.take_along_axis(rel, top_k(scores, 10), axis=1)
        expected = ranking_metrics(hits, rel.sum(axis=1), (10,))["NDCG@10"].mean()
        assert s.validation_[name] == pytest.approx(expected, abs=1e-6), name
    assert cannot > 0  # some validation item is one a member cannot score


def test_an_offered_member_is_used_as_it_is_only_with_the_same_settings_and_data(world):
    """A member offered with the ensemble's settings (seed included), fit on the data the
    ensemble is fit on, is the final member: that very model (it carries a mark), not a
    retrained one. Another seed, another data set or a seed ensemble train their own."""
    offered = make_scorer("ease").fit(world)
    offered.mark_ = "trained beside the ensemble"
    s = make_scorer("ensemble", members="pop,ease", folds=1, seed=42)
    s.offer("ease", offered, world)
    s.fit(world)
    member = s.members_[1].scorers[0]
    assert s.describe()["reused"] == ["ease"] and member.mark_ == "trained beside the ensemble"
    # The offer is used once: a second fit trains its members.
    s.fit(world)
    assert s.describe()["reused"] == [] and not hasattr(s.members_[1].scorers[0], "mark_")
    other = checkerboard(n_users=40, n_items=20, seed=0)[0]
    ials = make_scorer("ials", factors=8, seed=42).fit(world)
    for members, offer, trained_on in (("pop,ials", make_scorer("ials", factors=8, seed=7).fit(world), world),
                                       ("pop,ials", make_scorer("ials", factors=8, seed=42).fit(other), other),
                                       ("pop,ials*2", ials, world)):  # fmt: skip
        s = make_scorer("ensemble", members=members, folds=1, seed=42, **{"ials.factors": 8})
        s.offer("ials", offer, trained_on)
        s.fit(world)
        assert s.describe()["reused"] == [], members
    s = make_scorer("ensemble", members="pop,ials", folds=1, seed=42, **{"ials.factors": 8})
    s.offer("ials", ials, world)
    assert s.fit(world).describe()["reused"] == ["ials"]  # the same settings: taken


def _blocks_with_new_items(seed: int = 3):
    """Two blocks of users and items whose titles say the block; items 20-29 have text and no
    pair (new items)."""
    from metarec.testing import tiny_dataset

    rng = np.random.default_rng(seed)
    histories = [[i for i in (range(10) if u < 30 else range(10, 20)) if rng.random() < 0.7] for u in range(60)]
    titles = [f"{'red kettle' if i < 10 or 20 <= i < 25 else 'blue tent'} {i}" for i in range(30)]
    return tiny_dataset(histories, 30, titles)


def test_new_items_get_weights_of_their_own_and_a_member_that_cannot_score_them_gets_none():
    """Known answer: EASE scores no item it never saw a pair of, so on the split that holds
    items out its weight for new items is 0, whatever its weight for known items; the items
    without pairs are then ranked by the content members' blend with those weights, the known
    items by the user's segment's weights (checked here with weights set by hand)."""
    data = _blocks_with_new_items()
    hashing = {"content-knn.encoder": "hashing-32", "hybrid.encoder": "hashing-32"}
    s = make_scorer("ensemble", members="ease,content-knn,hybrid", folds=1, min_segment_users=5, **hashing).fit(data)
    d = s.describe()
    assert d["segments"][-1] == "new items" and d["segment_users"][-1] > 0
    assert d["weights"][-1][0] == 0.0 and sum(d["weights"][-1]) == pytest.approx(1.0)
    assert set(d["validation_new_items"]) == {"content-knn", "hybrid", "ensemble"}
    new = np.arange(20, 30)
    assert not s.known_items_[new].any() and s.known_items_[:20].all()

    q = Queries(np.arange(60), data.matrix())
    z = [normalise(m.scorers[0].score(q), q.history) for m in s.members_]
    assert np.isnan(z[0][:, new]).all() and np.isfinite(z[1][:, new]).all() and np.isfinite(z[2][:, new]).all()
    s.weights_[:] = [0.5, 0.5, 0.0]
    s.item_weights_ = np.array([0.0, 0.25, 0.75], dtype=np.float32)
    got = s.score(q)
    np.testing.assert_allclose(got[:, :20], 0.5 * z[0][:, :20] + 0.5 * z[1][:, :20], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got[:, new], 0.25 * z[1][:, new] + 0.75 * z[2][:, new], rtol=1e-5, atol=1e-5)
    # Without weights for new items (new_items=0, or a model saved before them) EASE's share
    # of a new item goes to the mean of the members that can score it.
    s.item_weights_ = None
    got = s.score(q)
    mean = (z[1][:, new] + z[2][:, new]) / 2
    np.testing.assert_allclose(got[:, new], 0.5 * mean + 0.5 * z[1][:, new], rtol=1e-5, atol=1e-5)
    off = make_scorer("ensemble", members="ease,content-knn,hybrid", folds=1, new_items=0.0, **hashing).fit(data)
    assert off.item_weights_ is None and "new items" not in off.describe()["segments"]


@pytest.mark.parametrize(
    ("name", "params"),
    [(n, {}) for n, cls in sorted(MODELS.items()) if cls.pairs_only]
    + [("ease", {"content": 0.5, "encoder": "hashing-32"}), ("itemknn", {"k": 2})],
)
def test_a_pairs_only_scorer_scores_no_item_without_pairs(name, params):
    """``pairs_only`` is a promise about every setting, since an ensemble trusts it without
    training the member: items without pairs are NaN, even where they have text."""
    data = _blocks_with_new_items()
    s = make_scorer(name, **params).fit(data)
    assert s.pairs_only
    got = s.score(Queries(np.arange(60), data.matrix()))
    assert np.isnan(got[:, 20:]).all() and np.isfinite(got[:, :20]).any(axis=1).all()


def test_a_pairs_only_member_is_not_trained_to_rank_new_items(monkeypatch):
    """EASE is trained for the warm validation fold and for serving, not on the split that
    holds items out (folds=1: one of each); the hybrid on all three."""
    from metarec.models.baselines import EASEScorer
    from metarec.models.content import HybridScorer

    fits = {"ease": 0, "hybrid": 0}
    for cls in (EASEScorer, HybridScorer):
        def counted(self, data, matrix, _fit=cls._fit):
            fits[self.name] += 1
            return _fit(self, data, matrix)
        monkeypatch.setattr(cls, "_fit", counted)
    data = _blocks_with_new_items()
    s = make_scorer("ensemble", members="ease,hybrid", folds=1, **{"hybrid.encoder": "hashing-32"}).fit(data)
    assert fits == {"ease": 2, "hybrid": 3}
    np.testing.assert_array_equal(s.item_weights_, [0.0, 1.0])
    only = make_scorer("ensemble", members="ease,itemknn", folds=1).fit(data)
    assert only.item_weights_ is None  # no member can score new items: they take their user's weights


def test_new_item_weights_survive_saving_and_older_models_load_without_them(tmp_path):
    data = _blocks_with_new_items()
    s = make_scorer("ensemble", members="ease,hybrid", folds=1, **{"hybrid.encoder": "hashing-32"}).fit(data)
    np.testing.assert_array_equal(s.item_weights_, [0.0, 1.0])  # EASE cannot score new items
    save_model(s, data, tmp_path / "m")
    loaded = load_model(tmp_path / "m").scorer
    np.testing.assert_array_equal(loaded.item_weights_, s.item_weights_)
    assert loaded.describe() == s.describe()
    q = Queries(np.arange(5), data.matrix()[:5])
    np.testing.assert_allclose(loaded.score(q), s.score(q), rtol=1e-6, equal_nan=True)
    state = {k: v for k, v in s.get_state().items() if not k.startswith("item_")}
    old = make_scorer("ensemble", members="ease,hybrid", folds=1, **{"hybrid.encoder": "hashing-32"})
    old.set_state(state)
    assert old.item_weights_ is None and old.describe()["validation_new_items"] == {}
