"""The shared training loop's weight averaging (EMA, SWA), with known answers."""

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
