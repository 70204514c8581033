"""iALS's value weighting: a pair's confidence is ``alpha`` times its weight over the mean weight."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares
from threadpoolctl import threadpool_limits

from metarec.data import Queries
from metarec.data.dataset import build_dataset
from metarec.errors import ConfigError
from metarec.models import make_scorer


def _data(rows):
    return build_dataset(pd.DataFrame(rows, columns=["user", "item", "value"]), source="ratings.csv")


def _rows(seed, value=None):
    rng = np.random.default_rng(seed)
    return [(f"u{u}", f"i{i}", float(value or rng.integers(1, 6))) for u in range(40) for i in range(15)
            if rng.random() < 0.35]  # fmt: skip


def _implicit(matrix, **kw):
    with threadpool_limits(1, "blas"):
        m = AlternatingLeastSquares(**kw, iterations=4, random_state=0)
        m.fit(matrix.astype(np.float32).tocsr(), show_progress=False)
    return m.user_factors


def test_confidence_is_alpha_times_the_weight_over_the_mean_weight():
    rows = _rows(0)
    data = _data(rows)
    r = pd.DataFrame(rows, columns=["user", "item", "value"])
    w = np.sqrt(r["value"].to_numpy())
    x = np.zeros((data.n_users, data.n_items))
    x[data.user_index(r["user"]), data.item_index(r["item"])] = w / w.mean()
    expected = _implicit(sp.csr_matrix(x), factors=4, regularization=3.0, alpha=2.5)
    got = make_scorer("ials", factors=4, l2=3.0, alpha=2.5, iterations=4, seed=0).fit(data)
    np.testing.assert_allclose(got.user_factors_, expected, rtol=1e-4, atol=1e-5)
    binary = make_scorer("ials", factors=4, l2=3.0, alpha=2.5, iterations=4, seed=0, values="none").fit(data)
    np.testing.assert_allclose(binary.user_factors_, _implicit(data.matrix(), factors=4, regularization=3.0, alpha=2.5),
                               rtol=1e-4, atol=1e-5)  # fmt: skip
    assert np.abs(got.user_factors_ - binary.user_factors_).max() > 1e-3


def test_equal_values_leave_the_binary_model():
    data = _data(_rows(1, value=3.0))
    binary = make_scorer("ials", factors=4, iterations=4, values="none").fit(data).user_factors_
    for how in ("sqrt", "log1p"):
        got = make_scorer("ials", factors=4, iterations=4, values=how).fit(data).user_factors_
        np.testing.assert_allclose(got, binary, rtol=1e-4, atol=1e-5)


def test_an_unknown_weighting_is_refused():
    with pytest.raises(ConfigError, match="values='squared'.*none, sqrt, log1p"):
        make_scorer("ials", values="squared").fit(_data([("u", "a", 4.0), ("u", "b", 2.0)]))


def test_a_new_user_is_folded_in_with_the_same_confidences():
    """The fold-in solves iALS's user step with each history item's confidence alpha * sqrt(r)
    / mean sqrt weight when the query carries ratings (computed here from scratch), and alpha
    for each item when it does not; a model saved before the weighting folds in binary."""
    data = _data(_rows(2))
    s = make_scorer("ials", factors=4, l2=3.0, alpha=2.5, iterations=4, seed=0).fit(data)
    items, ratings = np.array([1, 4, 7]), np.array([5.0, 1.0, 3.0])
    hist = sp.csr_matrix((np.ones(3), (np.zeros(3, int), items)), shape=(1, data.n_items))
    vals = sp.csr_matrix((ratings, (np.zeros(3, int), items)), shape=(1, data.n_items))
    r = pd.DataFrame(_rows(2), columns=["user", "item", "value"])
    scale = np.sqrt(r.groupby(["user", "item"])["value"].max()).mean()
    v = s.item_factors_.astype(np.float64)

    def solve(c):
        a = v.T @ v + 3.0 * np.eye(4) + (v[items].T * (c - 1.0)) @ v[items]
        return np.linalg.solve(a, (c[:, None] * v[items]).sum(axis=0))

    with_values = s.score(Queries(np.array([-1]), hist, vals))[0]
    np.testing.assert_allclose(with_values, v @ solve(2.5 * np.sqrt(ratings) / scale), rtol=1e-4, atol=1e-5)
    without = s.score(Queries(np.array([-1]), hist))[0]
    np.testing.assert_allclose(without, v @ solve(np.full(3, 2.5)), rtol=1e-4, atol=1e-5)
    state = {k: x for k, x in s.get_state().items() if k != "value_scale"}
    old = make_scorer("ials", factors=4, l2=3.0, alpha=2.5, iterations=4, seed=0)
    old.set_state(state)
    np.testing.assert_allclose(old.score(Queries(np.array([-1]), hist, vals))[0], without, rtol=1e-5)
    # Saved again, it stays as it was (no scale is made up for it).
    again = make_scorer("ials", factors=4, l2=3.0, alpha=2.5, iterations=4, seed=0)
    again.set_state(old.get_state())
    assert "value_scale" not in old.get_state()
    np.testing.assert_allclose(again.score(Queries(np.array([-1]), hist, vals))[0], without, rtol=1e-5)


def test_tags_join_the_matrix_as_pseudo_users():
    """``tags``: a pseudo-user per genre (list values split at commas) with a pair of weight
    ``tag_weight`` on each item of that genre, stacked under the weighted matrix (built here
    from scratch); the scorer keeps the real users' factors only."""
    rows = _rows(3)
    genres = {f"i{i}": ", ".join(g for g, on in (("Drama", i % 2 == 0), ("War", i % 3 == 0)) if on) for i in range(15)}
    items = pd.DataFrame({"genres": list(genres.values())}, index=list(genres))
    data = build_dataset(pd.DataFrame(rows, columns=["user", "item", "value"]), source="ratings.csv", items=items)
    r = pd.DataFrame(rows, columns=["user", "item", "value"])
    w = np.sqrt(r["value"].to_numpy())
    x = np.zeros((data.n_users + 2, data.n_items))
    x[data.user_index(r["user"]), data.item_index(r["item"])] = w / w.mean()
    for row, genre in ((data.n_users, "Drama"), (data.n_users + 1, "War")):
        x[row, data.item_index([i for i, g in genres.items() if genre in g])] = 0.5
    got = make_scorer("ials", factors=4, l2=3.0, alpha=2.5, iterations=4, seed=0, tags="genres", tag_weight=0.5).fit(data)
    expected = _implicit(sp.csr_matrix(x), factors=4, regularization=3.0, alpha=2.5)
    assert got.user_factors_.shape == (data.n_users, 4)
    np.testing.assert_allclose(got.user_factors_, expected[: data.n_users], rtol=1e-4, atol=1e-5)
    plain = make_scorer("ials", factors=4, l2=3.0, alpha=2.5, iterations=4, seed=0).fit(data)  # "auto": none declared
    assert np.abs(got.user_factors_ - plain.user_factors_).max() > 1e-3
    np.testing.assert_array_equal(
        plain.user_factors_, make_scorer("ials", factors=4, l2=3.0, alpha=2.5, iterations=4, seed=0, tags="").fit(data).user_factors_)
    # "auto" takes the columns the data declares as tags.
    declared = build_dataset(pd.DataFrame(rows, columns=["user", "item", "value"]), source="ratings.csv", items=items,
                             tag_fields=("genres",))  # fmt: skip
    auto = make_scorer("ials", factors=4, l2=3.0, alpha=2.5, iterations=4, seed=0, tag_weight=0.5).fit(declared)
    np.testing.assert_allclose(auto.user_factors_, got.user_factors_, rtol=1e-6)
    with pytest.raises(ConfigError, match="ials.tags: the items have no column 'genre' .*genres"):
        make_scorer("ials", tags="genre").fit(data)
    with pytest.raises(ConfigError, match="ials: tag_weight must be positive, not 0.0"):
        make_scorer("ials", tags="genres", tag_weight=0.0).fit(data)
    with pytest.raises(ConfigError, match="ials: tag_weight must be a finite number, at least 0, not -1.0"):
        make_scorer("ials", tags="genres", tag_weight=-1.0)  # (when made, before training)


def test_factors_shrunk_to_zero_by_l2_are_said(caplog):
    import logging

    data = _data(_rows(2))
    with caplog.at_level(logging.WARNING, logger="metarec.models.baselines.implicit_mf"):
        make_scorer("ials", factors=4, iterations=4, l2=1.0).fit(data)
    assert not caplog.messages
    with caplog.at_level(logging.WARNING, logger="metarec.models.baselines.implicit_mf"):
        collapsed = make_scorer("ials", factors=4, iterations=4, l2=1e4).fit(data)
    assert np.abs(collapsed.user_factors_ @ collapsed.item_factors_.T).max() < 1e-3
    assert len(caplog.messages) == 1
    assert "shrank to zero" in caplog.text and "l2=10000" in caplog.text and "smaller l2" in caplog.text


def test_the_conjugate_gradient_sweeps_are_implicits():
    """Without a prior, :func:`conjugate_gradient_step`'s sweeps from the same starting factors
    give ``implicit``'s factors (its conjugate-gradient solver, three steps a row)."""
    from metarec.models.baselines.implicit_mf import conjugate_gradient_step

    x = _data(_rows(4)).matrix().astype(np.float64)
    rng = np.random.default_rng(0)
    users, items = rng.random((x.shape[0], 4)) * 0.01, rng.random((x.shape[1], 4)) * 0.01
    with threadpool_limits(1, "blas"):
        m = AlternatingLeastSquares(factors=4, regularization=3.0, alpha=2.5, iterations=5, random_state=0)
        m.user_factors, m.item_factors = users.astype(np.float32), items.astype(np.float32)
        m.fit(x.astype(np.float32).tocsr(), show_progress=False)
    confidence = (x * 2.5).tocsr()
    for _ in range(5):
        conjugate_gradient_step(confidence, items, users, 3.0)
        conjugate_gradient_step(confidence.T.tocsr(), users, items, 3.0)
    np.testing.assert_allclose(users, m.user_factors, rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(items, m.item_factors, rtol=1e-3, atol=1e-5)


def test_a_prior_moves_the_least_squares_optimum_to_it():
    """With enough steps a row reaches the exact solve of ``min sum c (p - x.y)^2 + l2 |x - m|^2``;
    blocks of rows (a small ``CG_BLOCK_NNZ``) change nothing."""
    import metarec.models.baselines.implicit_mf as mf

    rng = np.random.default_rng(1)
    conf = sp.random(30, 12, density=0.3, random_state=2, format="csr") * 4 + sp.csr_matrix((30, 12))
    conf.data += 1.0
    fixed, prior = rng.normal(size=(12, 5)), rng.normal(size=(30, 5))
    solved = np.zeros((30, 5))
    mf.conjugate_gradient_step(conf, fixed, solved, 2.0, prior, steps=20)
    for r in range(30):
        idx, c = conf[r].indices, conf[r].data[:, None]
        a = fixed.T @ fixed + fixed[idx].T @ ((c - 1) * fixed[idx]) + 2.0 * np.eye(5)
        np.testing.assert_allclose(solved[r], np.linalg.solve(a, (c * fixed[idx]).sum(0) + 2.0 * prior[r]), atol=1e-8)
    blocked = np.zeros((30, 5))
    old, mf.CG_BLOCK_NNZ = mf.CG_BLOCK_NNZ, 7
    try:
        mf.conjugate_gradient_step(conf, fixed, blocked, 2.0, prior, steps=20)
    finally:
        mf.CG_BLOCK_NNZ = old
    np.testing.assert_allclose(blocked, solved, atol=1e-10)


def _text_data():
    """Two item families that read alike within each (item text), each bought by its own users;
    ``rare`` has one pair, with a user of the other family, and reads like the first family."""
    rows = [(f"a{u}", f"pump{i}", 1.0) for u in range(20) for i in range(6) if (u + i) % 3]
    rows += [(f"b{u}", f"lens{i}", 1.0) for u in range(20) for i in range(6) if (u + i) % 3]
    rows += [("b0", "rare", 1.0)]
    names = {f"pump{i}": "vacuum pump for laboratory use" for i in range(6)}
    names.update({f"lens{i}": "optical lens for a microscope" for i in range(6)}, rare="vacuum pump for laboratory use")
    items = pd.DataFrame({"title": list(names.values())}, index=list(names))
    return build_dataset(pd.DataFrame(rows, columns=["user", "item", "value"]), source="ratings.csv", items=items,
                         text_fields=("title",))  # fmt: skip


def test_an_item_with_few_pairs_is_drawn_towards_the_items_that_read_like_it():
    """``content``: the item factors' prior is a ridge map of the text vectors, so the one-pair
    item that reads like the pumps ranks for the pump buyers higher than without; ``content=0``
    (or data without text) is ``implicit``'s fit, unchanged."""
    data = _text_data()
    kw = dict(factors=4, l2=1.0, alpha=5.0, iterations=8, encoder="hashing-64", cache_dir="none")
    with_text = make_scorer("ials", **kw).fit(data)
    without = make_scorer("ials", content=0.0, **kw).fit(data)
    pumps = [f"a{u}" for u in range(20)]
    q = Queries(users=data.user_index(pumps), history=data.matrix()[data.user_index(pumps)])
    rare = data.item_index(["rare"])[0]
    lens = data.item_index([f"lens{i}" for i in range(6)])

    def margin(model):  # how far the rare item is above the best lens, for each pump buyer
        s = model.score(q, np.arange(data.n_items))
        return s[:, rare] - s[:, lens].max(axis=1)

    assert margin(with_text).mean() > margin(without).mean() + 0.05
    assert (margin(with_text) > 0).mean() > (margin(without) > 0).mean()
    plain = make_scorer("ials", factors=4, l2=1.0, alpha=5.0, iterations=8, seed=0).fit(_data(_rows(5)))  # no text
    again = make_scorer("ials", factors=4, l2=1.0, alpha=5.0, iterations=8, seed=0, content=0.0).fit(_data(_rows(5)))
    np.testing.assert_array_equal(plain.user_factors_, again.user_factors_)


def test_without_the_text_extra_ials_fits_without_text_and_says_so(monkeypatch, caplog):
    """iALS is a baseline: without sentence-transformers its default encoder is missing, so
    it fits ``implicit``'s model (as with ``content=0``) and warns, instead of failing."""
    import importlib.util
    import logging

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "sentence_transformers" else real(name, *a))
    data = _text_data()
    with caplog.at_level(logging.WARNING, logger="metarec.encoders.content"):
        got = make_scorer("ials", factors=4, iterations=4, seed=0, cache_dir="none").fit(data)
    assert "pip install 'metarec[text]'" in caplog.text
    plain = make_scorer("ials", factors=4, iterations=4, seed=0, content=0.0).fit(data)
    np.testing.assert_array_equal(got.user_factors_, plain.user_factors_)


def test_the_text_prior_is_the_ridge_regression_of_the_factors_on_the_text():
    """:class:`TextPrior` keeps only a small inverse, and gives what the explicit regression
    (text vectors plus a constant column, zero rows for items without text) gives."""
    from metarec.models.baselines.implicit_mf import TextPrior

    rng = np.random.default_rng(3)
    vectors, factors = rng.normal(size=(30, 6)).astype(np.float32), rng.normal(size=(30, 4))
    has = rng.random(30) < 0.8
    x = np.hstack([vectors, np.ones((30, 1))]) * has[:, None]
    reg = 0.7 * np.mean(np.diag(x.T @ x)[:6])
    expected = x @ np.linalg.solve(x.T @ x + reg * np.eye(7), x.T @ factors)
    got = TextPrior(vectors, has, 0.7)(factors)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    assert np.all(got[~has] == 0.0)


def test_a_text_prior_without_a_ridge_is_refused():
    """``content_ridge = 0`` would invert a singular matrix (fewer items than dimensions):
    refused by name when the model is made, before any training (so an ensemble with such a
    member fails before its first fold); with ``content = 0`` it reads nothing and is not refused."""
    with pytest.raises(ConfigError, match="ials: content_ridge must be positive while content is on, not 0.0"):
        make_scorer("ials", content_ridge=0.0, encoder="hashing-64", cache_dir="none")
    with pytest.raises(ConfigError, match="ials: content_ridge must be positive while content is on, not 0.0"):
        make_scorer("ensemble", members="ease,ials", **{"ials.content_ridge": 0.0})
    make_scorer("ials", factors=4, iterations=2, content=0.0, content_ridge=0.0).fit(_text_data())


def _text_model(data, **kw):
    return make_scorer("ials", factors=4, l2=1.0, alpha=5.0, iterations=8, encoder="hashing-64", cache_dir="none", **kw).fit(data)


def test_an_item_without_pairs_gets_the_factors_its_text_predicts():
    """Known answer: a new item's factors are the prior mean of training, ``content`` times the
    ridge regression of the trained items' factors on their text, at its text vector; an item
    of the catalogue that training saw without a pair gets the same (it is scored: NaN before
    iALS read text), and so does the same text added later."""
    from metarec.encoders import make_encoder
    from metarec.models.baselines.implicit_mf import TextPrior

    full = _text_data()
    rare = full.item_index(["rare"])[0]
    data = full.subset(full.interactions["item"].to_numpy() != rare)  # rare: text, no pair
    m = _text_model(data, content=0.8)
    assert m.can_add_items and not m.known_items_[rare] and m.text_items_[rare]
    encode = make_encoder(m.content_config()).encode
    x = encode(["vacuum pump for laboratory use"])
    (new,) = m.add_items(x)
    trained = np.flatnonzero(m.known_items_)
    w = TextPrior(encode(list(data.items["title"].iloc[trained])), np.ones(len(trained), dtype=bool),
                  m.config.content_ridge).weights(m.item_factors_[trained].astype(np.float64))  # fmt: skip
    np.testing.assert_allclose(m.item_factors_[new], 0.8 * (x[0] @ w[:-1] + w[-1]), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(m.item_factors_[rare], m.item_factors_[new], rtol=1e-5, atol=1e-7)  # the same text
    hist = sp.hstack([data.matrix(), sp.csr_matrix((data.n_users, 1))]).tocsr()
    assert np.isfinite(m.score(Queries(np.arange(data.n_users), hist))).all()
    plain = make_scorer("ials", content=0.0, factors=4).fit(data)
    assert np.isnan(plain.score(Queries(np.arange(3), data.matrix()[:3]))[:, rare]).all()


def test_a_loaded_ials_takes_new_items_from_their_text(tmp_path):
    """Through a model directory, as ``PUT /items`` does: a new item that reads like the pumps
    ranks above every lens for the pump buyers; re-described as a lens it falls below them.
    An item trained on keeps its factors when its text changes (until retrained); ``content=0``
    refuses new items, and a model saved before iALS read text loads and scores as before."""
    from metarec.models.io import load_model, save_model

    data = _text_data()
    save_model(_text_model(data), data, tmp_path / "m")
    model = load_model(tmp_path / "m")
    assert model.scorer.can_add_items
    (idx,) = model.add_items(["new-pump"], ["vacuum pump for laboratory use"])
    lenses = [f"lens{i}" for i in range(6)]

    def position(item):  # of ``item`` for a pump buyer, against the best lens
        ranked = [i for i, _ in model.recommend(None, history=["pump0", "pump1"], n=len(model.item_ids))]
        return ranked.index(item) - min(ranked.index(i) for i in lenses)

    assert position("new-pump") < 0
    model.update_items(["new-pump"], ["optical lens for a microscope"])
    assert position("new-pump") > 0
    trained = model.scorer.item_factors_[data.item_index(["pump2"])[0]].copy()
    model.update_items(["pump2"], ["optical lens for a microscope"])
    np.testing.assert_array_equal(model.scorer.item_factors_[data.item_index(["pump2"])[0]], trained)
    save_model(_text_model(data, content=0.0), data, tmp_path / "plain")
    with pytest.raises(ConfigError, match="cannot score an item from its content"):
        load_model(tmp_path / "plain").add_items(["x"], ["vacuum pump"])
    old = make_scorer("ials", content=0.0, factors=4).fit(data)
    state = {k: v for k, v in old.get_state().items() if k not in ("text_items", "new_item_map")}
    restored = make_scorer("ials", content=0.0, factors=4)
    restored.set_state(state)
    q = Queries(np.arange(3), data.matrix()[:3])
    np.testing.assert_array_equal(restored.score(q), old.score(q))
    assert not restored.can_add_items
