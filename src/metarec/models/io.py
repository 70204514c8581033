"""A trained model is a directory, loadable by the CLI, the library and the service alike.

Layout::

    model/
      config.json          what model, its config, the data it was trained on, versions
      weights.safetensors  the scorer's learned arrays (Scorer.get_state)
      history.safetensors  the training user x item matrix (CSR), for "exclude seen"
      events.safetensors   the training events (user, item, event type, value, time), so
                           that retraining sees what the first fit saw (``training_events``)
      items.parquet        item vocabulary (column ``id``) and attributes, in index order
      users.parquet        user vocabulary (column ``id``) and attributes

Writes go to a temporary sibling directory that is renamed into place, so a crash never
leaves a half-written model where a reader would load it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from safetensors.numpy import load_file, save_file

from metarec import __version__
from metarec.data.dataset import Dataset, grown
from metarec.data.queries import Queries
from metarec.errors import ConfigError, DataError
from metarec.models.base import Scorer
from metarec.models.registry import MODELS

log = logging.getLogger(__name__)

FORMAT = "metarec-model"
FORMAT_VERSION = 1


def _table(ids: np.ndarray, attrs: pd.DataFrame) -> pd.DataFrame:
    out = attrs.copy()
    for c in out.columns:
        if out[c].dtype == object:
            out[c] = out[c].astype("string")
    out.insert(0, "id", pd.Series(ids, dtype="string").to_numpy())
    out.columns = [str(c) for c in out.columns]
    return out.reset_index(drop=True)


def check_model_out(path: str | os.PathLike) -> None:
    """ConfigError where a model written to ``path`` would replace what is not a metarec model
    directory: a file, or a directory holding anything else (before, both were deleted)."""
    path = Path(path)
    if not path.exists():
        return
    if not path.is_dir():
        raise ConfigError(f"{path}: a file is there, and a model is a directory; give another output path")
    held = sorted(p.name for p in path.iterdir())
    if not held:
        return
    try:
        ours = json.loads((path / "config.json").read_text()).get("format") == FORMAT
    except Exception:  # no config.json, or not ours: either way not a model to replace
        ours = False
    if not ours:
        raise ConfigError(f"{path}: not a metarec model directory (it holds {', '.join(held[:5])}"
                          f"{', ...' if len(held) > 5 else ''}), so a model will not replace it; give another output path")  # fmt: skip


def save_model(scorer: Scorer, data: Dataset, path: str | os.PathLike, extra: dict[str, Any] | None = None) -> Path:
    """Write a trained ``scorer`` (fitted on ``data``) to the directory ``path``: a new or
    empty directory, or a model directory it replaces (:func:`check_model_out`)."""
    path = Path(path)
    check_model_out(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        config = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "metarec_version": __version__,
            "model": scorer.name,
            "config": dataclasses.asdict(scorer.config),
            "dataset": data.name,
            "n_users": data.n_users,
            "n_items": data.n_items,
            "event_types": data.event_types,
            "text_fields": list(data.text_fields),
            "tag_fields": list(data.tag_fields),
            "timestamp_kind": data.timestamp_kind,
            "value_range": list(data.value_range) if data.value_range is not None else None,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **(extra or {}),
        }
        (tmp / "config.json").write_text(json.dumps(config, indent=1, default=str))
        state = {k: np.ascontiguousarray(v) for k, v in scorer.get_state().items()}
        save_file(state, str(tmp / "weights.safetensors"))
        hist = data.matrix()
        save_file(
            {"indptr": hist.indptr.astype(np.int64), "indices": hist.indices.astype(np.int32)},
            str(tmp / "history.safetensors"),
        )
        save_file(_event_arrays(data), str(tmp / "events.safetensors"))
        _table(data.item_ids, data.items).to_parquet(tmp / "items.parquet", index=False)
        _table(data.user_ids, data.users).to_parquet(tmp / "users.parquet", index=False)
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            path.rename(old)
            tmp.rename(path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _event_arrays(data: Dataset) -> dict[str, np.ndarray]:
    """``data``'s events as arrays: indices, the event type's position in ``event_types``."""
    df = data.interactions
    codes = pd.Categorical(df["event"].astype(str), categories=list(data.event_types)).codes
    return {
        "user": df["user"].to_numpy(np.int32), "item": df["item"].to_numpy(np.int32),
        "event": np.asarray(codes, dtype=np.int16), "value": df["value"].to_numpy(np.float32),
        "timestamp": df["timestamp"].to_numpy(np.float64),
    }  # fmt: skip


def _read(file: Path, read: Callable[[Path], Any]) -> Any:
    """``read(file)``, its failures as a DataError naming the model file: a missing, truncated
    or foreign file (safetensors, Parquet or JSON) was a traceback."""
    try:
        return read(file)
    except FileNotFoundError:
        raise DataError(f"{file.parent}: the model file {file.name} is missing") from None
    except Exception as exc:  # each library has its own error type for a damaged file
        raise DataError(f"{file}: cannot read this model file ({type(exc).__name__}: {exc})") from None


def _tensors(file: Path) -> dict[str, np.ndarray]:
    return _read(file, lambda f: load_file(str(f)))


def training_events(model: TrainedModel) -> pd.DataFrame | None:
    """The events ``model`` was trained on, with external ids (columns ``user``, ``item``,
    ``event``, ``value``, ``timestamp``), or None for a directory saved before they were kept
    (it has the training pairs only: ``model.history``)."""
    file = None if model.path is None else Path(model.path) / "events.safetensors"
    if file is None or not file.exists():
        return None
    e = _tensors(file)
    types = np.asarray(model.config["event_types"], dtype=object)
    if len(e["event"]) and (e["event"].min() < 0 or e["event"].max() >= len(types)):
        raise DataError(f"{file}: event type codes outside the {len(types)} types config.json lists")
    return pd.DataFrame({
        "user": model.user_ids[e["user"]], "item": model.item_ids[e["item"]], "event": types[e["event"]],
        "value": e["value"].astype(np.float64), "timestamp": e["timestamp"],
    })  # fmt: skip


@dataclass
class TrainedModel:
    """A scorer with the vocabularies and training history it was trained with."""

    scorer: Scorer
    config: dict[str, Any]
    item_ids: np.ndarray
    user_ids: np.ndarray
    items: pd.DataFrame
    users: pd.DataFrame
    history: sp.csr_matrix
    path: Path | None = None
    _encoder: Any = None
    _cache: Any = None
    _lookups: Any = field(default=None, repr=False, compare=False)

    def _indexes(self) -> tuple[pd.Index, pd.Index, np.ndarray]:
        """The item and user id indexes and each item's number of training users, built once
        and kept until the items, the users or the history are replaced (``add_items``,
        ``add_users``): a ``recommend`` loop over a million-item catalogue would otherwise
        build a million-entry index on every call (0.45 s each on this machine)."""
        source = (self.item_ids, self.user_ids, self.history)
        if self._lookups is None or any(a is not b for a, b in zip(self._lookups[0], source)):
            built = (pd.Index(self.item_ids), pd.Index(self.user_ids),
                     np.asarray(self.history.getnnz(axis=0), dtype=np.float64))  # fmt: skip
            self._lookups = (source, built)  # the sources are held, so their ids stay theirs
        return self._lookups[1]

    @property
    def value_range(self) -> tuple[float, float] | None:
        """The inclusive bounds of the training data's event values (``Dataset.value_range``),
        or None where the data declared none (or the directory predates it)."""
        bounds = self.config.get("value_range")
        return None if bounds is None else (float(bounds[0]), float(bounds[1]))

    def check_can_add_items(self) -> None:
        """A ConfigError, naming the models that can, unless this model scores an item from its
        text alone (the one message for ``add_items``, ``PUT /items`` and ``update_items``)."""
        if not self.scorer.can_add_items:
            raise ConfigError(f"model {self.scorer.name!r} cannot score an item from its content; use hybrid, content-knn, or ials "
                              "trained with item text")  # fmt: skip

    def add_items(self, item_ids: list[str], texts: list[str]) -> np.ndarray:
        """Make new items recommendable at once from their text (content scorers, iALS trained
        with item text, and ensembles with such a member: ``Scorer.can_add_items``).

        Encodes the texts with the model's own encoder (loaded once, then kept), appends the
        items to the catalogue and returns their indices. Raises ConfigError for a model that
        cannot score an item without interactions, or for an id already in the catalogue.
        """
        self.check_can_add_items()
        found = self._indexes()[0].get_indexer([str(i) for i in item_ids])
        dup = [i for i, j in zip(item_ids, found) if j >= 0]
        if dup:
            raise ConfigError(f"item id(s) already in the catalogue: {', '.join(dup[:5])}")
        from threadpoolctl import threadpool_limits

        # One item is small work: idle BLAS threads spinning after numpy calls would only
        # compete with torch's threads in the encoder (a 5x p99 difference on two cores).
        with threadpool_limits(1, "blas"):
            idx = self.scorer.add_items(self._encode(texts), list(texts))
        self.item_ids = np.concatenate([self.item_ids, np.asarray(item_ids, dtype=object)])
        new_rows = pd.DataFrame(index=range(len(item_ids)), columns=self.items.columns)
        if self.scorer.content_config().template is None and "text" not in self.items.columns and len(self.items.columns):
            new_rows[self.items.columns[0]] = texts
        self.items = pd.concat([self.items, new_rows], ignore_index=True)
        self.history = grown(self.history, columns=len(item_ids))
        return idx

    def update_items(self, item_ids: list[str], texts: list[str]) -> np.ndarray:
        """Re-encode existing items whose text changed; scored from the new text at once."""
        from threadpoolctl import threadpool_limits

        self.check_can_add_items()
        idx = self._indexes()[0].get_indexer([str(i) for i in item_ids])
        unknown = [i for i, j in zip(item_ids, idx) if j < 0]
        if unknown:
            raise ConfigError(f"unknown item id(s): {', '.join(map(str, unknown[:5]))}")
        with threadpool_limits(1, "blas"):
            self.scorer.update_items(idx, self._encode(texts), list(texts))
        return idx

    def add_users(self, user_ids: list[str], attributes: pd.DataFrame) -> np.ndarray:
        """Append users the model was not trained on, with their attributes (one row each,
        the model's user columns), and return their indices. They are scored as new users
        are, from the history a query brings, and the networks read their attributes too,
        as they read a cold user's in evaluation. Raises ConfigError for a known id."""
        found = self._indexes()[1].get_indexer([str(u) for u in user_ids])
        dup = [u for u, j in zip(user_ids, found) if j >= 0]
        if dup:
            raise ConfigError(f"user id(s) already known to the model: {', '.join(dup[:5])}")
        rows = attributes.reindex(columns=self.users.columns).reset_index(drop=True)
        idx = self.scorer.add_users(rows)
        self.user_ids = np.concatenate([self.user_ids, np.asarray(user_ids, dtype=object)])
        self.users = pd.concat([self.users, rows], ignore_index=True) if len(self.users.columns) else \
            pd.DataFrame(index=range(len(self.user_ids)))  # fmt: skip
        self.history = grown(self.history, rows=len(user_ids))
        return idx

    def update_users(self, indices: np.ndarray, attributes: pd.DataFrame) -> None:
        """New attributes (whole rows, the model's user columns) for users ``indices``."""
        rows = attributes.reindex(columns=self.users.columns).reset_index(drop=True)
        self.scorer.update_users(np.asarray(indices, dtype=np.int64), rows)
        for col in rows.columns:
            if pd.api.types.is_numeric_dtype(self.users[col]) and not pd.api.types.is_float_dtype(self.users[col]):
                self.users[col] = self.users[col].astype("float64")
            self.users.loc[np.asarray(indices), col] = rows[col].to_numpy()

    def _encode(self, texts: list[str]) -> np.ndarray:
        """The model's own encoder (loaded once), through the embedding cache."""
        from metarec.encoders.cache import EmbeddingCache, encode_cached

        config = self.scorer.content_config()
        if self._encoder is None:
            from metarec.encoders.content import make_encoder

            self._encoder = make_encoder(config)
            self._cache = None if config.cache_dir == "none" else EmbeddingCache(config.cache_dir)
        return encode_cached(self._encoder, list(texts), self._cache)

    def _user_row(self, user_id: str | None) -> int:
        """The user's row of the model, -1 for ``None`` or a user it does not know."""
        return -1 if user_id is None else int(self._indexes()[1].get_indexer([str(user_id)])[0])

    def knows_user(self, user_id: str) -> bool:
        """Whether ``user_id`` is one of the model's users (trained, or added since)."""
        return self._user_row(user_id) >= 0

    def user_history(self, user_id: str) -> list[str]:
        """Item ids the user interacted with in training ([] for an unknown user)."""
        u = self._user_row(user_id)
        if u < 0:
            return []
        return [str(x) for x in self.item_ids[self.history[u].indices]]

    def popularity(self) -> np.ndarray:
        """Each item's number of training users: what breaks ties in :meth:`recommend`, so a
        user the model has nothing to say about (a new user with no history, under EASE or
        iALS) gets the most popular items, not arbitrary ones."""
        return self._indexes()[2].copy()  # the caller's to change (the service counts live users)

    def recommend(
        self, user_id: str | None = None, history: list[str] | None = None, n: int = 10,
        exclude_seen: bool = True, explore_new: float = 0.0,
    ) -> list[tuple[str, float]]:  # fmt: skip
        """Top-``n`` ``(item_id, score)`` for a user.

        Args:
            user_id: a user id (``None`` or unknown: a new user).
            history: item ids the user interacted with; defaults to the training history of
                ``user_id``. Unknown item ids raise ConfigError naming them.
            explore_new: items without training pairs (added since) hold at least this share
                of every first places, as the service's ``explore_new`` gives them.
        """
        index, _, popularity = self._indexes()
        u = self._user_row(user_id)
        if history is None:
            hist_idx = self.history[u].indices if u >= 0 else np.array([], dtype=np.int64)
        else:
            hist_idx = index.get_indexer([str(h) for h in history])
            unknown = [h for h, i in zip(history, hist_idx) if i < 0]
            if unknown:
                raise ConfigError(f"unknown item id(s) in history: {', '.join(map(str, unknown[:5]))}")
        # A given history is the user's history now.
        q = Queries.from_histories([u], [list(hist_idx)], len(self.item_ids), refresh=[u >= 0 and history is not None])
        explore = (popularity == 0, explore_new) if explore_new else None
        ids, scores = self.scorer.recommend(q, n=n, exclude_seen=exclude_seen, tiebreak=popularity, explore=explore)
        return [(str(self.item_ids[i]), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]


def _devices_here(config: Any, path: Path) -> Any:
    """``config`` (members' settings too) with each ``device`` this machine's torch lacks as
    ``auto``: a model trained on a GPU is served and given new items on the machine it is
    loaded on. Before, its encoder failed on a CPU at the first ``PUT /items``."""
    if not isinstance(config, dict):
        return config
    out = {}
    for key, value in config.items():
        if key == "device" and isinstance(value, str) and value not in ("cpu", "auto"):
            from metarec.training import resolve_device

            try:
                resolve_device(value)
            except ConfigError:
                log.info("%s: trained on %s, which this machine lacks; it runs on the best device here", path, value)
                value = "auto"
        out[key] = _devices_here(value, path)
    return out


def _trained_without(cls: type, saved: dict[str, Any]) -> dict[str, Any]:
    """The settings a model of ``cls`` saved with settings ``saved`` was trained without (a
    setting added since): the value that reproduces that training (``cls.saved_before``; a
    callable where it is another saved setting's value)."""
    return {k: v(saved) if callable(v) else v for k, v in cls.saved_before.items()}


def load_model(path: str | os.PathLike) -> TrainedModel:
    """Load a model directory written by :func:`save_model`."""
    path = Path(path)
    cfg_file = path / "config.json"
    if not cfg_file.exists():
        raise DataError(f"{path}: not a metarec model directory (no config.json)")
    config = _read(cfg_file, lambda f: json.loads(f.read_text()))
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        found = config.get("format") if isinstance(config, dict) else type(config).__name__
        raise DataError(f"{cfg_file}: not a metarec model (format {found!r})")
    name = config["model"]
    if name not in MODELS:
        raise ConfigError(f"{cfg_file}: model {name!r} is not known to this metarec version")
    cls = MODELS[name]
    fields = {f.name for f in dataclasses.fields(cls.Config)}
    config["config"] = _devices_here({**_trained_without(cls, config["config"]), **config["config"]}, path)
    params = config["config"].get("params")
    if name == "ensemble" and isinstance(params, dict):  # each member's saved settings, by the same rule
        config["config"]["params"] = {
            m: {**_trained_without(MODELS[m], p), **p} if m in MODELS and isinstance(p, dict) else p
            for m, p in params.items()
        }
    scorer = cls(**{k: v for k, v in config["config"].items() if k in fields})
    weights = _tensors(path / "weights.safetensors")
    try:
        scorer.set_state(weights)
    except (KeyError, ValueError) as exc:  # arrays of another model, or of the wrong shape
        raise DataError(f"{path / 'weights.safetensors'}: not the weights of this {name} model ({exc!r})") from None
    h = _tensors(path / "history.safetensors")
    items = _read(path / "items.parquet", pd.read_parquet)
    users = _read(path / "users.parquet", pd.read_parquet)
    n_users, n_items = len(users), len(items)
    history = sp.csr_matrix(
        (np.ones(len(h["indices"]), np.float32), h["indices"], h["indptr"]), shape=(n_users, n_items)
    )
    return TrainedModel(
        scorer=scorer,
        config=config,
        item_ids=items["id"].astype(str).to_numpy(dtype=object),
        user_ids=users["id"].astype(str).to_numpy(dtype=object),
        items=items.drop(columns="id"),
        users=users.drop(columns="id"),
        history=history,
        path=path,
    )
