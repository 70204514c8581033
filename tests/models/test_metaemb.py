"""MetaEmb: generated id embeddings for never-trained items (known answers on the synthetic world)."""

import numpy as np
import pytest
import torch

from metarec.data import Queries
from metarec.data.splits import make_split
from metarec.models import make_scorer

FAST = {"encoder": "hashing-64", "epochs": 3, "metaemb": True, "metaemb_epochs": 3}


@pytest.fixture(scope="module")
def cold(world):
    """A cold-item split: a fifth of the items have no event in training."""
    split = make_split(world, "cold-item", 0)
    return split, make_scorer("multitask", **FAST).fit(split.train)


def test_the_generator_beats_its_starting_point_on_held_out_items(cold):
    _, m = cold
    result = m.metaemb_[0]
    start = result.history[0]
    assert start["epoch"] == -1
    assert result.best_epoch >= 0 and result.best_score > start["validation"]
    assert {"loss[cold]", "loss[warm]"} <= set(result.history[1])


def test_new_items_take_the_generated_embedding(cold):
    split, m = cold
    net = m.nets_[0]
    new = torch.from_numpy(np.flatnonzero(~m.known_items_))
    old = torch.from_numpy(np.flatnonzero(m.known_items_)[:5])
    assert len(new)
    with torch.no_grad():
        v, _ = net.items(new)
        expected, _ = net.items(new, id_emb=net.generate(new))
        np.testing.assert_allclose(v.numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)
        net.own[new] = False
        unknown, _ = net.items(new)
        warm_off, _ = net.items(old)
        net.own[new] = True
        warm_on, _ = net.items(old)
    assert not np.allclose(v.numpy(), unknown.numpy())  # not the shared unknown embedding
    np.testing.assert_array_equal(warm_on.numpy(), warm_off.numpy())  # trained items keep their own


def test_generated_embeddings_survive_saving(cold, world, tmp_path):
    from metarec.models.io import load_model, save_model

    split, m = cold
    save_model(m, split.train, tmp_path / "m")
    loaded = load_model(tmp_path / "m").scorer
    assert bool(loaded.nets_[0].generator_on)
    q = Queries([0, 1, 2], split.train.matrix()[[0, 1, 2]])
    np.testing.assert_allclose(loaded.score(q), m.score(q), rtol=1e-4, atol=1e-5)


def test_items_added_later_are_generated_too(cold):
    import copy

    m = copy.deepcopy(cold[1])
    n = m.n_items_
    m.add_items(m.item_vectors_[[0]].copy(), ["a copy of item 0's text"])
    net = m.nets_[0]
    with torch.no_grad():
        v, _ = net.items(torch.tensor([n]))
        g, _ = net.items(torch.tensor([n]), id_emb=net.generate(torch.tensor([n])))
    np.testing.assert_allclose(v.numpy(), g.numpy(), rtol=1e-5, atol=1e-6)


def test_warm_up_moves_a_new_item_towards_its_users(cold, world):
    """One MetaEmb warm-up step on a new item's first users widens the gap between their
    scores for it and other users' (the loss it descends is "these users, not random ones"),
    leaves other items alone, and does not depend on the order its users came in."""
    import copy

    split, m = cold
    m = copy.deepcopy(m)
    item = int(np.flatnonzero(~m.known_items_)[0])
    interacted = world.matrix()[:, item].toarray().ravel() > 0
    users = np.flatnonzero(interacted)[:8]
    strangers = np.flatnonzero(~interacted)[:40]
    q = Queries(np.full(len(users), -1), split.train.matrix()[users])
    q_other = Queries(np.full(len(strangers), -1), split.train.matrix()[strangers])

    def gap():
        return m.score(q)[:, item].mean() - m.score(q_other)[:, item].mean()

    before, scores = gap(), m.score(q)
    assert m.warm_up(item, q)
    assert gap() > before
    others = np.setdiff1d(np.arange(m.n_items_), [item])
    np.testing.assert_allclose(m.score(q)[:, others], scores[:, others], rtol=1e-5, atol=1e-6)
    warmed = m.nets_[0].item_id.weight[item].detach().clone()
    m.warm_up(item, q[np.arange(len(users))[::-1]])
    np.testing.assert_allclose(m.nets_[0].item_id.weight[item].detach().numpy(), warmed.numpy(), rtol=1e-4, atol=1e-6)
    assert not m.warm_up(int(np.flatnonzero(m.known_items_)[0]), q)  # trained items keep their own


def test_the_service_warms_a_new_item_up_on_its_events(cold, tmp_path):
    from metarec.models.io import load_model, save_model
    from metarec.serving.online import OnlineRecommender
    from metarec.serving.store import Event, SQLiteStore

    split, m = cold
    save_model(m, split.train, tmp_path / "m")
    model = load_model(tmp_path / "m")
    store = SQLiteStore(tmp_path / "events.db")
    online = OnlineRecommender(model, store)
    item = int(np.flatnonzero(~model.scorer.known_items_)[0])
    item_id = str(model.item_ids[item])
    net = model.scorer.nets_[0]
    generated = net.item_id.weight[item].detach().clone()
    events = [Event(f"e{k}", str(model.user_ids[k]), item_id, "view") for k in range(3)]
    store.add_events(events)
    online.apply(events)
    assert not torch.equal(net.item_id.weight[item].detach(), generated)
    # A restart rebuilds the same warm embedding from the store.
    again = OnlineRecommender(load_model(tmp_path / "m"), store)
    np.testing.assert_allclose(again.model.scorer.nets_[0].item_id.weight[item].detach().numpy(),
                               net.item_id.weight[item].detach().numpy(), rtol=1e-5, atol=1e-6)  # fmt: skip
