"""Retraining from the event store: the served model's data plus every stored event.

The new model (same name and config) is written to a fresh directory; the service swaps to
it with ``POST /admin/reload`` without failing a request. :func:`retrain_every` does both on
a schedule (``metarec retrain --every 1h --reload URL``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from metarec.data.cleaning import MAX_TIMESTAMP
from metarec.data.dataset import Dataset, build_dataset
from metarec.errors import ConfigError, DataError, MetarecError
from metarec.models.io import TrainedModel, check_model_out, load_model, save_model, training_events
from metarec.models.registry import make_scorer
from metarec.serving.store import StoredItem, open_store

log = logging.getLogger(__name__)


def _say_new_event_types(first: pd.DataFrame, stored: pd.DataFrame, store_url: str) -> None:
    """Warn of stored event types the model was not trained on (a client's typo, or
    ``POST /events``'s default ``view`` on MovieLens's ratings): they are learned from, as any
    type is (by default each is a task of its own of the multi-task networks), so a few stray
    events silently add heads to the retrained model, or weigh as a rating of 1."""
    if (first["event"] == "train").all():  # a model saved before it kept its events' types
        return
    counts = stored.loc[~stored["event"].isin(set(first["event"])), "event"].value_counts()
    if len(counts):
        log.warning("%s: events of types the model was not trained on (%s): %s; they are trained on as new "
                    "event types", store_url, ", ".join(sorted(map(str, pd.unique(first["event"])))),
                    ", ".join(f"{t} ({n})" for t, n in counts.items()))


def dataset_from_store(store_url: str, model: TrainedModel | str | Path) -> Dataset:
    """The model's training events, items and users with the store's events, items and users.

    ``model``: the served model, or its directory. The training events keep their types,
    values and times (a multi-task model's tasks, the rating weights of EASE and iALS); a
    model directory saved before it kept them gives its training pairs as one event type,
    ``train``, of value 1. Users keep their attributes (age, gender, ...: the multi-task and
    meta networks read them), those given with ``PUT /users`` overriding the model's, for
    the attributes the model was trained with; a user the store has events of and no
    attributes for joins with none. The model's declared value range
    (``TrainedModel.value_range``) carries over: an event outside it, stored before the
    service refused such events, is dropped and reported, as reading the data would. So is an
    event stored with a timestamp after the year 9999 (milliseconds), named by its id.
    """
    if not isinstance(model, TrainedModel):
        model = load_model(model)
    store = open_store(store_url, create=False)
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
    latest = {it.item_id: it for it in stored}  # oldest first: the last change of an item wins
    gone = raw["item"].astype(str).isin([i for i, it in latest.items() if it.deleted]).to_numpy()
    if gone.any():  # a deleted item leaves the data, its events with it (not "unknown item" rows)
        log.info("%s: %d events of deleted items left out", store_url, int(gone.sum()))
        raw = raw.loc[~gone].reset_index(drop=True)
    raw["timestamp"] = raw["timestamp"].fillna(0.0) if "timestamp" in raw else 0.0
    if "event_id" in raw:  # stored before the service refused milliseconds: left out, as reading would refuse them
        late = (raw["event_id"].notna() & (raw["timestamp"] > MAX_TIMESTAMP)).to_numpy()
        if late.any():
            log.warning("%s: %d events stored with a timestamp after the year 9999 (milliseconds?) left out: %s",
                        store_url, int(late.sum()), ", ".join(raw.loc[late, "event_id"].astype(str)[:5]))  # fmt: skip
            raw = raw.loc[~late].reset_index(drop=True)
        _say_new_event_types(first, raw.loc[raw["event_id"].notna()], store_url)  # the events retraining reads
    raw = raw[["user", "item", "event", "value", "timestamp"]].assign(_row=np.arange(1, len(raw) + 1))
    text_fields = list(model.config.get("text_fields") or [])
    items = _items(model, latest, text_fields, store_url)
    users = _users(model, stored_users, pd.unique(raw["user"].astype(str)), store_url)
    return build_dataset(
        raw, source=f"{store_url} + {model.path}", items=items, users=users, name=model.config.get("dataset", "store"),
        text_fields=text_fields, tag_fields=[f for f in model.config.get("tag_fields") or [] if f in items.columns],
        strict_ids=True, value_range=model.value_range,  # events stored before the service checked values
    )  # fmt: skip


def _items(model: TrainedModel, latest: dict[str, StoredItem], text_fields: list[str], store_url: str) -> pd.DataFrame:
    """The model's items with the store's (``latest``: each stored item's last change):
    deleted ones dropped, added or replaced ones (their text in the first text field, their
    attributes for the model's columns, the rest empty: ``PUT /items`` replaces an item)
    written over the model's."""
    items = model.items.copy()
    items.index = model.item_ids
    gone = [i for i, it in latest.items() if it.deleted]
    live = {i: it for i, it in latest.items() if not it.deleted}
    items = items.drop(index=gone, errors="ignore")
    items = items.reindex(items.index.append(pd.Index([i for i in live if i not in items.index], dtype=object)))
    rows = {}
    for i, it in live.items():
        row = {c: None for c in items.columns}
        row.update({k: v for k, v in it.attributes.items() if k in items.columns})
        if text_fields:
            row[text_fields[0]] = it.text
        rows[i] = row
    return write_over(items, rows, "item", store_url)


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
    return write_over(users, rows, "user", store_url)


def write_over(table: pd.DataFrame, rows: dict[str, dict], kind: str, store_url: str) -> pd.DataFrame:
    """``table`` with ``rows`` (``{id: {column: value}}``, ids in its index) written over it.

    A numeric column stays numeric: a value that is not a number (``"price": "cheap"``) is an
    error naming the store, the ``kind`` ("user", "item") and id, and the attribute; nothing
    is written then. Other columns take the values as text, a list joined by commas (tags:
    ``["War", "Drama"]`` is ``"War, Drama"``, as the readers give them); ``None`` stays missing.
    """
    for col in table.columns:
        given = {i: r[col] for i, r in rows.items() if col in r}
        if not given:
            continue
        new = pd.Series(given, dtype=object)
        if pd.api.types.is_numeric_dtype(table[col]):
            num = pd.to_numeric(new, errors="coerce")
            bad = num.isna() & new.notna()
            if bad.any():
                i = bad.index[bad.argmax()]
                raise DataError(f"{store_url}: {kind} {i!r}: attribute {col!r} must be a number, got {given[i]!r}")
            new = num
            table[col] = table[col].astype("float64")  # 31.5 into an int64 column is no error
        else:
            new = new.map(attribute_text)
        table.loc[new.index, col] = new.to_numpy()
    return table


def attribute_text(value: Any) -> str | None:
    """An attribute as the text a text column holds.

    >>> [attribute_text(v) for v in (None, 3, "F", ["War", "Drama"])]
    [None, '3', 'F', 'War, Drama']
    """
    if value is None:
        return None
    return ", ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def retrain(store_url: str, model_dir: str | Path, out: str | Path) -> Path:
    """Train the served model's kind again on its data and the store; returns the new directory
    (never ``model_dir`` itself: the model retrained from would be lost, with nothing to go back to)."""
    if Path(out).resolve() == Path(model_dir).resolve():
        raise ConfigError(f"{out}: is the model being retrained; give another directory, then swap it in")
    check_model_out(out)  # before the training, not after it
    model = load_model(model_dir)
    data = dataset_from_store(store_url, model)
    cls_fields = {f.name for f in dataclasses.fields(type(model.scorer.config))}
    params = {k: v for k, v in model.config["config"].items() if k in cls_fields}
    scorer = make_scorer(model.config["model"], **params).fit(data)
    return save_model(scorer, data, out)


def reload_service(url: str, model_dir: str | Path, api_key: str, timeout: float = 600.0) -> dict[str, Any]:
    """``POST {url}/admin/reload`` with ``model_dir`` (absolute: the service resolves it on its
    own machine); returns the service's answer. A refusal or an unreachable service is a
    ConfigError with the service's own message."""
    body = json.dumps({"model_dir": str(Path(model_dir).resolve())}).encode()
    req = urllib.request.Request(f"{url.rstrip('/')}/admin/reload", data=body, method="POST",
                                 headers={"content-type": "application/json", "X-API-Key": api_key})  # fmt: skip
    try:
        with urllib.request.urlopen(req, timeout=timeout) as answer:
            return json.load(answer)
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:500]
        raise ConfigError(f"{url}: the reload was refused ({exc.code}): {detail}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise ConfigError(f"{url}: no answer to the reload ({getattr(exc, 'reason', exc)})") from None


def retrain_every(
    store_url: str, model_dir: str | Path, out_root: str | Path, every: float, *, reload_url: str | None = None,
    api_key: str = "", keep: int = 3, rounds: int | None = None, report: Callable[[str], None] = log.info,
    sleep: Callable[[float], None] = time.sleep,
) -> int:  # fmt: skip
    """Scheduled retraining with hot swap: every ``every`` seconds (from the start of one round
    to the next; a round that runs longer starts the next at once) train ``model_dir``'s model
    again on its data and the store (:func:`retrain`) into a new directory under ``out_root``
    (``model-<UTC time>``), ask the service at ``reload_url`` to swap it in, and delete this
    loop's older directories beyond the newest ``keep``, never the one served last.

    A round that fails (bad data, a full disk, the service refusing or not answering) is
    reported and the next one is tried. Returns how many rounds failed (``rounds`` bounds the
    loop; None: until interrupted)."""
    if every <= 0 or keep < 1:
        raise ConfigError(f"retrain every {every} s keeping {keep}: both must be positive")
    out_root = Path(out_root)
    if out_root.exists() and not out_root.is_dir():
        raise ConfigError(f"{out_root}: a file is there; --out names the directory that holds the retrained models")
    load_model(model_dir)  # a directory that does not load fails now, not at the first round
    written: list[Path] = []
    served: Path | None = None
    failed = done = 0
    start = time.monotonic()
    while rounds is None or done < rounds:
        wait = start + done * every - time.monotonic()
        if wait > 0:
            sleep(wait)
        else:
            start -= wait  # overran: the next rounds keep the interval from now
        done += 1
        began = time.monotonic()
        out = out_root / f"model-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
        if out.exists() or out in written:
            out = out.with_name(f"{out.name}-{done}")
        try:
            path = retrain(store_url, model_dir, out)
        except (MetarecError, OSError) as exc:
            failed += 1
            report(f"round {done} failed: {exc}")
            continue
        written.append(path)
        line = f"round {done}: retrained into {path} in {time.monotonic() - began:.0f} s"
        try:
            if reload_url:
                line += f"; {reload_url} now serves it ({reload_service(reload_url, path, api_key).get('model')})"
            served = path
        except MetarecError as exc:
            failed += 1
            line += f"; the reload failed: {exc}"
        report(line)
        for old in written[:-keep]:
            if old != served:
                shutil.rmtree(old, ignore_errors=True)
                written.remove(old)
    return failed
