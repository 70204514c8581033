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
from metarec.models.io import load_model, save_model, training_events
from metarec.models.registry import make_scorer
from metarec.serving.store import open_store


def dataset_from_store(store_url: str, model_dir: str | Path) -> Dataset:
    """The model's training events and the store's events and items.

    The training events keep their types, values and times (a multi-task model's tasks, the
    rating weights of EASE and iALS); a model directory saved before it kept them gives its
    training pairs as one event type, ``train``, of value 1.
    """
    model = load_model(model_dir)
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
    return build_dataset(
        raw, source=f"{store_url} + {model_dir}", items=items, name=model.config.get("dataset", "store"),
        text_fields=text_fields, tag_fields=[f for f in model.config.get("tag_fields") or [] if f in items.columns],
        strict_ids=True,
    )  # fmt: skip


def retrain(store_url: str, model_dir: str | Path, out: str | Path) -> Path:
    """Train the served model's kind again on its data and the store; returns the new directory."""
    model = load_model(model_dir)
    data = dataset_from_store(store_url, model_dir)
    cls_fields = {f.name for f in dataclasses.fields(type(model.scorer.config))}
    params = {k: v for k, v in model.config["config"].items() if k in cls_fields}
    if "bilinear_l2" in params:
        params["bilinear_l2"] = tuple(params["bilinear_l2"])
    scorer = make_scorer(model.config["model"], **params).fit(data)
    return save_model(scorer, data, out)
