"""The shared training loop: weight averaging (EMA, SWA) with known answers, and determinism."""

import numpy as np
import pytest
import torch

from metarec.errors import ConfigError
from metarec.training import TrainConfig, train


class Mean(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def loss(self, batch):
        return {"loss": ((self.w - batch["x"]) ** 2).mean()}


def _raw_trajectory(epochs=4, steps=5):
    """Weights after every step of the same seeded run without averaging."""
    model = Mean()
    weights = []

    def batches(rng):
        for _ in range(steps):
            yield {"x": torch.tensor(rng.normal(3.0, 1.0, 8))}
            weights.append(model.w.item())  # resumed after the step on this batch

    train(model, batches, None, TrainConfig(epochs=epochs, lr=0.3, progress=False))
    return np.array(weights)


def test_ema_returns_the_exponential_average_of_the_step_weights():
    raw = _raw_trajectory()  # 20 steps; averaging does not change the raw trajectory
    d = 0.9
    ema = raw[0]
    for w in raw[1:]:
        ema = d * ema + (1 - d) * w
    model = Mean()

    def batches(rng):
        for _ in range(5):
            yield {"x": torch.tensor(rng.normal(3.0, 1.0, 8))}

    train(model, batches, None, TrainConfig(epochs=4, lr=0.3, average="ema", ema_decay=d, progress=False))
    assert model.w.item() == pytest.approx(ema, rel=1e-5)
    assert abs(model.w.item() - raw[-1]) > 1e-4  # not the last weights


def test_swa_returns_the_mean_of_the_epoch_end_weights_from_swa_start():
    raw = _raw_trajectory(epochs=6)
    epoch_end = raw[4::5]  # after the 5th, 10th, ... step
    model = Mean()

    def batches(rng):
        for _ in range(5):
            yield {"x": torch.tensor(rng.normal(3.0, 1.0, 8))}

    train(model, batches, None, TrainConfig(epochs=6, lr=0.3, average="swa", swa_start=2, progress=False))
    assert model.w.item() == pytest.approx(epoch_end[2:].mean(), rel=1e-5)


class MeanWithBuffers(Mean):
    """``Mean`` with the buffers a network has: a boolean mask and integer codes (constant),
    and an integer step count that changes as it trains."""

    def __init__(self):
        super().__init__()
        self.register_buffer("known", torch.tensor([True, False, True]))
        self.register_buffer("codes", torch.tensor([0, 7, 49]))
        self.register_buffer("steps", torch.zeros((), dtype=torch.int64))

    def loss(self, batch):
        self.steps += 1
        return super().loss(batch)


@pytest.mark.parametrize("average", ["ema", "swa"])
def test_averaging_averages_the_float_weights_and_keeps_the_models_other_buffers(average):
    """Torch's SWA cannot subtract booleans (it raised on the networks' masks), and an average
    of integer codes has no meaning: they are the model's own, as it trains."""
    model = MeanWithBuffers()

    def batches(rng):
        for _ in range(5):
            yield {"x": torch.tensor(rng.normal(3.0, 1.0, 8))}

    train(model, batches, None, TrainConfig(epochs=6, lr=0.3, average=average, ema_decay=0.9, swa_start=2, progress=False))
    raw = _raw_trajectory(epochs=6)
    assert model.known.tolist() == [True, False, True] and model.codes.tolist() == [0, 7, 49]
    assert int(model.steps) == 30  # the model's count, not an average of counts
    if average == "swa":
        assert model.w.item() == pytest.approx(raw[4::5][2:].mean(), rel=1e-5)
    else:
        ema = raw[0]
        for w in raw[1:]:
            ema = 0.9 * ema + 0.1 * w
        assert model.w.item() == pytest.approx(ema, rel=1e-5)


def test_the_averaged_weights_are_validated_and_kept():
    seen = []
    model = Mean()

    def batches(rng):
        for _ in range(5):
            yield {"x": torch.tensor(rng.normal(3.0, 1.0, 8))}

    def validate(m):
        seen.append(m.w.item())
        return -abs(m.w.item() - 3.0)

    result = train(model, batches, validate, TrainConfig(epochs=5, lr=0.3, average="ema", ema_decay=0.5,
                                                         patience=99, progress=False))  # fmt: skip
    assert model.w.item() == pytest.approx(seen[result.best_epoch + 1])  # [0] is before training
    assert seen[1:] != list(_raw_trajectory(epochs=5)[4::5])  # what was validated is the average


def test_unknown_averaging_is_a_config_error():
    with pytest.raises(ConfigError, match="average"):
        train(Mean(), lambda rng: [], None, TrainConfig(average="polyak"))


def test_two_fits_with_one_seed_are_identical_and_the_global_flag_is_restored():
    """Embedding-bag gradients accumulate in parallel on a multi-threaded CPU; without
    deterministic kernels two fits of one seed differed at the 1e-7 level (measured)."""
    from metarec.data.splits import make_split
    from metarec.data.synthetic import WorldConfig, make_world
    from metarec.models import make_scorer

    world = make_world(WorldConfig(n_users=300, n_items=150, views_per_user=20, seed=3))
    split = make_split(world, "cold-user", 1)
    queries = split.query_sets[1].queries
    before = torch.are_deterministic_algorithms_enabled()
    a, b = (make_scorer("multitask", seed=1, encoder="hashing-64", epochs=3).fit(split.train).score(queries)
            for _ in range(2))  # fmt: skip
    assert np.array_equal(a, b, equal_nan=True)
    assert torch.are_deterministic_algorithms_enabled() == before


def test_a_device_is_checked_by_name_when_the_model_is_made_and_by_what_is_there_when_it_trains():
    """Both were torch tracebacks ("Torch not compiled with CUDA enabled", "Expected one of
    cpu, cuda, ..."), the first after the data was read and the encoder run."""
    import torch

    from metarec.models import make_scorer
    from metarec.training import resolve_device

    with pytest.raises(ConfigError, match="multitask: device 'tpu': use cpu, cuda, cuda:N, mps or auto"):
        make_scorer("multitask", device="tpu")
    with pytest.raises(ConfigError, match="device 'cuda:x'"):
        make_scorer("two-tower", device="cuda:x")
    make_scorer("multitask", device="cuda:1")  # a name only: a saved GPU model still loads on a CPU
    assert resolve_device("cpu").type == "cpu" and resolve_device("auto").type in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="sees no CUDA GPU here"):
            resolve_device("cuda")
    else:
        with pytest.raises(ConfigError, match="cuda:0 to cuda:"):
            resolve_device(f"cuda:{torch.cuda.device_count()}")
