"""The one contract every scorer follows.

A scorer is configured by a small dataclass, trained on a :class:`~metarec.data.Dataset`
with :meth:`Scorer.fit`, and scores candidate items for a batch of :class:`Queries`. A query
carries the user's index (``-1`` for a user the scorer never saw) *and* the user's history,
so a new user is scored from the history given at query time (fold-in) without retraining.
Items a scorer cannot score get NaN, never an exception; evaluation ranks NaN last.

A trained scorer's learned state is a flat dict of numpy arrays (:meth:`Scorer.get_state`),
saved as safetensors by :mod:`metarec.models.io` beside its config and vocabularies.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import types
import typing
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd
import scipy.sparse as sp

from metarec.data.dataset import Dataset
from metarec.data.queries import Queries
from metarec.errors import ConfigError
from metarec.ranking import top_k_explore
from metarec.training import check_device


def checked_config(model: str, config: Any) -> Any:
    """``config`` with its fields checked against their annotations: a number where one is
    expected (an int for a float is fine; a bool is not a number), never negative nor
    infinite, a bool where a bool is, text where text is (a number given for a text field,
    as ``--param`` parses ``tags=2020``, becomes its text), a tuple where a tuple is (a saved
    config's JSON gives a list, which becomes one). A ConfigError names the model,
    the field and the value, before anything is trained.

    >>> from metarec.models.baselines.ease import EASEConfig
    >>> checked_config("ease", EASEConfig(l2="abc"))
    Traceback (most recent call last):
    metarec.errors.ConfigError: ease: l2 must be a number, not 'abc'
    """
    hints = typing.get_type_hints(type(config))
    fixes: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        value, hint = getattr(config, f.name), hints.get(f.name)
        args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else ()
        if value is None and type(None) in args:
            continue
        kinds = [a for a in args if a is not type(None)] or [hint]
        if len(kinds) != 1:
            continue
        kind = kinds[0]
        # (numpy's numbers count: np.int64 is an Integral, np.float32 a Real)
        number = isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
        if kind in (int, float):
            if not number or (kind is int and not isinstance(value, numbers.Integral)):
                what = "a whole number" if kind is int else "a number"
                raise ConfigError(f"{model}: {f.name} must be {what}, not {value!r}")
            if not math.isfinite(value) or value < 0:
                raise ConfigError(f"{model}: {f.name} must be a finite number, at least 0, not {value!r}")
            if type(value) not in (int, float):
                fixes[f.name] = kind(value)  # a numpy number becomes a Python one (JSON-safe config)
        elif kind is bool and not isinstance(value, bool):
            raise ConfigError(f"{model}: {f.name} must be true or false, not {value!r}")
        elif typing.get_origin(kind) is tuple and isinstance(value, list):
            fixes[f.name] = tuple(value)  # a saved config's JSON gives a list
        elif kind is str and not isinstance(value, str):
            if not number:
                raise ConfigError(f"{model}: {f.name} must be text, not {value!r}")
            fixes[f.name] = str(value)
        if f.name == "device" and isinstance(value, str):
            try:
                check_device(value)
            except ConfigError as exc:
                raise ConfigError(f"{model}: {exc}") from None
    return dataclasses.replace(config, **fixes) if fixes else config


def new_users(users: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Whether each user is new to models trained on the users ``known`` (a bool per user
    index): ``-1``, an index beyond them, or a user without training pairs.

    >>> new_users(np.array([-1, 0, 1, 5]), np.array([True, False])).tolist()
    [True, False, True, True]
    """
    users = np.asarray(users)
    ok = (users >= 0) & (users < len(known))
    out = np.ones(len(users), dtype=bool)
    out[ok] = ~np.asarray(known, dtype=bool)[users[ok]]
    return out


class Scorer:
    """Base class of all scorers. Subclasses set ``name`` and ``Config`` and implement
    ``_fit`` and ``_score`` (and ``get_state``/``set_state`` for saving).

    Constructor arguments are stored as given in ``self.config`` and nothing is learned
    until :meth:`fit`; learned attributes end with an underscore.
    """

    name: ClassVar[str] = "scorer"
    #: Trains with the shared torch loop, so :func:`metarec.distributed.fit_distributed` can
    #: run it on several workers (``metarec train --workers N``).
    distributed: ClassVar[bool] = False
    Config: ClassVar[type] = dataclasses.make_dataclass("Config", [])
    #: Settings added after model directories were first saved, each with the value that
    #: reproduces how a model saved without it was trained: a directory's config lacking one
    #: loads with it (``load_model``), so the config describes the weights and ``metarec
    #: retrain`` trains the model as it was trained. A value may be a callable of the saved
    #: settings (a dict), where the old behaviour is another setting's value.
    saved_before: ClassVar[dict[str, Any]] = {}
    #: Scores only items it was trained on pairs of, whatever its settings: every other item
    #: is NaN. An ensemble then knows, without training it, that it cannot rank new items.
    pairs_only: ClassVar[bool] = False

    @property
    def can_add_items(self) -> bool:
        """Whether new items can be added from their text (``add_items``) and scored at once."""
        return False

    def __init__(self, config: Any = None, **params: Any) -> None:
        if config is None:
            fields = [f.name for f in dataclasses.fields(self.Config)]
            unknown = sorted(set(params) - set(fields))
            if unknown:
                known = f"parameters are {', '.join(fields)}" if fields else "it takes none"
                raise ConfigError(f"{self.name}: unknown parameter(s) {', '.join(map(repr, unknown))}; {known}")
            config = self.Config(**params)
        elif params:
            config = dataclasses.replace(config, **params)
        self.config = checked_config(self.name, config)
        self.n_items_: int | None = None

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in dataclasses.asdict(self.config).items())
        return f"{type(self).__name__}({args})"

    # ---------------------------------------------------------------- contract
    def fit(self, data: Dataset) -> Self:
        """Learn from ``data`` (its vocabularies fix the item and user indices)."""
        self.n_users_ = data.n_users
        self.n_items_ = data.n_items
        matrix = data.matrix()
        self.known_users_ = np.asarray(matrix.getnnz(axis=1) > 0)
        self.known_items_ = np.asarray(matrix.getnnz(axis=0) > 0)
        self._fit(data, matrix)
        return self

    def score(self, queries: Queries, items: np.ndarray | None = None) -> np.ndarray:
        """Scores ``(len(queries), n_items)`` (or ``len(items)`` columns); NaN = cannot score."""
        if self.n_items_ is None:
            raise RuntimeError(f"{self.name}: call fit() before score()")
        if queries.history.shape[1] != self.n_items_:
            raise ValueError(
                f"history has {queries.history.shape[1]} item columns, the model {self.n_items_}"
            )
        scores = np.asarray(self._score(queries), dtype=np.float32)
        return scores if items is None else scores[:, items]

    def recommend(
        self, queries: Queries, n: int = 10, exclude_seen: bool = True, items: np.ndarray | None = None,
        tiebreak: np.ndarray | None = None, explore: tuple[np.ndarray, float] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        """Top-``n`` item indices and scores per query (``-1``/NaN pad when fewer are scorable);
        ``tiebreak`` (one value per candidate, higher first) orders equal scores
        (:func:`metarec.ranking.top_k`); ``explore``: ``(is_new, share)``, one flag per
        candidate, and the flagged hold at least ``share`` of every first places
        (:func:`metarec.ranking.explore_new`)."""
        cand = np.arange(self.n_items_) if items is None else np.asarray(items)
        scores = self.score(queries, cand)
        if exclude_seen:
            seen = queries.history[:, cand]
            scores[seen.nonzero()] = np.nan
        order = top_k_explore(scores, n, *(explore or ()), tiebreak=tiebreak)
        top = np.where(order >= 0, np.take_along_axis(scores, np.maximum(order, 0), axis=1), np.nan)
        ids = np.where(np.isfinite(top), cand[np.maximum(order, 0)], -1)
        return ids, top

    def add_users(self, attributes: pd.DataFrame) -> np.ndarray:
        """Append users never trained on, one per row of ``attributes`` (their attribute
        columns; none is fine), and return their indices. They are scored as new users,
        from the history each query brings, and by models that read user attributes
        (the networks) from these rows as well, as a cold user of the training data is."""
        start = len(self.known_users_)
        n = len(attributes)
        self.known_users_ = np.concatenate([self.known_users_, np.zeros(n, dtype=bool)])
        self.n_users_ = start + n
        self._added_users(attributes)
        return np.arange(start, start + n)

    def update_users(self, indices: np.ndarray, attributes: pd.DataFrame) -> None:
        """New attributes for users ``indices`` (one row each), read from the next query on."""
        self._updated_users(np.asarray(indices, dtype=np.int64), attributes)

    def _added_users(self, attributes: pd.DataFrame) -> None:
        """Hook: models that keep per-user attributes grow them (default: nothing to grow)."""

    def _updated_users(self, indices: np.ndarray, attributes: pd.DataFrame) -> None:
        """Hook: models that keep per-user attributes recode these rows."""

    # ---------------------------------------------------------- to implement
    def _fit(self, data: Dataset, matrix: sp.csr_matrix) -> None:
        raise NotImplementedError

    def _score(self, queries: Queries) -> np.ndarray:
        raise NotImplementedError

    def get_state(self) -> dict[str, np.ndarray]:
        """Learned arrays, saved as safetensors."""
        return {"known_users": self.known_users_, "known_items": self.known_items_}

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore what :meth:`get_state` returned."""
        self.known_users_ = state["known_users"].astype(bool)
        self.known_items_ = state["known_items"].astype(bool)
        self.n_users_ = len(self.known_users_)
        self.n_items_ = len(self.known_items_)

__all__ = ["Queries", "Scorer"]
