"""The conformance suite: every registered scorer gets these tests by being registered."""

import copy

import numpy as np
import pytest
import scipy.sparse as sp

from metarec.data import Queries
from metarec.errors import ConfigError
from metarec.models import MODELS
from metarec.models import make_scorer as _make_scorer
from metarec.models.content import ContentScorer
from metarec.models.io import load_model, save_model
from metarec.testing import checkerboard

ALL = sorted(MODELS)
COLLABORATIVE = [m for m in ALL if m != "pop"]
CONTENT = [m for m in ALL if issubclass(MODELS[m], ContentScorer)]
# The plumbing is tested with the dependency-free hashing encoder and short training; the
# pretrained encoder has its own test (tests/encoders) and the real data sets theirs.
FAST = {
    "content-knn": {"encoder": "hashing-64"},
    "hybrid": {"encoder": "hashing-64"},
    "two-tower": {"encoder": "hashing-64", "epochs": 4},
    "multitask": {"encoder": "hashing-64", "epochs": 3},
    "singletask": {"encoder": "hashing-64", "epochs": 3},
    "finetune": {"encoder": "hashing-64", "epochs": 3},
    "meta": {"encoder": "hashing-64", "epochs": 3, "meta_epochs": 2},
    "ensemble": {"members": "ease,itemknn,ials", "folds": 1},
}


def make_scorer(name, **params):
    return _make_scorer(name, **{**FAST.get(name, {}), **params})
# 360 events are few SGD steps at BPR's MovieLens-sized learning rate; give it more. Its
# fold-in prior (tuned on MovieLens, where popularity is a strong prior for new users) leans
# on the item bias; popularity is flat here, so let two clicks speak.
SMALL_DATA_PARAMS = {
    "bpr": {"learning_rate": 0.05, "iterations": 300, "fold_in_l2": 1.0},
    "two-tower": {"epochs": 30, "validation_users": 0.0},
    "multitask": {"epochs": 150, "batch_size": 256, "validation": 0.0},
    "singletask": {"epochs": 150, "batch_size": 256, "validation": 0.0},
    "finetune": {"epochs": 150, "batch_size": 256, "validation": 0.0},
    "meta": {"epochs": 150, "batch_size": 256, "validation": 0.0, "meta_epochs": 5},
}


@pytest.fixture(scope="module")
def board():
    return checkerboard(n_users=40, n_items=20, seed=0)


@pytest.fixture(scope="module")
def fitted(world):
    return {name: make_scorer(name).fit(world) for name in ALL}


@pytest.fixture(scope="module")
def board_fit(board):
    """``board_fit(name)``: a fresh copy of ``name`` fit once on the checkerboard (with its
    small-data parameters), so that the tests which change a model change only their copy."""
    fits = {}

    def get(name):
        if name not in fits:
            fits[name] = make_scorer(name, **SMALL_DATA_PARAMS.get(name, {})).fit(board[0])
        return copy.deepcopy(fits[name])

    return get


@pytest.mark.parametrize("name", ALL)
def test_scores_have_the_contract_shape(name, fitted, world):
    s = fitted[name]
    q = Queries(np.arange(5), world.matrix()[:5])
    scores = s.score(q)
    assert scores.shape == (5, world.n_items) and scores.dtype == np.float32
    assert np.isfinite(scores[:, s.known_items_]).all()
    sub = s.score(q, items=np.array([3, 1]))
    np.testing.assert_allclose(sub, scores[:, [3, 1]], rtol=1e-6)


@pytest.mark.parametrize("name", ALL)
def test_items_never_trained_on(name, world):
    """Remove every event of items 0..9: collaborative scorers cannot score them (NaN),
    content scorers score them from their text, and so do iALS with its text prior and an
    ensemble with a member that reads text (``can_add_items``)."""
    keep = world.interactions["item"].to_numpy() >= 10
    s = make_scorer(name).fit(world.subset(keep))
    scores = s.score(Queries(np.arange(3), world.subset(keep).matrix()[:3]))
    assert s.can_add_items == (name in CONTENT or name in ("ials", "ensemble"))  # the world has text
    if s.can_add_items:
        assert np.isfinite(scores).all()
    else:
        assert np.isnan(scores[:, :10]).all()
    assert np.isfinite(scores[:, 10:][:, s.known_items_[10:]]).all()


@pytest.mark.parametrize("name", ALL)
def test_unknown_user_is_scored_from_the_given_history(name, fitted, world):
    s = fitted[name]
    hist = world.matrix()[[0, 1]]
    scores = s.score(Queries([-1, -1], hist))
    assert np.isfinite(scores[:, s.known_items_]).all()
    if name != "pop":  # popularity ignores the history by design
        assert not np.allclose(scores[0], scores[1])


@pytest.mark.parametrize("name", ALL)
def test_a_user_added_after_training_is_a_new_user(name, fitted, world):
    """``add_users`` (the service's ``PUT /users`` for a user the model does not know): the
    user gets the next index and is scored from the given history as a new user is; only
    the networks, which read user attributes, may score them otherwise."""
    from metarec.models.neural.multitask import MultiTaskScorer

    s = copy.deepcopy(fitted[name])
    n = len(s.known_users_)
    added = s.add_users(world.users.iloc[[0, 1]].reset_index(drop=True))
    np.testing.assert_array_equal(added, [n, n + 1])
    hist = world.matrix()[[0, 1]]
    got, new = s.score(Queries(added, hist)), s.score(Queries([-1, -1], hist))
    assert np.isfinite(got[:, s.known_items_]).all()
    if not isinstance(s, MultiTaskScorer):
        np.testing.assert_array_equal(got, new)


@pytest.mark.parametrize("name", ALL)
def test_recommend_excludes_seen_and_is_sorted(name, fitted, world):
    hist = world.matrix()[[4]]
    ids, scores = fitted[name].recommend(Queries([4], hist), n=10)
    assert ids.shape == (1, 10)
    assert not set(ids[0].tolist()) & set(hist.indices.tolist())
    assert np.all(np.diff(scores[0]) <= 1e-6)


@pytest.mark.parametrize("name", ALL)
def test_save_and_load_give_the_same_scores(name, fitted, world, tmp_path):
    s = fitted[name]
    save_model(s, world, tmp_path / name)
    loaded = load_model(tmp_path / name)
    # the last row: a user with no id and no history (served by multitask's new-user network)
    q = Queries([0, 7, -1, -1], sp.vstack([world.matrix()[[0, 7, 9]], sp.csr_matrix((1, world.n_items))]))
    np.testing.assert_allclose(loaded.scorer.score(q), s.score(q), rtol=1e-5, equal_nan=True)
    assert loaded.config["model"] == name and list(loaded.item_ids) == list(world.item_ids)
    u = str(world.user_ids[7])
    recs = loaded.recommend(u, n=5)
    assert len(recs) == 5 and not {r for r, _ in recs} & set(loaded.user_history(u))


@pytest.mark.parametrize("name", ALL)
def test_seeded_training_is_repeatable(name, fitted, world):
    """A second fit, after every other model's (other global random states), scores alike."""
    q = Queries([0, -1], world.matrix()[[0, 3]])
    a = fitted[name].score(q)
    b = make_scorer(name).fit(world).score(q)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5, equal_nan=True)


@pytest.mark.parametrize("name", COLLABORATIVE)
def test_known_answer_on_a_checkerboard(name, board, board_fit):
    """Each user has seen all but one item of their block: that item must come first."""
    data, missing = board
    s = board_fit(name)
    users = np.arange(data.n_users)
    ids, _ = s.recommend(Queries(users, data.matrix()), n=1)
    assert (ids[:, 0] == missing).mean() >= 0.9
    # A new user who clicked two items of block 1 gets block-1 items.
    new = Queries.from_histories([-1], [[12, 15]], data.n_items)
    top, _ = s.recommend(new, n=5)
    assert set(top[0].tolist()) <= set(range(10, 20))


def test_pop_known_answer(board):
    data, _ = board
    counts = np.asarray(data.matrix().sum(axis=0)).ravel()
    s = make_scorer("pop").fit(data)
    scores = s.score(Queries([-1], sp.csr_matrix((1, data.n_items))))
    np.testing.assert_array_equal(scores[0], counts)


def test_ials_fold_in_is_implicits_own_user_step(world):
    """Our fold-in solves the same least squares as implicit's recalculate_user."""
    from implicit.cpu.als import AlternatingLeastSquares

    from metarec.models.baselines.implicit_mf import least_squares_fold_in

    m = AlternatingLeastSquares(factors=8, regularization=2.0, alpha=3.0, iterations=3, random_state=0)
    m.fit(world.matrix(), show_progress=False)
    hist = world.matrix()[[2, 5, 9]]
    ours = least_squares_fold_in(m.item_factors, hist, confidence=3.0, l2=2.0)
    np.testing.assert_allclose(ours, m.recalculate_user([2, 5, 9], hist), rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("name", CONTENT)
def test_a_new_item_is_scored_from_its_text_at_once(name, board, board_fit):
    data, _ = board
    s = board_fit(name)
    from metarec.encoders import make_encoder

    vec = make_encoder(s.content_config()).encode(["blue tent model 999"])
    (new,) = s.add_items(vec)
    assert new == data.n_items and s.n_items_ == data.n_items + 1
    hist = sp.hstack([data.matrix(), sp.csr_matrix((data.n_users, 1))]).tocsr()
    scores = s.score(Queries(np.arange(data.n_users), hist))
    assert np.isfinite(scores[:, new]).all()
    # Block-1 users (20..39) like it more than block-0 users do.
    assert scores[20:, new].mean() > scores[:20, new].mean()


@pytest.mark.parametrize("name", CONTENT)
def test_a_changed_text_counts_at_once(name, board, board_fit):
    """A red kettle re-described as a blue tent climbs in blue-tent users' rankings."""
    data, _ = board
    s = board_fit(name)
    from metarec.encoders import make_encoder

    users = Queries(np.arange(20, 40), data.matrix()[20:])  # block-1 (blue tent) users

    def rank_of_item_0() -> float:
        scores = s.score(users)
        return float((scores > scores[:, [0]]).sum(axis=1).mean())

    before = rank_of_item_0()
    text = "blue tent model 0"
    s.update_items(np.array([0]), make_encoder(s.content_config()).encode([text]), [text])
    assert rank_of_item_0() < before


@pytest.mark.parametrize("name", [m for m in ALL if m != "pop"])  # (pop has no settings)
def test_a_bad_setting_is_named_when_the_model_is_made(name):
    """Every model's numeric, boolean and text settings are checked against their types when
    it is made (as ``--param`` gives them), with the model, field and value in the message."""
    import dataclasses
    import typing

    hints = typing.get_type_hints(MODELS[name].Config)
    by_kind = {}
    for f in dataclasses.fields(MODELS[name].Config):
        by_kind.setdefault(hints[f.name], f.name)
    cases = [(by_kind.get(int), -3, "at least 0"), (by_kind.get(int), 2.5, "whole number"),
             (by_kind.get(float), "abc", "a number"), (by_kind.get(float), float("nan"), "finite"),
             (by_kind.get(bool), "yes", "true or false"), (by_kind.get(str), [1], "text")]  # fmt: skip
    cases = [c for c in cases if c[0] is not None]
    assert cases, f"{name}: no typed settings to check"
    for field, value, message in cases:
        with pytest.raises(ConfigError, match=rf"^{name}: {field} must be .*{message}"):
            _make_scorer(name, **{field: value})
