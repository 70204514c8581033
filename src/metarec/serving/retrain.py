"""Retraining from the event store: the served model's data plus every stored event.

The new model (same name and config) is written to a fresh directory; the service swaps to
it with ``POST /admin/reload`` without failing a request.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from metarec.data.dataset import Dataset, build_dataset
from metarec.errors import DataError
from metarec.models.io import TrainedModel, load_model, save_model, training_events
from metarec.models.registry import make_scorer
from metarec.serving.store import open_store


def dataset_from_store(store_url: str, model: TrainedModel | str | Path) -> Dataset:
    """The model's training events, items and users with the store's events, items and users.

    ``model``: the served model, or its directory. The training events keep their types,
    values and times (a multi-task model's tasks, the rating weights of EASE and iALS); a
    model directory saved before it kept them gives its training pairs as one event type,
    ``train``, of value 1. Users keep their attributes (age, gender, ...: the multi-task and
    meta networks read them), those given with ``PUT /users`` overriding the model's, for
    the attributes the model was trained with; a user the store has events of and no
    attributes for joins with none.
    """
    if not isinstance(model, TrainedModel):
        model = load_model(model)
    store = open_store(store_url)
    try:
        first = training_events(model)
        if first is None:
            rows, cols = model.history.nonzero()
            first = pd.DataFrame({"user": model.user_ids[rows], "item": model.item_ids[cols], "event": "train", "value": 1.0})
        elif model.config.get("timestamp_kind") != "unix":
            first["timestamp"] = np.nan  # sequence positions do not order against the store's clock
        frames = [first]
        events = list(store.all_events())
        if events:
            frames.append(pd.DataFrame([e.to_dict() for e in events]).rename(columns={"user_id": "user", "item_id": "item", "type": "event"}))
        stored = store.items()
        stored_users = store.users()
    finally:
        store.close()
    raw = pd.concat(frames, ignore_index=True)
    raw["timestamp"] = raw["timestamp"].fillna(0.0) if "timestamp" in raw else 0.0
    raw = raw[["user", "item", "event", "value", "timestamp"]].assign(_row=np.arange(1, len(raw) + 1))
    items = model.items.copy()
    items.index = model.item_ids
    text_fields = list(model.config.get("text_fields") or [])
    for it in stored:
        if it.deleted:
            items = items.drop(index=it.item_id, errors="ignore")
            continue
        row = {f: None for f in items.columns}
        row.update({k: v for k, v in it.attributes.items() if k in items.columns})
        if text_fields:
            row[text_fields[0]] = it.text
        items.loc[it.item_id] = pd.Series(row)
    users = _users(model, stored_users, pd.unique(raw["user"].astype(str)), store_url)
    return build_dataset(
        raw, source=f"{store_url} + {model.path}", items=items, users=users, name=model.config.get("dataset", "store"),
        text_fields=text_fields, tag_fields=[f for f in model.config.get("tag_fields") or [] if f in items.columns],
        strict_ids=True,
    )  # fmt: skip


def _users(model: TrainedModel, stored: dict[str, dict], active: np.ndarray, store_url: str) -> pd.DataFrame:
    """The model's users' attributes, overridden by the store's, for every user with events.

    Only the attributes the model was trained with are kept; a value that does not fit a
    numeric attribute (``"age": "old"``) is an error naming the user and the attribute.
    """
    users = model.users.copy()
    users.index = pd.Index(model.user_ids).astype(str)
    active_set = set(active)
    rows = {u: {k: v for k, v in a.items() if k in users.columns} for u, a in stored.items()
            if u in active_set or u in users.index}  # fmt: skip
    users = users.reindex(users.index.union(pd.Index(active)))  # the rows above are all in it
    for col in users.columns:
        given = {u: r[col] for u, r in rows.items() if col in r}
        if not given:
            continue
        new = pd.Series(given, dtype=object)
        if pd.api.types.is_numeric_dtype(users[col]):
            num = pd.to_numeric(new, errors="coerce")
            bad = num.isna() & new.notna()
            if bad.any():
                u = bad.index[bad.argmax()]
                raise DataError(f"{store_url}: user {u!r}: attribute {col!r} must be a number, got {given[u]!r}")
            new = num
            users[col] = users[col].astype("float64")  # 31.5 into an int64 column is no error
        else:
            new = new.map(lambda v: None if v is None else str(v))
        users.loc[new.index, col] = new.to_numpy()
    return users


def retrain(store_url: str, model_dir: str | Path, out: str | Path) -> Path:
    """Train the served model's kind again on its data and the store; returns the new directory."""
    model = load_model(model_dir)
    data = dataset_from_store(store_url, model)
    cls_fields = {f.name for f in dataclasses.fields(type(model.scorer.config))}
    params = {k: v for k, v in model.config["config"].items() if k in cls_fields}
    if "bilinear_l2" in params:
        params["bilinear_l2"] = tuple(params["bilinear_l2"])
    scorer = make_scorer(model.config["model"], **params).fit(data)
    return save_model(scorer, data, out)
