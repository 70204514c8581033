"""Scale-out: data-parallel training in the shared loop (known answer on two gloo processes),
and the Ray paths end to end (encoding actors, Ray Train workers) on a local cluster."""

import dataclasses
import os
import tempfile

import numpy as np
import pytest
import torch

from metarec.training import TrainConfig, _shard, train, worker_batch_size


def test_shard_gives_each_worker_its_turn_and_equal_steps():
    assert list(_shard(range(7), 0, 2)) == [0, 2, 4]
    assert list(_shard(range(7), 1, 2)) == [1, 3, 5]  # 6 is dropped: both take 3 steps
    assert list(_shard(range(3), 0, 1)) == [0, 1, 2]


def test_a_worker_builds_only_the_batches_it_takes():
    built = []

    def lazy(j):
        def build():
            built.append(j)
            return {"j": j}

        return build

    assert [b["j"] for b in _shard((lazy(j) for j in range(7)), 1, 2)] == [1, 3, 5]
    assert built == [1, 3, 5]
    assert [b["j"] for b in _shard((lazy(j) for j in range(3)), 0, 1)] == [0, 1, 2]


class Mean(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(3))

    def loss(self, batch):
        return {"loss": ((self.w - batch["x"]) ** 2).mean()}


def _batches(rng):
    for _ in range(6):
        yield {"x": torch.tensor(rng.normal([1.0, 2.0, 3.0], 1.0, (8, 3)))}


def _pairs(rng):
    """The same batches, two at a time: what two data-parallel workers see in one step."""
    it = _batches(rng)
    for a in it:
        b = next(it)
        yield {"x": torch.cat([a["x"], b["x"]])}


def _epoch(rng):
    """48 fixed rows in a seeded order, in batches of 16 examples per step, however many
    data-parallel workers share a step."""
    x = np.random.default_rng(0).normal([1.0, 2.0, 3.0], 1.0, (48, 3))
    order = rng.permutation(48)
    size = worker_batch_size(16)
    for s in range(0, 48, size):
        yield {"x": torch.tensor(x[order[s : s + size]])}


def _in_group(rank, world, init, job, *args):
    """``job(rank, *args)`` in worker ``rank`` of a gloo process group of ``world`` (``mp.spawn``)."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        job(rank, *args)
    finally:
        dist.destroy_process_group()


def _train_mean(rank, out, batches=_batches):
    m = Mean()
    train(m, batches, None, TrainConfig(epochs=3, lr=0.1, progress=False))
    torch.save(m.w.detach(), f"{out}/w{rank}.pt")


def test_two_data_parallel_workers_train_as_one_process_on_both_batches():
    """With gradients averaged across two workers, each taking every other batch, the weights
    follow the single-process run on the two batches concatenated, step for step."""
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as tmp:
        init = f"file://{tmp}/rendezvous"
        mp.spawn(_in_group, args=(2, init, _train_mean, tmp), nprocs=2, join=True)
        w0, w1 = torch.load(f"{tmp}/w0.pt"), torch.load(f"{tmp}/w1.pt")
    single = Mean()
    train(single, _pairs, None, TrainConfig(epochs=3, lr=0.1, progress=False))
    torch.testing.assert_close(w0, w1)
    torch.testing.assert_close(w0, single.w.detach(), rtol=1e-5, atol=1e-6)
    alone = Mean()  # one worker on its own batches alone ends elsewhere
    train(alone, lambda rng: _shard(_batches(rng), 0, 2), None, TrainConfig(epochs=3, lr=0.1, progress=False))
    assert not torch.allclose(alone.w.detach(), w0, atol=1e-4)


def test_workers_split_each_batch_so_training_matches_one_process():
    """A model that sizes its batches with ``worker_batch_size`` trains the same under two
    data-parallel workers as in one process: each worker builds half-size batches of the same
    seeded sequence, and a step averages the two halves of one single-process batch."""
    import torch.multiprocessing as mp

    assert worker_batch_size(16) == 16  # no process group
    with tempfile.TemporaryDirectory() as tmp:
        init = f"file://{tmp}/rendezvous"
        mp.spawn(_in_group, args=(2, init, _train_mean, tmp, _epoch), nprocs=2, join=True)
        w0, w1 = torch.load(f"{tmp}/w0.pt"), torch.load(f"{tmp}/w1.pt")
    single = Mean()
    train(single, _epoch, None, TrainConfig(epochs=3, lr=0.1, progress=False))
    torch.testing.assert_close(w0, w1)
    torch.testing.assert_close(w0, single.w.detach(), rtol=1e-5, atol=1e-6)


def _train_gradnorm(rank, out):
    from metarec.data import Queries
    from metarec.data.synthetic import WorldConfig, make_world
    from metarec.models import make_scorer

    torch.set_num_threads(1)
    data = make_world(WorldConfig(n_users=120, n_items=60, views_per_user=12, seed=3))
    s = make_scorer("multitask", encoder="hashing-64", epochs=3, batch_size=256, validation=0.0,
                    weighting="gradnorm").fit(data)  # fmt: skip
    last = s.training_[0].history[-1]
    weights = {k: float(v) for k, v in last.items() if k.startswith("w[")}
    torch.save({"w": weights, "scores": s.score(Queries(np.arange(5), data.matrix()[:5]))}, f"{out}/r{rank}.pt")


def test_gradnorm_weights_learn_in_step_across_data_parallel_workers():
    """GradNorm's task weights are parameters like the network's: under two gloo workers
    they move away from equal weights and end the same on both, as do the scores."""
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_in_group, args=(2, f"file://{tmp}/rendezvous", _train_gradnorm, tmp), nprocs=2, join=True)
        r0, r1 = (torch.load(f"{tmp}/r{k}.pt", weights_only=False) for k in (0, 1))
    assert r0["w"].keys() == r1["w"].keys() and len(r0["w"]) >= 2
    assert r0["w"] == pytest.approx(r1["w"], rel=1e-6)
    assert sum(r0["w"].values()) == pytest.approx(len(r0["w"]), rel=1e-5)  # GradNorm keeps their sum
    assert any(abs(w - 1.0) > 1e-3 for w in r0["w"].values())
    np.testing.assert_allclose(r0["scores"], r1["scores"], rtol=1e-5)


ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    from metarec.distributed import ensure_ray

    yield ensure_ray(2)
    ray.shutdown()


@pytest.mark.slow
def test_ray_data_encoding_matches_the_local_encoder_and_fills_the_cache(local_ray, world, tmp_path):
    from metarec.encoders import ContentConfig, item_content
    from metarec.encoders.cache import EmbeddingCache

    config = ContentConfig(encoder="hashing-64", cache_dir=str(tmp_path / "cache"))
    vecs, has = item_content(world, config, workers=2)
    local, _ = item_content(world, ContentConfig(encoder="hashing-64", cache_dir="none"))
    np.testing.assert_allclose(vecs, local, rtol=1e-6)
    assert has.all() and EmbeddingCache(tmp_path / "cache").count() == world.n_items


@pytest.mark.slow
def test_ray_train_workers_give_a_model_like_single_process_training(local_ray, world, tmp_path):
    from metarec.data import Queries
    from metarec.distributed import fit_distributed
    from metarec.errors import ConfigError
    from metarec.models import make_scorer
    from metarec.models.io import load_model, save_model

    params = {"encoder": "hashing-64", "epochs": 15, "batch_size": 512, "validation": 0.0, "seed": 3}
    s = fit_distributed("multitask", params, world, workers=2)
    q = Queries(np.arange(20), world.matrix()[:20])
    scores = s.score(q)
    save_model(s, world, tmp_path / "m")
    np.testing.assert_allclose(load_model(tmp_path / "m").scorer.score(q), scores, rtol=1e-5)
    # It learned: the held-in items it ranks first are far better than chance.
    single = make_scorer("multitask", **params).fit(world)

    def hit_rate(scorer):
        ids, _ = scorer.recommend(q, n=10, exclude_seen=False)
        return np.mean([len(set(ids[u]) & set(q.history[u].indices)) / 10 for u in range(len(q))])

    chance = world.matrix()[:20].getnnz(axis=1).mean() / world.n_items
    assert hit_rate(s) > 3 * chance and abs(hit_rate(s) - hit_rate(single)) < 0.25
    with pytest.raises(ConfigError, match="does not train with torch"):
        fit_distributed("ease", {}, world, workers=2)


@pytest.mark.slow
def test_meta_learning_trains_on_ray_workers_too(local_ray, world):
    """Both of meta's stages (pretraining, meta-training with torch.func) run under DDP."""
    from metarec.data import Queries
    from metarec.distributed import fit_distributed

    s = fit_distributed("meta", {"encoder": "hashing-64", "epochs": 2, "meta_epochs": 2}, world, workers=2)
    scores = s.score(Queries([-1, -1], world.matrix()[[0, 1]]))
    assert np.isfinite(scores).all() and not np.allclose(scores[0], scores[1])


def _same(x, y) -> bool:
    """Equal batch parts: arrays (NaN equal to NaN), tensors (sparse too), and dicts, tuples or
    dataclasses of them; a generator handed to the batch counts as equal."""
    if isinstance(x, dict):
        return x.keys() == y.keys() and all(_same(x[k], y[k]) for k in x)
    if isinstance(x, tuple):
        return len(x) == len(y) and all(_same(u, v) for u, v in zip(x, y))
    if isinstance(x, np.random.Generator):
        return True
    if dataclasses.is_dataclass(x):
        return type(x) is type(y) and _same(dataclasses.asdict(x), dataclasses.asdict(y))
    if isinstance(x, torch.Tensor):
        x, y = (t.to_dense() if t.is_sparse else t for t in (x, y))
    if hasattr(x, "toarray"):
        x, y = x.toarray(), y.toarray()
    x, y = np.asarray(x), np.asarray(y)
    return x.shape == y.shape and np.array_equal(x, y, equal_nan=x.dtype.kind == "f")


@pytest.mark.parametrize(
    "name, params, calls",
    [
        # multitask trains two networks (known users, new users: new_user_net), each one run
        ("multitask", {"encoder": "hashing-64", "epochs": 1}, 2),
        ("two-tower", {"encoder": "hashing-64", "epochs": 1, "max_candidates": 60}, 1),
        ("multitask", {"encoder": "hashing-64", "epochs": 1, "metaemb": True, "metaemb_k": 2, "metaemb_epochs": 1}, 4),
        ("meta", {"encoder": "hashing-64", "epochs": 1, "meta_epochs": 1, "meta_batch": 16}, 3),
    ],
)
def test_models_hand_the_loop_batches_that_only_their_worker_builds(name, params, calls, world, monkeypatch):
    """Every batch is a zero-argument callable and all random draws happen outside it: a worker
    that builds only every other batch builds them exactly as one process building all would."""
    import metarec.training
    from metarec.models import make_scorer

    real, seen = metarec.training.train, []

    def spy(model, batches, validate=None, config=None):
        every = list(batches(np.random.default_rng(5)))
        assert every and all(callable(b) for b in every)
        alone = [b() for b in every]
        second = [b() for b in list(batches(np.random.default_rng(5)))[1::2]]  # worker 1 of 2
        for a, b in zip(alone[1::2], second, strict=True):
            assert a.keys() == b.keys()
            for key in a:
                assert _same(a[key], b[key]), key
        seen.append(len(every))
        return real(model, batches, validate, config)

    monkeypatch.setattr(metarec.training, "train", spy)
    make_scorer(name, **params).fit(world)
    assert len(seen) == calls  # every run of the loop the model makes
