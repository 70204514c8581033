"""Scale-out on Ray, for catalogues and logs that outgrow one process.

- :class:`RayEncoder`: batch content encoding with Ray Data: encoder actors (one model load
  each) over batches of texts; the caller's embedding cache is read before and written after,
  so only texts the cache lacks travel (``metarec encode --workers N``).
- :func:`fit_distributed`: ``Scorer.fit`` under Ray Train's ``TorchTrainer``: every worker
  prepares the data and runs the project's one training loop (:func:`metarec.training.train`),
  which wraps the model in torch's ``DistributedDataParallel`` when a process group exists,
  gives each worker its share of the batches and averages the gradients. Rank 0 reports the
  learned state as a Ray checkpoint; the driver restores it into a fresh scorer, so the model
  directory is the same as a single-process one (``metarec train --workers N``).

Ray starts a local cluster on first use (or joins ``$RAY_ADDRESS``). The single-process path
does not import Ray.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from metarec.errors import ConfigError

log = logging.getLogger(__name__)


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError("--workers needs Ray: pip install 'metarec[distributed]'") from None
    return ray


def ensure_ray(workers: int) -> Any:
    """Ray, initialised: ``$RAY_ADDRESS`` if set, else a local cluster with at least
    ``workers`` CPUs (a cluster of one machine can run more workers than it has cores)."""
    ray = _ray()
    if not ray.is_initialized():
        address = os.environ.get("RAY_ADDRESS")
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
        if not address:
            kwargs["num_cpus"] = max(workers, os.cpu_count() or 1)
        ray.init(address=address, **kwargs)
        ray.data.DataContext.get_current().enable_progress_bars = False
    return ray


class _EncodeBatch:
    """A Ray Data actor: loads the encoder once and encodes batches of texts."""

    def __init__(self, config: Any) -> None:
        from metarec.encoders.content import make_encoder

        self.encoder = make_encoder(config)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        vecs = self.encoder.encode([str(t) for t in batch["text"]], batch_size=64)
        return {"row": batch["row"], "vector": vecs}


class RayEncoder:
    """A text encoder that spreads the work over ``workers`` Ray Data actors.

    Same ``model_id``/``revision`` (so the same cache keys) and same vectors as the encoder
    it wraps.
    """

    def __init__(self, config: Any, workers: int, batch_size: int = 256) -> None:
        from metarec.encoders.content import make_encoder

        if workers < 1:
            raise ConfigError(f"workers must be at least 1, not {workers}")
        self.config = config
        self.workers = workers
        self.batch_size = batch_size
        self.local = make_encoder(config)  # names the model; loads nothing until used
        self.model_id = self.local.model_id
        self.revision = self.local.revision

    @property
    def dim(self) -> int:
        return self.local.dim

    def encode(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        if len(texts) == 0:
            return self.local.encode([])
        ray = ensure_ray(self.workers)
        items = [{"row": i, "text": t} for i, t in enumerate(texts)]
        blocks = max(self.workers, min(len(items) // self.batch_size + 1, 4 * self.workers))
        ds = ray.data.from_items(items, override_num_blocks=blocks)
        out = ds.map_batches(
            _EncodeBatch, fn_constructor_kwargs={"config": self.config}, batch_size=self.batch_size,
            compute=ray.data.ActorPoolStrategy(size=self.workers), num_cpus=1, batch_format="numpy",
        )  # fmt: skip
        rows, vecs = [], []
        for batch in out.iter_batches(batch_size=None, batch_format="numpy"):
            rows.append(batch["row"])
            vecs.append(batch["vector"])
        order = np.argsort(np.concatenate(rows), kind="stable")
        return np.concatenate(vecs)[order].astype(np.float32)


def _worker_loop(config: dict[str, Any]) -> None:
    """Runs on every Ray Train worker: fit, then rank 0 reports the learned state."""
    import ray.train
    import torch
    from safetensors.numpy import save_file

    from metarec.models.registry import make_scorer

    torch.set_num_threads(max(1, int(config["threads"])))
    scorer = make_scorer(config["name"], **config["params"])
    data = ray.get(config["data"])
    scorer.fit(data)
    context = ray.train.get_context()
    metrics = {"rank": context.get_world_rank(), "world": context.get_world_size()}
    if context.get_world_rank() == 0:
        with tempfile.TemporaryDirectory() as tmp:
            state = {k: np.ascontiguousarray(v) for k, v in scorer.get_state().items()}
            save_file(state, str(Path(tmp) / "weights.safetensors"))
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))
    else:
        ray.train.report(metrics)


def check_distributed(name: str) -> None:
    """A ConfigError unless ``name`` is a model the data-parallel loop trains (a neural one)."""
    from metarec.models.registry import MODELS

    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}")
    if not getattr(MODELS[name], "distributed", False):
        able = ", ".join(n for n, c in MODELS.items() if getattr(c, "distributed", False))
        raise ConfigError(f"model {name!r} does not train with torch; --workers applies to: {able}")


def fit_distributed(name: str, params: dict[str, Any], data: Any, workers: int, threads: int = 1) -> Any:
    """A scorer ``name`` fit on ``data`` by ``workers`` Ray Train workers (torch DDP, gloo on
    CPU); returns it ready to score and save, like ``make_scorer(name, **params).fit(data)``.

    Args:
        threads: torch threads per worker (workers x threads should not exceed the cores).
    """
    from metarec.models.registry import MODELS

    check_distributed(name)
    cls = MODELS[name]
    ray = ensure_ray(workers)
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer
    from safetensors.numpy import load_file

    with tempfile.TemporaryDirectory(prefix="metarec-ray-") as storage:
        trainer = TorchTrainer(
            _worker_loop,
            train_loop_config={"name": name, "params": params, "data": ray.put(data), "threads": threads},
            torch_config=TorchConfig(backend="gloo"),
            scaling_config=ScalingConfig(num_workers=workers, use_gpu=False, resources_per_worker={"CPU": 1}),
            run_config=RunConfig(storage_path=storage, name="fit"),
        )
        result = trainer.fit()
        if result.error is not None:
            raise result.error
        with result.checkpoint.as_directory() as d:
            state = load_file(str(Path(d) / "weights.safetensors"))
    scorer = cls(**params)
    scorer.set_state(state)
    scorer.n_users_ = data.n_users
    return scorer
