"""BPR's popularity correction: the log of each item's training users is added to its bias."""

import numpy as np
import pandas as pd
from implicit.cpu.bpr import BayesianPersonalizedRanking
from threadpoolctl import threadpool_limits

from metarec.data import Queries
from metarec.data.dataset import build_dataset
from metarec.models import make_scorer

SETTINGS = dict(factors=4, learning_rate=0.05, l2=0.01, iterations=20, seed=3)


def _data():
    rng = np.random.default_rng(0)
    # item j is liked with a probability falling in j: a long tail of popularity
    rows = [(f"u{u}", f"i{j}") for u in range(60) for j in range(25) if rng.random() < 0.6 / (1 + j / 4)]
    rows.append(("u0", "lonely"))  # an item with one user: log 1 = 0
    return build_dataset(pd.DataFrame(rows, columns=["user", "item"]), source="events.csv")


def test_without_the_correction_the_factors_are_implicits():
    data = _data()
    with threadpool_limits(1, "blas"):
        ref = BayesianPersonalizedRanking(factors=4, learning_rate=0.05, regularization=0.01, iterations=20,
                                          random_state=3, num_threads=1)  # fmt: skip
        ref.fit(data.matrix().astype(np.float32), show_progress=False)
    got = make_scorer("bpr", **SETTINGS, popularity_correction=0.0).fit(data)
    np.testing.assert_array_equal(got.item_factors_, ref.item_factors)
    np.testing.assert_array_equal(got.user_factors_, ref.user_factors)


def test_the_correction_adds_beta_times_the_log_of_the_items_users_to_the_bias_alone():
    data = _data()
    users = np.bincount(data.matrix().indices, minlength=data.n_items)
    raw = make_scorer("bpr", **SETTINGS, popularity_correction=0.0).fit(data)
    for beta in (1.0, 0.5):
        got = make_scorer("bpr", **SETTINGS, popularity_correction=beta).fit(data)
        np.testing.assert_array_equal(got.user_factors_, raw.user_factors_)
        np.testing.assert_array_equal(got.item_factors_[:, :-1], raw.item_factors_[:, :-1])
        np.testing.assert_allclose(got.item_factors_[:, -1] - raw.item_factors_[:, -1], beta * np.log(users),
                                   rtol=1e-5, atol=1e-5)  # fmt: skip
    lonely = data.item_index(["lonely"])[0]
    assert got.item_factors_[lonely, -1] == raw.item_factors_[lonely, -1]  # one user: log 1 = 0
    # known users' scores move by exactly beta * log(users): every user's bias entry is 1
    q = Queries(np.arange(5), data.matrix()[:5])
    np.testing.assert_allclose(got.score(q) - raw.score(q), np.broadcast_to(0.5 * np.log(users), (5, data.n_items)),
                               rtol=1e-4, atol=1e-4)  # fmt: skip


def test_a_new_user_with_no_history_gets_the_corrected_bias_order():
    data = _data()
    model = make_scorer("bpr", **SETTINGS).fit(data)
    q = Queries.from_histories([-1], [[]], data.n_items)
    np.testing.assert_allclose(model.score(q)[0], model.item_factors_[:, -1], rtol=1e-6, atol=1e-6)
