"""The one training loop for every neural model in metarec.

A model is a ``torch.nn.Module`` with a ``loss(batch) -> dict`` method whose ``"loss"`` entry
is minimised (other entries, e.g. per-task losses, are logged). The caller supplies a batch
generator (a function of a numpy ``Generator``, so batches are seeded) and, optionally, a
validation function (higher is better) for early stopping. The loop keeps the best weights,
restores them at the end, and can write them as safetensors checkpoints.

Distributed data parallel: when a ``torch.distributed`` process group exists (Ray Train's
workers, see :mod:`metarec.distributed`), the loop wraps the model in
``DistributedDataParallel`` (gradients averaged across workers at every step), every worker
draws the same seeded batch sequence and trains on its share (batch ``j`` goes to worker
``j mod world``; a last incomplete round is dropped so every worker takes as many steps),
and rank 0's validation score decides early stopping for all.

Weight averaging (``average``): ``ema`` keeps an exponential moving average of the weights,
updated after every step; ``swa`` the plain average of the weights at the end of each epoch
from ``swa_start`` on (stochastic weight averaging, Izmailov et al. 2018). Both use
``torch.optim.swa_utils.AveragedModel``; the averaged weights are what is validated, kept and
returned.

>>> import torch
>>> class Mean(torch.nn.Module):
...     def __init__(self):
...         super().__init__()
...         self.w = torch.nn.Parameter(torch.zeros(1))
...     def loss(self, batch):
...         return {"loss": ((self.w - batch["x"]) ** 2).mean()}
>>> m = Mean()
>>> batches = lambda rng: ({"x": torch.tensor(rng.normal(3.0, 0.1, 64))} for _ in range(20))
>>> r = train(m, batches, config=TrainConfig(epochs=30, lr=0.1, progress=False))
>>> round(m.w.item(), 1)
3.0
"""

from __future__ import annotations

import copy
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from metarec.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Attributes:
    epochs: at most this many passes over the batch generator.
    lr, weight_decay: AdamW settings.
    patience: stop after this many epochs without a better validation score.
    device: ``cpu``, ``cuda``, ``mps`` or ``auto`` (the best available).
    seed: seeds torch and the batch generator.
    progress: show a progress bar per epoch.
    checkpoint_dir: if set, the best weights are written there as ``best.safetensors``.
    average: ``none``, ``ema`` or ``swa`` (see the module docstring).
    ema_decay: the EMA's weight on the past per step.
    swa_start: the first epoch whose weights SWA averages.
    deterministic: run torch's deterministic kernels while training (restored after), so
        two runs with one seed give the same weights bit for bit; without it, kernels that
        accumulate in parallel (embedding-bag gradients on a multi-threaded CPU) add in a
        varying order and two fits differ at the 1e-7 level. An op with no deterministic
        kernel (some CUDA ones) warns rather than fails.
    """

    epochs: int = 30
    lr: float = 1e-3
    weight_decay: float = 0.0
    patience: int = 3
    device: str = "cpu"
    seed: int = 42
    progress: bool = False
    checkpoint_dir: str | None = None
    average: str = "none"
    ema_decay: float = 0.99
    swa_start: int = 1
    deterministic: bool = True


AVERAGING = ("none", "ema", "swa")


@dataclass
class TrainResult:
    """What happened: per-epoch mean losses, validation scores and seconds."""

    best_epoch: int = -1  # -1: the initial weights were never beaten
    best_score: float = float("nan")
    history: list[dict[str, float]] = field(default_factory=list)


def check_device(name: str) -> None:
    """ConfigError unless ``name`` is ``cpu``, ``cuda``, ``cuda:N``, ``mps`` or ``auto`` (what
    is there is :func:`resolve_device`'s question, asked when training starts).

    >>> check_device("tpu")
    Traceback (most recent call last):
    metarec.errors.ConfigError: device 'tpu': use cpu, cuda, cuda:N, mps or auto
    """
    base, colon, index = str(name).partition(":")
    if base not in ("auto", "cpu", "cuda", "mps") or (colon and (base != "cuda" or not index.isdigit())):
        raise ConfigError(f"device {name!r}: use cpu, cuda, cuda:N, mps or auto")


def resolve_device(name: str) -> Any:
    """A ``torch.device`` for ``cpu``/``cuda``/``cuda:N``/``mps``/``auto``; a ConfigError for
    a device this machine's torch does not have (before: torch's "Torch not compiled with CUDA
    enabled" traceback)."""
    import torch

    check_device(name)
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if mps else "cpu"
    elif name.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(f"device {name!r}: torch {torch.__version__} sees no CUDA GPU here (a CPU build, "
                              "or no GPU visible); use device=cpu, or auto for the best there is")  # fmt: skip
        if ":" in name and int(name.split(":")[1]) >= count:
            raise ConfigError(f"device {name!r}: torch sees {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}")
    elif name == "mps" and not mps:
        raise ConfigError("device 'mps': torch sees no Apple GPU here; use device=cpu, or auto for the best there is")
    return torch.device(name)


def _to_device(batch: Any, device: Any) -> Any:
    """Numpy arrays become tensors; tensors (and objects with a ``to(device)`` method) move to
    ``device``; in dicts, tuples and lists."""
    import torch

    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(_to_device(v, device) for v in batch)
    if isinstance(batch, np.ndarray):
        batch = torch.from_numpy(batch)
    return batch.to(device) if hasattr(batch, "to") else batch  # tensors, and objects of tensors


def _averager(model: Any, config: TrainConfig) -> Any:
    """An ``AveragedModel`` of ``model`` for ``config.average`` (``None`` for ``none``)."""
    if config.average not in AVERAGING:
        from metarec.errors import ConfigError

        raise ConfigError(f"average must be one of {AVERAGING}, not {config.average!r}")
    if config.average == "none":
        return None
    import torch
    from torch.optim.swa_utils import AveragedModel

    @torch.no_grad()
    def update(averaged: list, current: list, n_averaged: Any) -> None:
        """One dtype's tensors: floats move toward the current weights; the rest (masks,
        attribute codes, counts) are the model's own, copied (averaging them has no meaning,
        and torch's SWA cannot subtract booleans)."""
        if not (torch.is_floating_point(averaged[0]) or torch.is_complex(averaged[0])):
            for a, c in zip(averaged, current, strict=True):
                a.copy_(c)
            return
        weight = 1.0 - config.ema_decay if config.average == "ema" else 1.0 / (float(n_averaged) + 1.0)
        torch._foreach_lerp_(averaged, current, weight)

    return AveragedModel(model, multi_avg_fn=update, use_buffers=True)


def _swap_in_average(model: Any, averaged: Any) -> dict[str, Any] | None:
    """Load the averaged weights into ``model``; returns its own weights to restore (``None``
    when nothing is averaged yet)."""
    if averaged is None or int(averaged.n_averaged) == 0:
        return None
    current = copy.deepcopy(model.state_dict())
    model.load_state_dict(averaged.module.state_dict())
    return current


def _loss_module(model: Any) -> Any:
    """``DistributedDataParallel`` synchronises the gradients of what runs through ``forward``:
    a module whose forward is ``model.loss``."""
    import torch

    class LossForward(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, batch: Any) -> Any:
            return self.inner.loss(batch)

    return LossForward(model)


def _agreed(score: float, world: int) -> float:
    """Rank 0's score on every worker, so all stop at the same epoch."""
    if world == 1:
        return score
    import torch
    import torch.distributed as dist

    t = torch.tensor([score], dtype=torch.float64)
    dist.broadcast(t, 0)
    return float(t.item())


def _process_group() -> tuple[int, int]:
    """``(rank, world size)`` of the current torch.distributed group, ``(0, 1)`` without one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def worker_batch_size(batch_size: int) -> int:
    """Examples per batch a model builds in this process: ``batch_size`` alone, and
    ``batch_size / world`` (rounded up) under data-parallel training, where each of ``world``
    workers takes every ``world``-th batch and gradients are averaged: a step then still sees
    ``batch_size`` examples in all and an epoch takes as many steps as in one process, so the
    same learning rate, epochs and early stopping apply (with whole batches per worker, an
    epoch would take ``world`` times fewer steps of a ``world`` times larger batch)."""
    _, world = _process_group()
    return max(1, -(-batch_size // world))


def _shard(batches: Iterable[Any], rank: int, world: int) -> Iterable[Any]:
    """Batch ``j`` goes to worker ``j mod world``; an incomplete last round is dropped. A
    batch given as a zero-argument callable is built here, by the worker it goes to only."""
    round_: list[Any] = []
    for batch in batches:
        round_.append(batch)
        if len(round_) == world:
            mine = round_[rank]
            yield mine() if callable(mine) else mine
            round_ = []


def train(
    model: Any,
    batches: Callable[[np.random.Generator], Iterable[dict[str, Any]]],
    validate: Callable[[Any], float] | None = None,
    config: TrainConfig | None = None,
) -> TrainResult:
    """Train ``model`` in place; returns the per-epoch record.

    Args:
        model: a ``torch.nn.Module`` with ``loss(batch) -> {"loss": tensor, ...}`` and,
            optionally, ``param_groups(lr) -> list of AdamW parameter groups``.
        batches: ``rng -> iterable of dict batches`` (numpy arrays become tensors on the device),
            or of zero-argument callables that build one: under data-parallel training a
            worker then builds only its own share (the draws of ``rng`` belong outside them,
            so that every worker follows the same sequence).
        validate: ``model -> score`` (higher is better), called in eval mode without grad.
    """
    import torch

    config = config or TrainConfig()
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    device = resolve_device(config.device)
    model.to(device)
    # A model may ask for its own parameter groups (e.g. a faster rate for a few parameters).
    groups = model.param_groups(config.lr) if hasattr(model, "param_groups") else model.parameters()
    opt = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
    averaged = _averager(model, config)
    rank, world = _process_group()
    step = model.loss
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        # Rank 0's initial weights are broadcast; unused parameters (a head a batch does not
        # reach) are allowed.
        step = DistributedDataParallel(_loss_module(model), find_unused_parameters=True)
    result = TrainResult()
    best_state = None
    waited = 0
    if validate is not None:
        # The starting point competes too: a model initialised well (e.g. from a closed-form
        # solution) is kept if no epoch beats it.
        model.eval()
        with torch.no_grad():
            result.best_score = _agreed(float(validate(model)), world)
        best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
        result.history.append({"epoch": -1, "validation": result.best_score})
        log.info("before training: validation=%.4f", result.best_score)
    was_deterministic = (torch.are_deterministic_algorithms_enabled(),
                         torch.is_deterministic_algorithms_warn_only_enabled())  # fmt: skip
    if config.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    bar = None
    if config.progress:
        from rich.progress import Progress

        bar = Progress(transient=True)
        bar.start()
        task = bar.add_task("training", total=config.epochs)
    try:
        for epoch in range(config.epochs):
            t0 = time.perf_counter()
            model.train()
            sums: dict[str, float] = defaultdict(float)
            n = 0
            for batch in _shard(batches(rng), rank, world):
                losses = step(_to_device(batch, device))
                opt.zero_grad(set_to_none=True)
                losses["loss"].backward()
                opt.step()
                if config.average == "ema":
                    averaged.update_parameters(model)
                for k, v in losses.items():
                    sums[k] += float(v.detach())
                n += 1
            record = {k: v / max(n, 1) for k, v in sums.items()}
            record["epoch"] = epoch
            if config.average == "swa" and epoch >= config.swa_start:
                averaged.update_parameters(model)
            if validate is not None:
                model.eval()
                # The averaged weights (once there are any) are the ones validated and kept.
                current = _swap_in_average(model, averaged)
                with torch.no_grad():
                    score = _agreed(float(validate(model)), world)
                record["validation"] = score
                if score > result.best_score:
                    result.best_score, result.best_epoch, waited = score, epoch, 0
                    best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
                else:
                    waited += 1
                if current is not None:
                    model.load_state_dict(current)
            record["seconds"] = time.perf_counter() - t0
            result.history.append(record)
            log.info("epoch %d: %s", epoch, ", ".join(f"{k}={v:.4f}" for k, v in record.items() if k != "epoch"))
            if bar is not None:
                bar.update(task, advance=1, description=f"epoch {epoch}: loss {record.get('loss', 0):.4f}")
            if validate is not None and waited >= config.patience:
                break
    finally:
        if bar is not None:
            bar.stop()
        torch.use_deterministic_algorithms(was_deterministic[0], warn_only=was_deterministic[1])
    if best_state is not None:
        model.load_state_dict(best_state)
    else:
        _swap_in_average(model, averaged)
        result.best_epoch = len(result.history) - 1
    if config.checkpoint_dir:
        from safetensors.torch import save_file

        path = Path(config.checkpoint_dir)
        path.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(path / "best.safetensors"))
    model.eval()
    return result
