"""Meta-learning and fine-tuning for new users, and MeLU's protocol, on known answers."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from metarec.data import Queries, build_dataset
from metarec.data.splits import make_split
from metarec.evaluation.harness import evaluate, rating_metrics, reference_ratings
from metarec.models import make_scorer

FAST = {"encoder": "hashing-64", "epochs": 3, "meta_epochs": 2}


@pytest.fixture(scope="module")
def meta(world):
    return make_scorer("meta", **FAST).fit(world)


def test_a_batch_adapts_as_each_user_alone(meta, world):
    """vmap over users: adapting three users together equals adapting each alone."""
    q = Queries([-1, -1, -1], world.matrix()[[0, 5, 9]])
    together, biases = (x.numpy() for x in meta._adapted_users(q))
    assert biases.shape == (3, len(meta.tasks))
    for k in range(3):
        alone, bias = (x.numpy() for x in meta._adapted_users(q[np.array([k])]))
        np.testing.assert_allclose(together[k], alone[0], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(biases[k], bias[0], rtol=1e-4, atol=1e-5)


def test_adaptation_fits_the_support(world):
    """After adapting, the support items rank higher among all items by the retrieval score."""
    import torch

    from metarec.models.neural.network import History

    m = make_scorer("finetune", **FAST, inner_steps=5).fit(world)
    net = m.nets_[0]
    hist = world.matrix()[[3]]
    q = Queries([-1], hist)
    with torch.no_grad():
        u0 = net.users(torch.tensor([-1]), History.build(hist))
        u1 = m._adapted_users(q)[0]
        v, b = net.items(torch.arange(world.n_items))

        def mean_rank(u):
            s = (u @ v.T + b)[0].numpy()
            return float((s[None, :] > s[hist.indices][:, None]).sum(axis=1).mean())

    assert mean_rank(u1) < mean_rank(u0)


def test_support_ratings_move_the_predicted_rating(world):
    """The same items rated 5 or rated 1 in the support: the first user is predicted higher."""
    m = make_scorer("meta", **FAST, inner_steps=5).fit(world)
    items = np.flatnonzero(world.matrix().getnnz(axis=0) > 0)[:10]
    hist = sp.csr_matrix((np.ones(20, np.float32), (np.repeat([0, 1], 10), np.tile(items, 2))), shape=(2, world.n_items))
    values = sp.csr_matrix((np.r_[np.full(10, 5.0), np.full(10, 1.0)].astype(np.float32),
                            (np.repeat([0, 1], 10), np.tile(items, 2))), shape=(2, world.n_items))  # fmt: skip
    target = np.setdiff1d(np.arange(world.n_items), items)[:20]
    p = m.predict_tasks(Queries([-1, -1], hist, values), np.repeat([0, 1], 20), np.tile(target, 2))["rating"]
    assert p[:20].mean() > p[20:].mean()


def test_the_pseudo_count_shrinks_a_rating_step_by_n_over_n_plus_k(meta, world):
    """One inner step: the rating-head bias moves by the rated items' summed error over
    ``n + k``; with ``k = n`` it moves half as far as with the plain mean (``k = 0``)."""
    import copy

    import torch

    m = copy.deepcopy(meta)
    m.config.inner_steps = 1
    items = np.flatnonzero(world.matrix().getnnz(axis=0) > 0)[:8]
    hist = sp.csr_matrix((np.ones(8, np.float32), (np.zeros(8, int), items)), shape=(1, world.n_items))
    values = sp.csr_matrix((np.full(8, 5.0, np.float32), (np.zeros(8, int), items)), shape=(1, world.n_items))
    q = Queries([-1], hist, values)
    col = [t.name for t in m.tasks].index("rating")
    start = float(m.adapter_.delta0[m.config.dim + col])
    moves = {}
    for k in (0.0, 8.0):
        with torch.no_grad():
            m.adapter_.log_count.fill_(float(np.log(k)) if k else -np.inf)
        moves[k] = float(m._adapted_users(q)[1][0, col]) - start
    assert moves[0.0] > 0  # ratings of 5 pull the bias up
    assert moves[8.0] == pytest.approx(moves[0.0] / 2, rel=1e-4)
    assert float(meta.adapter_.log_count.exp()) > 0  # meta learns it from its start


def test_meta_training_is_logged_and_saved(meta, world, tmp_path):
    from metarec.models.io import load_model, save_model

    assert meta.meta_training_.history[0]["epoch"] == -1  # validation of the starting point
    assert any("loss" in h for h in meta.meta_training_.history)
    save_model(meta, world, tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    q = Queries([-1], world.matrix()[[4]])
    np.testing.assert_allclose(loaded.scorer.score(q), meta.score(q), rtol=1e-4, atol=1e-5)


def ratings(rows):
    raw = pd.DataFrame(rows, columns=["user", "item", "event", "value", "timestamp"])
    return build_dataset(raw, source="r.csv")


def test_melu_split_follows_the_protocol(world):
    split = make_split(world, "melu", 0)
    (qs,) = split.query_sets
    counts = world.pairs().groupby("user").size()
    assert ((counts[qs.queries.users] >= 13) & (counts[qs.queries.users] <= 100)).all()
    assert not np.isin(split.train.interactions["user"], qs.queries.users).any()  # new users are new
    per_user = split.test.groupby("user").size()
    assert (per_user == 10).all() and len(per_user) == len(qs)
    # support + query = all of the user's rated items; the support carries its ratings
    sup = qs.queries.history.getnnz(axis=1)
    np.testing.assert_array_equal(sup + 10, counts[qs.queries.users].to_numpy())
    assert (qs.queries.values.getnnz(axis=1) == sup).all() and qs.queries.values.data.min() >= 1


def test_rating_metrics_and_reference_predictors_known_answer():
    m = rating_metrics(np.array([0, 0, 1, 1]), np.array([5.0, 1.0, 2.0, 4.0]), np.array([1.0, 5.0, 2.0, 4.0]))
    assert m["MAE"] == 2.0 and m["nDCG@1"] == pytest.approx((1 / 31 + 15 / 15) / 2)  # gains 2^1 - 1 of 2^5 - 1, then 2^4 - 1 of 2^4 - 1
    # Item means 4 (x) and 2 (y) from training; the new user rated x 5 in the support: bias +1.
    data = ratings([("a", "x", "r", 4, 1), ("b", "x", "r", 4, 2), ("a", "y", "r", 2, 3), ("n", "x", "r", 5, 4), ("n", "y", "r", 3, 5)])
    from metarec.data.splits import QuerySet

    n = data.user_index(["n"])[0]
    x, y = data.item_index(["x", "y"])
    train = data.subset(data.interactions["user"].to_numpy() != n)
    hist = sp.csr_matrix(([1.0], ([0], [x])), shape=(1, data.n_items))
    vals = sp.csr_matrix(([5.0], ([0], [x])), shape=(1, data.n_items))
    qs = QuerySet("melu", None, Queries([n], hist, vals), hist)
    test = pd.DataFrame({"user": [n], "item": [y], "value": [3.0]})
    ref = reference_ratings(train, qs, test)
    assert ref["item-mean"]["MAE"] == pytest.approx(1.0)  # predicts 2
    assert ref["item-mean+user-bias"]["MAE"] == pytest.approx(0.0)  # predicts 2 + 1
    assert ref["global-mean"]["MAE"] == pytest.approx(10 / 3 - 3.0, rel=1e-5)


def test_melu_protocol_in_the_harness(world):
    res = evaluate(world, "melu", ["finetune"], seeds=[0], params={"finetune": FAST})
    models = {r["model"] for r in res.rows}
    assert models == {"finetune", "global-mean", "item-mean", "item-mean+user-bias"}
    assert {r["metric"] for r in res.rows} == {"MAE", "RMSE", "nDCG@1", "nDCG@3"}
    assert res.value("item-mean+user-bias", "MAE") < res.value("global-mean", "MAE")
