"""The one place that maps a data set's event types to learning tasks.

A :class:`Task` is binary (did the user do X with the item: view, cart, buy, or a derived
``liked = rating >= 4``) or a regression (the rating's value). Tasks come from a spec string
or, by default, from the data's own event types:

- every event type becomes a binary task of that name;
- an event type whose values vary (ratings) also gives ``<event>`` as a regression task
  and ``liked`` (value >= 4) as a binary one, and the binary task of the event is named
  ``rated`` (both prefixed with the event's name when several event types are graded).

Spec syntax (comma-separated): ``name=event`` (binary), ``name=event>=4`` (binary on a
value threshold), ``name~event`` (regression on the value), several events joined by ``|``:
``"click=pv,cart=cart|fav,buy=buy"``, ``"rated=rating,liked=rating>=4,rating~rating"``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from metarec.data.dataset import Dataset
from metarec.errors import ConfigError


@dataclass(frozen=True)
class Task:
    """One prediction target over (user, item) pairs.

    Attributes:
        name: as it appears in metric names, e.g. ``AUC[buy]``.
        kind: ``binary`` or ``regression``.
        events: the event types that count.
        min_value: for a binary task, only events with at least this value count.
    """

    name: str
    kind: str
    events: tuple[str, ...]
    min_value: float | None = None


_SPEC = re.compile(r"^\s*(?P<name>[\w\-]+)\s*(?P<op>=|~)\s*(?P<events>[\w\-|]+)\s*(>=\s*(?P<min>-?[\d.]+))?\s*$")


def parse_tasks(spec: str) -> list[Task]:
    """Tasks from a spec string (see the module docstring).

    >>> [t.name for t in parse_tasks("rated=rating, liked=rating>=4, rating~rating")]
    ['rated', 'liked', 'rating']
    >>> parse_tasks("liked=rating>=4")[0].min_value
    4.0
    """
    tasks = []
    for part in spec.split(","):
        if not part.strip():
            continue
        m = _SPEC.match(part)
        if not m:
            raise ConfigError(f"task {part.strip()!r}: expected name=event, name=event>=value or name~event")
        kind = "regression" if m["op"] == "~" else "binary"
        if kind == "regression" and m["min"]:
            raise ConfigError(f"task {part.strip()!r}: a regression task takes no threshold")
        tasks.append(Task(m["name"], kind, tuple(m["events"].split("|")), float(m["min"]) if m["min"] else None))
    names = [t.name for t in tasks]
    if len(set(names)) != len(names):
        raise ConfigError(f"tasks: duplicate names in {spec!r}")
    return tasks


def default_tasks(data: Dataset) -> list[Task]:
    """One binary task per event type; ratings also give ``liked`` and a regression task."""
    tasks: list[Task] = []
    inter = data.interactions
    graded = [e for e in data.event_types if inter.loc[inter["event"] == e, "value"].nunique() > 2]
    for event in data.event_types:
        if event in graded:  # a graded value: a rating
            prefix = "" if len(graded) == 1 else f"{event}_"
            tasks += [
                Task(f"{prefix}rated", "binary", (event,)),
                Task(f"{prefix}liked", "binary", (event,), min_value=4.0),
                Task(event, "regression", (event,)),
            ]
        else:
            tasks.append(Task(event, "binary", (event,)))
    return tasks


def resolve_tasks(data: Dataset, spec: str | None = None) -> list[Task]:
    """The tasks for ``data``: parsed from ``spec``, else :func:`default_tasks`; every
    event named must exist in the data."""
    tasks = parse_tasks(spec) if spec else default_tasks(data)
    known = set(data.event_types)
    for t in tasks:
        missing = [e for e in t.events if e not in known]
        if missing:
            raise ConfigError(f"task {t.name!r}: event type {missing[0]!r} is not in the data ({', '.join(sorted(known))})")
    return tasks


def interaction_tasks(tasks: list[Task], event_types: list[str]) -> list[str]:
    """Names of the binary tasks that any interaction implies (``rated`` for ratings): the
    probability of an interaction, which ranking protocols count.

    >>> interaction_tasks(parse_tasks("rated=rating,liked=rating>=4,rating~rating"), ["rating"])
    ['rated']
    """
    return [t.name for t in tasks if t.kind == "binary" and t.min_value is None and set(event_types) <= set(t.events)]


def task_labels(interactions: pd.DataFrame, task: Task) -> pd.DataFrame:
    """Per (user, item) pair with a qualifying event: ``label`` (1.0 for a binary task,
    the mean value for a regression task)."""
    df = interactions[interactions["event"].isin(list(task.events))]
    if task.kind == "binary":
        if task.min_value is not None:
            df = df[df["value"] >= task.min_value]
        out = df[["user", "item"]].drop_duplicates().assign(label=1.0)
    else:
        out = df.groupby(["user", "item"], observed=True)["value"].mean().rename("label").reset_index()
    return out.reset_index(drop=True).astype({"label": np.float64})


def any_positive(values: np.ndarray, tasks: list[Task]) -> np.ndarray:
    """``(n,)`` float 1.0 where a row of task labels ``values (n, T)`` is positive for any of
    ``tasks``: a binary label of 1 or a regression value (NaN: no label). The label a
    network's retrieval score learns: a network learns from its own tasks' labels only, so a
    single-task network for ``buy`` does not learn from views through its retrieval score.

    >>> tasks = [Task("buy", "binary", ("buy",)), Task("rating", "regression", ("rating",))]
    >>> any_positive(np.array([[1, np.nan], [0, 4.0], [0, np.nan]]), tasks).tolist()
    [1.0, 1.0, 0.0]
    """
    values = np.asarray(values, dtype=np.float64).reshape(len(values), len(tasks))
    out = np.zeros(len(values), dtype=bool)
    for j, t in enumerate(tasks):
        out |= (values[:, j] == 1.0) if t.kind == "binary" else np.isfinite(values[:, j])
    return out.astype(np.float32)
