"""The multi-task network on known answers: shared weights, funnels, weighting, history handling."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from metarec.data import Queries, build_dataset
from metarec.data.dataset import pair_matrix
from metarec.data.splits import make_split
from metarec.errors import ConfigError, DataError
from metarec.evaluation.harness import evaluate_tasks
from metarec.models import make_scorer
from metarec.models.neural.features import encode_attributes
from metarec.models.neural.network import History

FAST = {"encoder": "hashing-64", "epochs": 3}


@pytest.fixture(scope="module")
def shop():
    """Two user groups and two item blocks: a group views items of its own block and buys a
    few of them; items carry a category that names the block."""
    rng = np.random.default_rng(0)
    rows = []
    for u in range(60):
        block = 0 if u < 30 else 1
        items = rng.choice(np.arange(20) + 20 * block, size=8, replace=False)
        for t, i in enumerate(items):
            rows.append((f"u{u}", f"i{i}", "pv", 1.0, 1000 + 10 * t))
            if t < 2:
                rows.append((f"u{u}", f"i{i}", "buy", 1.0, 1001 + 10 * t))
    raw = pd.DataFrame(rows, columns=["user", "item", "event", "value", "timestamp"])
    items = pd.DataFrame({"category": [f"c{i // 20}" for i in range(40)]}, index=[f"i{i}" for i in range(40)])
    return build_dataset(raw, source="shop.csv", items=items, name="shop")


def test_history_leaves_the_target_out():
    """A pair's own item is dropped from its history: same user vector as a history without it."""
    from metarec.data.tasks import Task
    from metarec.models.neural.network import TaskNet

    attrs = encode_attributes(pd.DataFrame(index=range(3)), 3)
    item_attrs = encode_attributes(pd.DataFrame(index=range(5)), 5)
    net = TaskNet([Task("x", "binary", ("x",))], attrs, item_attrs, torch.randn(5, 4),
                  torch.ones(3, dtype=torch.bool), torch.ones(5, dtype=torch.bool), dim=8).eval()  # fmt: skip
    full = sp.csr_matrix(np.array([[1, 1, 0, 1, 0]], dtype=np.float32))
    without = sp.csr_matrix(np.array([[1, 0, 0, 1, 0]], dtype=np.float32))
    users = torch.tensor([0])
    a = net.users(users, History.build(full, drop=np.array([1])))
    b = net.users(users, History.build(without))
    torch.testing.assert_close(a, b)
    # An item not in the history is not subtracted.
    c = net.users(users, History.build(without, drop=np.array([2])))
    torch.testing.assert_close(c, b)


def test_catalogue_vectors_are_cached_until_the_network_changes():
    """``all_items`` is computed once per state of the network: an in-place update (an
    optimiser step), a replaced table (new items) or train/eval mode gives fresh vectors."""
    from metarec.data.tasks import Task
    from metarec.models.neural.network import TaskNet

    attrs = encode_attributes(pd.DataFrame(index=range(3)), 3)
    item_attrs = encode_attributes(pd.DataFrame({"c": list("abcab")}), 5)
    net = TaskNet([Task("x", "binary", ("x",))], attrs, item_attrs, torch.randn(5, 4),
                  torch.ones(3, dtype=torch.bool), torch.ones(5, dtype=torch.bool), dim=8).eval()  # fmt: skip
    v, b = net.all_items()
    assert net.all_items()[0] is v  # cached
    with torch.no_grad():
        torch.testing.assert_close(v, net.items(torch.arange(5))[0])
        net.item_id.weight[2] += 1.0  # in place, as an optimiser step
        net.item_bias.weight[0] += 0.5
    v2, b2 = net.all_items()
    torch.testing.assert_close(v2[2], v[2] + 1.0)
    torch.testing.assert_close(v2[[0, 1, 3, 4]], v[[0, 1, 3, 4]])
    assert float(b2[0] - b[0]) == pytest.approx(0.5)
    net.extend_items(2, torch.randn(2, 4), encode_attributes(pd.DataFrame({"c": list("abcabab")}), 7))
    assert net.all_items()[0].shape == (7, 8)
    eval_v = net.all_items()[0]
    assert net.train().all_items()[0] is not eval_v  # training mode (id dropout) is another state


@pytest.mark.parametrize("architecture", ["ple", "mmoe", "shared-bottom"])
def test_fused_heads_compute_each_module_s_function(architecture):
    """The heads run experts, gates and towers as batched matmuls; the result is what calling
    each module in turn gives (the textbook MMoE/PLE), for any subset of tasks."""
    import torch.nn.functional as F

    from metarec.data.tasks import Task
    from metarec.models.neural.network import TaskNet

    torch.manual_seed(0)
    tasks = [Task("a", "binary", ("a",)), Task("b", "binary", ("b",)), Task("r", "regression", ("r",))]
    attrs = encode_attributes(pd.DataFrame(index=range(3)), 3)
    net = TaskNet(tasks, attrs, attrs, torch.randn(3, 4), torch.ones(3, dtype=torch.bool), torch.ones(3, dtype=torch.bool),
                  dim=8, hidden=16, architecture=architecture, rating_mean=3.0).eval()  # fmt: skip
    u, v = torch.randn(10, 8), torch.randn(10, 8)
    x = torch.cat([u, v, u * v], dim=1)
    for only in (["a", "b", "r"], ["r"], ["b", "a"]):
        out = net.heads(u, v, only=only)
        assert set(out) == set(only)
        for name in only:
            if architecture == "shared-bottom":
                bottom = net.bottom(x)
            else:
                experts = [ex(x) for ex in net.experts]
                if architecture == "ple":
                    experts.append(net.task_experts[name](x))
                gate = F.softmax(net.gates[name](x), dim=1)
                bottom = sum(gate[:, k, None] * e for k, e in enumerate(experts))
            raw = net.head[name](bottom).squeeze(-1)
            expected = raw + 3.0 if name == "r" else F.logsigmoid(raw)
            torch.testing.assert_close(out[name], expected, rtol=1e-5, atol=1e-5)


def test_attributes_are_typed_and_scaled():
    a = encode_attributes(pd.DataFrame({"c": ["x", "y", "x", None], "price": [1.0, 2.0, 3.0, np.nan]}), 4)
    assert a.cat_columns == ["c"] and a.num_columns == ["price"]
    assert a.codes[:, 0].tolist() == [1, 2, 1, 0] and a.sizes == [3]
    assert a.numbers[3, 0] == 0.0 and abs(a.numbers[:3, 0].mean()) < 1e-6


def test_multitask_learns_the_blocks(shop):
    """Held-out pairs of a user's own block beat the other block on every task."""
    m = make_scorer("multitask", epochs=40, batch_size=128, validation=0.0, seed=0).fit(shop)
    assert [t.name for t in m.tasks] == ["buy", "pv"]
    q = Queries(np.arange(60), shop.matrix())
    own = np.array([20 * (u >= 30) + 19 for u in range(60)])  # may or may not be seen; same block
    other = np.array([20 * (u < 30) + 19 for u in range(60)])
    rows = np.arange(60)
    p_own, p_other = m.predict_tasks(q, rows, own), m.predict_tasks(q, rows, other)
    for task in ("pv", "buy"):
        assert (p_own[task] > p_other[task]).mean() >= 0.9, task


def test_funnel_bounds_the_child_by_its_parent(shop):
    m = make_scorer("multitask", funnel="pv>buy", **FAST).fit(shop)
    q = Queries(np.arange(60), shop.matrix())
    rows = np.repeat(np.arange(60), 40)
    items = np.tile(np.arange(40), 60)
    p = m.predict_tasks(q, rows, items)
    assert (p["buy"] <= p["pv"] + 1e-6).all()


def test_uncertainty_weights_are_logged_and_fixed_weights_are_not(shop):
    m = make_scorer("multitask", **FAST).fit(shop)
    epochs = [h for h in m.training_[0].history if h["epoch"] >= 0]
    assert {"w[buy]", "w[pv]", "loss[buy]", "loss[pv]"} <= set(epochs[0])
    fixed = make_scorer("multitask", weighting="fixed", task_weights="buy=2", **FAST).fit(shop)
    assert not any(k.startswith("w[") for k in fixed.training_[0].history[1])


def test_gradnorm_weights_sum_to_the_task_count_and_favour_the_slower_task(shop):
    """GradNorm's weights stay a distribution times T, and the task whose loss falls more
    slowly relative to its start ends with the larger weight."""
    m = make_scorer("multitask", weighting="gradnorm", architecture="shared-bottom", **{**FAST, "epochs": 4}).fit(shop)
    epochs = [h for h in m.training_[0].history if h["epoch"] >= 0]
    w = {k: float(v) for k, v in epochs[-1].items() if k.startswith("w[")}
    assert set(w) == {"w[buy]", "w[pv]"}
    assert abs(sum(w.values()) - 2.0) < 1e-4
    assert w["w[buy]"] != pytest.approx(1.0, abs=1e-3)  # the weights moved
    slower = max(("buy", "pv"), key=lambda t: float(epochs[-1][f"loss[{t}]"]) / float(epochs[0][f"loss[{t}]"]))
    assert w[f"w[{slower}]"] > 1.0
    with pytest.raises(ConfigError, match="weighting"):
        make_scorer("multitask", weighting="nope", **FAST).fit(shop)


def test_singletask_trains_one_network_per_task_independently(shop):
    """A single-task network does not depend on which other tasks exist."""
    both = make_scorer("singletask", **FAST).fit(shop)
    alone = make_scorer("singletask", tasks="pv=pv", **FAST).fit(shop)
    assert len(both.nets_) == 2 and len(alone.nets_) == 1
    q = Queries(np.arange(10), shop.matrix()[:10])
    rows, items = np.arange(10), np.arange(10)
    np.testing.assert_allclose(both.predict_tasks(q, rows, items)["pv"], alone.predict_tasks(q, rows, items)["pv"], rtol=1e-5)


def test_a_network_s_retrieval_label_is_its_own_tasks(shop):
    """The retrieval score learns "any of the network's tasks is positive": every observed pair
    for the multi-task network, only bought pairs for the single-task ``buy`` network, which
    would otherwise learn from views (a second task) through it."""
    m = make_scorer("singletask", **FAST).fit(shop)
    names = [t.name for t in m.tasks_]
    users, items = np.array([0, 0, 1, 1]), np.array([0, 1, 2, 3])
    labels = np.array([[1.0, 1.0], [0.0, 1.0], [0.0, 0.0], [1.0, 0.0]])[:, [["buy", "pv"].index(n) for n in names]]
    targets = np.array([0, 1, -1, 3])  # pair 2 is a sampled negative
    everything = m._batch(users, items, labels, targets, m.tasks_)
    np.testing.assert_array_equal(everything["any"], [1, 1, 0, 1])
    buy = m.tasks_[names.index("buy")]
    alone = m._batch(users, items, labels[:, [names.index("buy")]], targets, [buy])
    np.testing.assert_array_equal(alone["any"], [1, 0, 0, 1])
    # The viewed-not-bought pair's item still leaves its user's history, as at test time.
    np.testing.assert_array_equal(alone["history"].drop.numpy(), targets)


def test_bad_configuration_is_named(shop):
    with pytest.raises(ConfigError, match="funnel"):
        make_scorer("multitask", funnel="pv>nope", **FAST).fit(shop)
    with pytest.raises(ConfigError, match="architecture"):
        make_scorer("multitask", architecture="ple-x", **FAST).fit(shop)
    with pytest.raises(ConfigError, match="rank_by"):
        make_scorer("multitask", rank_by="view=1", **FAST).fit(shop)
    with pytest.raises(ConfigError, match="validation_order"):
        make_scorer("multitask", validation_order="newest", **FAST).fit(shop)


def test_time_ordered_validation_holds_out_the_latest_pairs(shop):
    s = make_scorer("multitask", validation_order="time", **{**FAST, "epochs": 1}).fit(shop)
    labels = s._labels(shop)
    val, held = s._validation_pairs(labels)
    assert len(held) == 0  # every user has earlier pairs
    assert val.sum() == round(0.1 * len(val))
    assert labels["time"][val].min() >= labels["time"][~val].max()
    # Random (the default): held-out pairs from all times.
    s.config.validation_order = "random"
    val, _ = s._validation_pairs(labels)
    assert 0 < val.sum() < len(val) and labels["time"][val].min() < labels["time"][~val].max()


def test_time_validation_treats_users_who_arrive_after_the_cut_as_new(shop, monkeypatch):
    """``validation_order=time`` mirrors a temporal split: users whose every pair is after the
    cut are new (untrained ids, empty histories), and in training and validation no history
    holds a held-out pair; the fitted model serves with every training pair."""
    from metarec.models.neural.multitask import MultiTaskScorer

    raw = shop.interactions.assign(user=shop.user_ids[shop.interactions["user"]], item=shop.item_ids[shop.interactions["item"]])
    late = pd.DataFrame({"user": np.repeat([f"late{k}" for k in range(4)], 5), "item": [f"i{i}" for i in range(20)],
                         "event": "pv", "value": 1.0, "timestamp": 9000 + np.arange(20)})  # fmt: skip
    data = build_dataset(pd.concat([raw, late], ignore_index=True), source="late.csv", items=shop.items.set_axis(shop.item_ids), name="late")
    histories = []
    predict = MultiTaskScorer._predict_net

    def spy(self, net, users, items, drop, history=None, chunk=65536):
        histories.append(self.history_.copy())
        return predict(self, net, users, items, drop, history, chunk)

    monkeypatch.setattr(MultiTaskScorer, "_predict_net", spy)
    s = make_scorer("multitask", validation_order="time", new_user_net=False, **FAST).fit(data)  # the first network's
    monkeypatch.undo()
    late_users = np.flatnonzero(np.char.startswith(data.user_ids.astype(str), "late"))
    labels = s._labels(data)
    val, held = s._validation_pairs(labels)
    np.testing.assert_array_equal(held, late_users)
    known = s.nets_[0].known_users.numpy()
    assert not known[late_users].any() and known[np.setdiff1d(np.arange(data.n_users), late_users)].all()
    assert val[np.isin(labels["user"], late_users)].all() and val.sum() > 20  # known users' latest pairs too
    train_pairs = pair_matrix(labels["user"][~val], labels["item"][~val], data.n_users, data.n_items)
    assert histories and all((h != h.multiply(train_pairs)).nnz == 0 and h.nnz == train_pairs.nnz for h in histories)
    assert s.history_.nnz == data.matrix().nnz


def test_user_validation_holds_out_whole_users_as_new_ones(shop, monkeypatch):
    """``validation_order=users``: every pair of a share of the users is held out, those users'
    ids stay untrained (unknown to the network), and they are validated without a history."""
    from metarec.models.neural.multitask import MultiTaskScorer

    seen = []
    predict = MultiTaskScorer._predict_net

    def spy(self, net, users, items, drop, history=None, chunk=65536):
        seen.append(self.history_[np.unique(users)].nnz if history is None else history[0].nnz)
        return predict(self, net, users, items, drop, history, chunk)

    monkeypatch.setattr(MultiTaskScorer, "_predict_net", spy)
    s = make_scorer("multitask", validation_order="users", **FAST).fit(shop)
    assert seen and all(n == 0 for n in seen)  # validation: empty histories
    assert s.history_.nnz == shop.matrix().nnz  # served with every training pair
    monkeypatch.undo()
    labels = s._labels(shop)
    val, held = s._validation_pairs(labels)
    assert len(held) == round(0.1 * shop.n_users)
    np.testing.assert_array_equal(val, np.isin(labels["user"], held))
    known = s.nets_[0].known_users.numpy()
    assert not known[held].any() and known[np.setdiff1d(np.arange(shop.n_users), held)].all()
    # Scored as a user with no id (shop users have no attributes) and the same history.
    with torch.no_grad():
        net, item = s.nets_[0], np.array([3])
        got = s.predict_tasks(Queries(held[:1], shop.matrix()[held[:1]]), np.array([0]), item)
        u = net.eval().users(torch.tensor([-1]), History.build(shop.matrix()[held[:1]], drop=item))
        assert got["pv"][0] == pytest.approx(float(s._outputs(net, u, item)["pv"][0]), rel=1e-5)
        known_user = np.setdiff1d(np.arange(shop.n_users), held)[:1]
        u = net.users(torch.from_numpy(known_user), History.build(shop.matrix()[known_user], drop=item))
        other = s.predict_tasks(Queries(known_user, shop.matrix()[known_user]), np.array([0]), item)
        assert other["pv"][0] == pytest.approx(float(s._outputs(net, u, item)["pv"][0]), rel=1e-5)
        u_anon = net.users(torch.tensor([-1]), History.build(shop.matrix()[known_user], drop=item))
        assert other["pv"][0] != pytest.approx(float(s._outputs(net, u_anon, item)["pv"][0]), rel=1e-5)


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_new_users_are_served_by_a_network_validated_on_new_users(shop, tmp_path):
    """``new_user_net`` (default): the first network is the one-network model's, the second is
    the ``validation_order=users`` model's, bit for bit; a user with no trained id and no
    history gets the second's predictions and scores, everyone else the first's."""
    from metarec.models.io import load_model, save_model

    both = make_scorer("multitask", **FAST).fit(shop)
    one = make_scorer("multitask", new_user_net=False, **FAST).fit(shop)
    users = make_scorer("multitask", new_user_net=False, validation_order="users", **FAST).fit(shop)
    assert len(both.new_user_nets_) == 1 and not one.new_user_nets_
    assert _same_weights(both.nets_[0], one.nets_[0]) and _same_weights(both.new_user_nets_[0], users.nets_[0])
    assert not _same_weights(both.nets_[0], both.new_user_nets_[0])
    assert both.new_user_training_[0].best_epoch == users.training_[0].best_epoch
    # Rows: a known user, a user with no id but a history, a user with no id and no history.
    hist = sp.vstack([shop.matrix()[[0, 5]], sp.csr_matrix((1, shop.n_items))]).tocsr()
    q = Queries([0, -1, -1], hist)
    rows, items = np.array([0, 1, 2, 2]), np.array([3, 3, 3, 30])
    got = both.predict_tasks(q, rows, items)
    # Each network is asked for the rows it serves in ``both``, so the batches have the same
    # shapes and the results are equal to the bit (a float32 product's rounding can depend
    # on the batch's shape).
    first, second = one.predict_tasks(q, rows[:2], items[:2]), users.predict_tasks(q, rows[2:], items[2:])
    first_new = one.predict_tasks(q, rows[2:], items[2:])
    for task in ("pv", "buy"):
        np.testing.assert_array_equal(got[task][:2], first[task])
        np.testing.assert_array_equal(got[task][2:], second[task])
        assert not np.allclose(got[task][2:], first_new[task])
    scores = both.score(q)
    np.testing.assert_array_equal(scores[:2], one.score(q[np.array([0, 1])]))
    np.testing.assert_array_equal(scores[2:], users.score(q[np.array([2])]))
    # Saved and loaded: both networks come back; a model saved without one loads with none.
    save_model(both, shop, tmp_path / "both")
    save_model(one, shop, tmp_path / "one")
    np.testing.assert_allclose(load_model(tmp_path / "both").scorer.score(q), scores, rtol=1e-6)
    assert not load_model(tmp_path / "one").scorer.new_user_nets_
    # A state that lacks the first networks is refused, not served by untrained weights.
    state = {k: v for k, v in both.get_state().items() if not k.startswith("net0.")}
    with pytest.raises(DataError, match=r"no weights for network 0 \(net0\.\*\)"):
        make_scorer("multitask", **FAST).set_state(state)
    # With validation_order=users the one network is that network already: no second one.
    assert not make_scorer("multitask", validation_order="users", **FAST).fit(shop).new_user_nets_


def test_singletask_has_a_new_user_network_per_task(shop):
    s = make_scorer("singletask", **FAST).fit(shop)
    assert [n.tasks for n in s.new_user_nets_] == [n.tasks for n in s.nets_] and len(s.nets_) == 2


def test_shared_bottom_and_mmoe_both_train(shop):
    for arch in ("shared-bottom", "mmoe"):
        m = make_scorer("multitask", architecture=arch, encoder="hashing-64", epochs=15, batch_size=64).fit(shop)
        assert m.training_[0].best_score > 0.75, arch  # validation AUC of held-out pairs


def test_task_metrics_in_the_harness(shop):
    split = make_split(shop, "leave-last", 0)
    m = make_scorer("multitask", **FAST).fit(split.train)
    rows = {r["metric"]: r for r in evaluate_tasks(m, split, seed=0, negatives=3)}
    assert set(rows) == {"AUC[buy]", "LogLoss[buy]", "AUC[pv]", "LogLoss[pv]"}
    # Every user's last pair is a view (never a buy here): positives are counted as such.
    assert rows["AUC[pv]"]["positives"] == 60 and rows["AUC[buy]"]["positives"] == 0
    assert np.isnan(rows["AUC[buy]"]["value"])  # no positive: undefined, not a made-up number
    assert 0.0 <= rows["AUC[pv]"]["value"] <= 1.0
    # A model that does not predict tasks gets no task rows.
    assert evaluate_tasks(make_scorer("pop").fit(split.train), split, seed=0) == []


def test_ratings_give_a_regression_head(world):
    split = make_split(world, "holdout", 0)
    m = make_scorer("multitask", **FAST).fit(split.train)
    rows = {r["metric"]: r["value"] for r in evaluate_tasks(m, split, seed=0)}
    assert "RMSE[rating]" in rows and 0.0 < rows["RMSE[rating]"] < 2.0


@pytest.fixture(scope="module")
def people(shop):
    """``shop`` with user attributes (a category and a number) and two cold users, ``c0``
    and ``c1``: in the vocabulary, with attributes, without interactions."""
    raw = shop.interactions.assign(user=shop.user_ids[shop.interactions["user"]], item=shop.item_ids[shop.interactions["item"]])
    ids = [f"u{u}" for u in range(60)] + ["c0", "c1"]
    users = pd.DataFrame({"side": ["left"] * 30 + ["right"] * 30 + ["left", "right"],
                          "age": list(range(20, 80)) + [25, 70]}, index=ids)  # fmt: skip
    items = pd.DataFrame({"category": [f"c{i // 20}" for i in range(40)]}, index=[f"i{i}" for i in range(40)])
    return build_dataset(raw, source="shop.csv", items=items, users=users, name="shop")


def test_a_user_added_after_training_is_scored_from_their_attributes_as_a_cold_user_is(people, tmp_path):
    """``add_users`` (the service's ``PUT /users`` for a user the model does not know): the
    attributes are coded as the training users' were, so a user added with a cold user's
    attributes (in the data's vocabulary, never trained on) gets that cold user's scores, to
    the bit, before and after saving; an unseen category or a non-number codes as missing."""
    from metarec.models.io import load_model, save_model

    data = people
    m = make_scorer("multitask", **FAST).fit(data)
    cold = data.user_index(["c0", "c1"])
    empty = sp.csr_matrix((2, data.n_items))
    want = m.score(Queries(cold, empty))
    assert not np.allclose(want[0], want[1])  # the attributes matter to these scores
    # A batch of one is compared with a batch of one: a matrix product may round a row
    # differently in a batch of another size (one float32 ulp seen in a CI run).
    want_one = m.score(Queries(cold[:1], empty[:1]))[0]
    save_model(m, data, tmp_path / "m")
    for model in (m, load_model(tmp_path / "m").scorer):
        new = model.add_users(pd.DataFrame({"side": ["left", "right", "north"], "age": [25, "70", "old"]}))
        np.testing.assert_array_equal(new, [62, 63, 64])
        got = model.score(Queries(new, sp.csr_matrix((3, data.n_items))))
        np.testing.assert_array_equal(model.score(Queries(new[:2], empty)), want)
        nothing = model.score(Queries([-1], sp.csr_matrix((1, data.n_items))))
        assert not np.allclose(got[2], want[0]) and not np.allclose(got[2], nothing[0])
        missing_one = model.score(Queries(new[2:], sp.csr_matrix((1, data.n_items))))[0]
        # Recoded: the third user's attributes become the first cold user's.
        model.update_users(new[2:], pd.DataFrame({"side": ["left"], "age": [25]}))
        np.testing.assert_array_equal(model.score(Queries(new[2:], sp.csr_matrix((1, data.n_items))))[0], want_one)
        # No attributes given: every one missing, as an unseen category and a non-number are.
        (bare,) = model.add_users(pd.DataFrame(index=range(1)))
        np.testing.assert_array_equal(model.score(Queries([bare], sp.csr_matrix((1, data.n_items))))[0], missing_one)


def test_a_user_who_gives_no_attributes_is_scored_with_the_trained_users_mean_ones(people):
    """Index -1 (an anonymous user) scores with the mean of the trained users' attribute
    embeddings in place of their own; in training (and where meta-learning validates its
    episodes) it has no attribute part."""
    m = make_scorer("multitask", **FAST).fit(people)
    net = m.nets_[0].eval()
    hist = History.build(people.matrix()[[3, 40]])
    idx = torch.tensor([-1, -1])
    with torch.no_grad():
        with net.anonymous_without_attributes():
            plain = net.users(idx, hist)
        got = net.users(idx, hist)
        mean = net.user_attrs(torch.from_numpy(np.flatnonzero(m.known_users_))).mean(0)
        net.train()
        trained = net.users(idx, hist)
        net.eval()
    torch.testing.assert_close(got - plain, mean.expand(2, -1))
    assert mean.abs().sum() > 0
    torch.testing.assert_close(trained, plain)
