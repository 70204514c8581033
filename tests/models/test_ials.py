"""iALS's value weighting: a pair's confidence is ``alpha`` times its weight over the mean weight."""

import numpy as np
import pandas as pd
import pytest
from implicit.cpu.als import AlternatingLeastSquares
from threadpoolctl import threadpool_limits

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
    m = AlternatingLeastSquares(**kw, iterations=4, random_state=0)
    with threadpool_limits(1, "blas"):
        m.fit(matrix.astype(np.float32).tocsr(), show_progress=False)
    return m.user_factors


def test_confidence_is_alpha_times_the_weight_over_the_mean_weight():
    rows = _rows(0)
    data = _data(rows)
    r = pd.DataFrame(rows, columns=["user", "item", "value"])
    w = np.sqrt(r["value"].to_numpy())
    x = np.zeros((data.n_users, data.n_items))
    x[data.user_index(r["user"]), data.item_index(r["item"])] = w / w.mean()
    import scipy.sparse as sp

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
