"""EASE's value weighting: pairs weighted by their rating, the history stays binary."""

import numpy as np
import pandas as pd
import pytest

from metarec.data import Queries
from metarec.data.dataset import build_dataset
from metarec.errors import ConfigError
from metarec.models import make_scorer
from metarec.models.baselines.ease import value_weighted


def _data(rows):
    return build_dataset(pd.DataFrame(rows, columns=["user", "item", "value"]), source="ratings.csv")


def test_a_high_rating_counts_more_than_a_low_one():
    # Item a co-occurs with b in users rating b 5 and with c in as many users rating c 1.
    rows = []
    for u in range(6):
        rows += [(f"u{u}", "a", 4.0), (f"u{u}", "b" if u < 3 else "c", 5.0 if u < 3 else 1.0)]
    rows += [("x", "b", 3.0), ("x", "c", 3.0), ("y", "d", 3.0)]
    data = _data(rows)
    a, b, c = data.item_index(["a", "b", "c"])
    q = Queries.from_histories([-1], [[a]], data.n_items)
    binary = make_scorer("ease", l2=1.0, values="none").fit(data).score(q)[0]
    graded = make_scorer("ease", l2=1.0, values="sqrt").fit(data).score(q)[0]
    assert binary[b] == pytest.approx(binary[c], rel=1e-5)
    assert graded[b] > graded[c] * 1.5


def test_the_closed_form_on_weighted_pairs():
    rng = np.random.default_rng(0)
    rows = [(f"u{u}", f"i{i}", float(rng.integers(1, 6))) for u in range(30) for i in range(12) if rng.random() < 0.4]
    data = _data(rows)
    x = value_weighted(data, data.matrix(), "sqrt").toarray()
    r = pd.DataFrame(rows, columns=["user", "item", "value"])
    assert x[data.user_index(r["user"]), data.item_index(r["item"])] == pytest.approx(np.sqrt(r["value"]))
    l2 = 3.0
    gram = x.T @ x + l2 * np.mean(x[x > 0] ** 2) * np.eye(x.shape[1])
    p = np.linalg.inv(gram)
    expected = np.eye(x.shape[1]) - p / np.diag(p)[None, :]  # Steck's B = I - P diagMat(1 / diag P)
    np.fill_diagonal(expected, 0.0)
    got = make_scorer("ease", l2=l2).fit(data).weights_
    assert got == pytest.approx(expected.astype(np.float32), abs=1e-5)


def test_equal_values_leave_the_binary_model():
    rng = np.random.default_rng(1)
    rows = [(f"u{u}", f"i{i}", 3.0) for u in range(20) for i in range(10) if rng.random() < 0.5]
    data = _data(rows)
    binary = make_scorer("ease", values="none", l2=5.0).fit(data).weights_
    for how in ("sqrt", "log1p"):
        assert make_scorer("ease", values=how, l2=5.0).fit(data).weights_ == pytest.approx(binary, abs=1e-6)


def test_an_unknown_weighting_is_refused():
    data = _data([("u", "a", 4.0), ("u", "b", 2.0)])
    with pytest.raises(ConfigError, match="values='squared'.*none, sqrt, log1p"):
        make_scorer("ease", values="squared").fit(data)


def test_the_hybrid_collaborative_signal_is_ease_on_the_same_weighted_pairs():
    # Every item has pairs, so the hybrid's EASE spans the catalogue and must equal the
    # EASE model's on the same weighting; its other signals read the pairs as 1.
    rng = np.random.default_rng(2)
    rows = [(f"u{u}", f"i{i}", float(rng.integers(1, 6))) for u in range(30) for i in range(12) if rng.random() < 0.4]
    items = pd.DataFrame({"title": [f"item {i} {'red' if i % 2 else 'blue'}" for i in range(12)]},
                         index=[f"i{i}" for i in range(12)])  # fmt: skip
    data = build_dataset(pd.DataFrame(rows, columns=["user", "item", "value"]), source="ratings.csv",
                         items=items, text_fields=("title",))  # fmt: skip
    assert data.matrix().getnnz(axis=0).min() > 0
    got = {}
    for how in ("sqrt", "none"):
        got[how] = make_scorer("hybrid", encoder="hashing-32", values=how, l2=4.0).fit(data).components_.ease
        ease = make_scorer("ease", values=how, l2=4.0, content=0.0).fit(data)  # (the hybrid reads text apart)
        assert got[how] == pytest.approx(ease.weights_, abs=1e-5)
    assert got["sqrt"] != pytest.approx(got["none"], abs=1e-3)
    with pytest.raises(ConfigError, match="values='squared'"):
        make_scorer("hybrid", encoder="hashing-32", values="squared").fit(data)


def test_tags_join_the_gram_matrix_as_pseudo_users():
    """``tags``: EASE on the weighted pairs with a pseudo-user per genre below them, each of
    its pairs weighing ``tag_weight`` times the mean pair (built here from scratch)."""
    import scipy.sparse as sp

    from metarec.models.baselines.ease import ease_weights

    rows = [(f"u{u}", i, 3.0 + (u % 3)) for u in range(8) for i in ("a", "b", "c", "d") if (u + ord(i)) % 3]
    items = pd.DataFrame({"genres": ["War", "Drama, War", "Drama", ""]}, index=["a", "b", "c", "d"])
    data = build_dataset(pd.DataFrame(rows, columns=["user", "item", "value"]), source="r.csv", items=items)
    w = value_weighted(data, data.matrix(), "sqrt")
    tags = np.zeros((2, 4))  # Drama, War
    tags[0, data.item_index(["b", "c"])] = tags[1, data.item_index(["a", "b"])] = 1.5 * w.data.mean()
    expected = ease_weights(sp.vstack([w, sp.csr_matrix(tags)]).tocsr(), 2.0)
    got = make_scorer("ease", l2=2.0, tags="genres", tag_weight=1.5).fit(data)
    np.testing.assert_allclose(got.weights_, expected, rtol=1e-5, atol=1e-6)
    assert np.abs(got.weights_ - make_scorer("ease", l2=2.0).fit(data).weights_).max() > 1e-3
    with pytest.raises(ConfigError, match="ease: tag_weight must be positive"):
        make_scorer("ease", tags="genres", tag_weight=0.0).fit(data)


def test_the_text_prior_is_the_constrained_least_squares_solution():
    """``ease_weights`` with ``content = (C, a)`` solves, column by column, ``min |x_j - X b|^2
    + lambda |b - s_j|^2`` over ``b`` with ``b_j = 0``, ``S = a C C^T`` (a brute-force solve
    of each column here); ``a = 0`` is Steck's EASE."""
    import scipy.sparse as sp

    from metarec.models.baselines.ease import ease_weights

    rng = np.random.default_rng(0)
    x = sp.csr_matrix((rng.random((40, 12)) < 0.3).astype(float))
    c = rng.normal(size=(12, 5))
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    c[3] = 0.0  # an item without text: no prior
    got = ease_weights(x, 3.0, (c, 0.2))
    gram, s = (x.T @ x).toarray(), 0.2 * (c @ c.T)
    for j in range(12):
        rest = [i for i in range(12) if i != j]
        b = np.linalg.solve(gram[np.ix_(rest, rest)] + 3.0 * np.eye(11), gram[rest, j] + 3.0 * s[rest, j])
        np.testing.assert_allclose(got[rest, j], b, rtol=1e-4, atol=1e-6)
        assert got[j, j] == 0.0
    np.testing.assert_allclose(ease_weights(x, 3.0, (c, 0.0)), ease_weights(x, 3.0), atol=1e-6)


def test_items_that_read_alike_are_related_before_anyone_takes_both():
    """``content``: two items no user has taken together, whose texts agree, score each other
    above an unrelated item; without text (``content=0`` or data without it) they do not."""
    rows = [(f"u{u}", "tent", 1.0) for u in range(5)] + [(f"v{u}", "tent-pegs", 1.0) for u in range(5)]
    rows += [(f"w{u}", "kettle", 1.0) for u in range(5)] + [(f"u{u}", "lamp", 1.0) for u in range(3)]
    names = {"tent": "camping tent for two", "tent-pegs": "camping tent pegs", "kettle": "electric kettle",
             "lamp": "desk lamp"}  # fmt: skip
    items = pd.DataFrame({"title": list(names.values())}, index=list(names))
    data = build_dataset(pd.DataFrame(rows, columns=["user", "item", "value"]), source="ratings.csv", items=items,
                         text_fields=("title",))  # fmt: skip
    tent, pegs, kettle = data.item_index(["tent", "tent-pegs", "kettle"])
    q = Queries.from_histories([-1], [[tent]], data.n_items)
    kw = dict(l2=1.0, encoder="hashing-64", cache_dir="none")
    s = make_scorer("ease", content=0.5, **kw).fit(data).score(q)[0]
    assert s[pegs] > s[kettle] + 0.05
    s0 = make_scorer("ease", content=0.0, **kw).fit(data).score(q)[0]
    assert s0[pegs] == pytest.approx(s0[kettle], abs=1e-6)
    plain = make_scorer("ease", l2=1.0).fit(_data(rows))  # no text: as content=0
    np.testing.assert_allclose(plain.score(q)[0], s0, atol=1e-6)
