"""The one data model every part of metarec shares.

A :class:`Dataset` is a log of interactions (user, item, event type, value, timestamp) over
fixed vocabularies of users and items, plus attribute tables for both. Ids are the source's
own strings; internally rows refer to them by index (``int32``), so that a training subset,
its test set and a trained model all agree on what item 17 is.

Subsets (:meth:`Dataset.subset`) keep the full vocabularies: an item with no training
interaction is still in the catalogue, and a scorer can say it cannot score it (NaN).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from metarec.data.cleaning import CleaningReport, clean_interactions, nothing_left

#: The columns of :attr:`Dataset.interactions`.
INTERACTION_COLUMNS = ("user", "item", "event", "value", "timestamp")


@dataclass(frozen=True, eq=False)
class Dataset:
    """Interactions over fixed user and item vocabularies, with attribute tables.

    Attributes:
        interactions: columns ``user`` and ``item`` (int32 indices into ``user_ids`` and
            ``item_ids``), ``event`` (categorical), ``value`` (float32) and ``timestamp``
            (float64 seconds, or positions when ``timestamp_kind == "order"``).
        user_ids: external user ids, ``user_ids[i]`` is user ``i``.
        item_ids: external item ids.
        items: one row per item (row ``i`` is item ``i``): text fields, categoricals, numbers.
        users: one row per user: demographic or profile attributes.
        name: a short name for reports.
        text_fields: the item columns that hold free text (titles, descriptions).
        tag_fields: the item columns whose values are lists of tags from a small vocabulary,
            comma-separated (MovieLens's genres): ``ials`` (and ``ease`` with ``tags=auto``)
            draws items sharing a tag together.
        timestamp_kind: ``"unix"`` seconds, ``"order"`` (sequence positions) or ``"none"``.
        value_range: the inclusive bounds every event value was read within (MovieLens's
            ratings: 1 to 5; ``--value-range`` for CSV and Parquet), or None where the data
            declares none. A trained model keeps it, and the service refuses an event outside it.
        reports: what cleaning dropped, one report per source file.
    """

    interactions: pd.DataFrame
    user_ids: np.ndarray
    item_ids: np.ndarray
    items: pd.DataFrame
    users: pd.DataFrame
    name: str = "data"
    text_fields: tuple[str, ...] = ()
    tag_fields: tuple[str, ...] = ()
    timestamp_kind: str = "unix"
    value_range: tuple[float, float] | None = None
    reports: tuple[CleaningReport, ...] = field(default_factory=tuple)

    # ------------------------------------------------------------------ sizes
    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_interactions(self) -> int:
        return len(self.interactions)

    @property
    def event_types(self) -> list[str]:
        return [str(e) for e in self.interactions["event"].cat.categories]

    @property
    def has_time(self) -> bool:
        return self.timestamp_kind != "none"

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, users={self.n_users}, items={self.n_items}, "
            f"interactions={self.n_interactions}, events={self.event_types})"
        )

    # ------------------------------------------------------------- look-ups
    def user_index(self, ids: Iterable[Any]) -> np.ndarray:
        """Indices of external user ids; -1 for ids not in the vocabulary."""
        return _lookup(self.user_ids, ids)

    def item_index(self, ids: Iterable[Any]) -> np.ndarray:
        """Indices of external item ids; -1 for ids not in the vocabulary."""
        return _lookup(self.item_ids, ids)

    def item_text(self, fields: Sequence[str] | None = None) -> list[str]:
        """One text per item, the given (or all text) fields joined with '. '."""
        fields = list(fields or self.text_fields)
        if not fields:
            return [""] * self.n_items
        parts = [self.items[f].fillna("").astype(str) for f in fields]
        text = parts[0]
        for p in parts[1:]:
            text = text.str.cat(p, sep=". ")
        return text.str.strip(". ").tolist()

    # ------------------------------------------------------------ matrices
    def pairs(self, events: Sequence[str] | None = None) -> pd.DataFrame:
        """Distinct (user, item) pairs with their first timestamp and event count.

        Ranking protocols treat each pair as one positive, whatever its events.
        """
        df = self.interactions
        if events is not None:
            df = df[df["event"].isin(list(events))]
        g = df.groupby(["user", "item"], sort=True, observed=True)
        out = g["timestamp"].min().rename("timestamp").to_frame()
        out["count"] = g.size().astype("int32")
        return out.reset_index()

    def matrix(self, events: Sequence[str] | None = None) -> sp.csr_matrix:
        """Binary user x item CSR matrix (float32) of the distinct pairs."""
        p = self.pairs(events)
        return pair_matrix(p["user"].to_numpy(), p["item"].to_numpy(), self.n_users, self.n_items)

    # ------------------------------------------------------------- subsets
    def subset(self, mask: np.ndarray | pd.Series) -> Dataset:
        """The same vocabularies and attributes with only the interactions under ``mask``."""
        inter = self.interactions.loc[np.asarray(mask, dtype=bool)].reset_index(drop=True)
        return replace(self, interactions=inter)

    def describe(self) -> dict[str, Any]:
        """Counts and fields, as printed by ``metarec data inspect``."""
        inter = self.interactions
        p = self.pairs()
        per_user = p.groupby("user").size()
        ts = inter["timestamp"]
        return {
            "name": self.name,
            "users": self.n_users,
            "items": self.n_items,
            "interactions": self.n_interactions,
            "distinct pairs": len(p),
            "density": len(p) / max(1, self.n_users * self.n_items),
            "events": {str(k): int(v) for k, v in inter["event"].value_counts(sort=False).items()},
            "values": [float(inter["value"].min()), float(inter["value"].max())] if len(inter) else [],
            "value range": list(self.value_range) if self.value_range is not None else "none declared",
            "pairs per user (median)": float(per_user.median()) if len(per_user) else 0.0,
            "timestamps": self.timestamp_kind
            + (f" [{ts.min():.0f} .. {ts.max():.0f}]" if self.has_time and len(ts) else ""),
            "item fields": list(self.items.columns),
            "text fields": list(self.text_fields),
            "tag fields": list(self.tag_fields),
            "user fields": list(self.users.columns),
        }


def pair_matrix(users: np.ndarray, items: np.ndarray, n_users: int, n_items: int) -> sp.csr_matrix:
    """Binary CSR matrix from index arrays (duplicates collapse to 1)."""
    m = sp.csr_matrix(
        (np.ones(len(users), dtype=np.float32), (users, items)), shape=(n_users, n_items)
    )
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


def grown(matrix: sp.spmatrix, rows: int = 0, columns: int = 0) -> sp.csr_matrix:
    """``matrix`` as CSR with ``rows`` empty rows below it and ``columns`` empty columns to its
    right (users or items added after training: no interactions yet), dtype kept.

    >>> m = grown(sp.csr_matrix(np.eye(2, dtype=np.float32)), rows=1, columns=2)
    >>> m.shape, m.dtype.name, m.nnz
    ((3, 4), 'float32', 2)
    """
    m = sp.csr_matrix(matrix)
    indptr = np.concatenate([m.indptr, np.full(rows, m.indptr[-1], dtype=m.indptr.dtype)])
    return sp.csr_matrix((m.data, m.indices, indptr), shape=(m.shape[0] + rows, m.shape[1] + columns))


def _lookup(vocab: np.ndarray, ids: Iterable[Any]) -> np.ndarray:
    ids = np.asarray([str(i) for i in ids], dtype=object)
    idx = pd.Index(vocab).get_indexer(ids)
    return idx.astype(np.int64)


def _attribute_table(
    table: pd.DataFrame | None, vocab: np.ndarray, name: str
) -> pd.DataFrame:
    """Reindex an attribute table (indexed by external id) to the vocabulary order."""
    if table is None or table.shape[1] == 0:
        return pd.DataFrame(index=pd.RangeIndex(len(vocab)))
    if table.index.has_duplicates:
        table = table[~table.index.duplicated(keep="first")]
    out = table.reindex(pd.Index(vocab, dtype=object))
    out.index = pd.RangeIndex(len(vocab))
    out.index.name = None
    return out


def build_dataset(
    raw: pd.DataFrame,
    *,
    source: str,
    items: pd.DataFrame | None = None,
    users: pd.DataFrame | None = None,
    name: str = "data",
    text_fields: Sequence[str] = (),
    tag_fields: Sequence[str] = (),
    default_event: str = "interaction",
    value_range: tuple[float, float] | None = None,
    strict_ids: bool = True,
    min_core: int | None = None,
    timestamp_kind: str | None = None,
    extra_reports: Sequence[CleaningReport] = (),
    time_unit: str = "s",
) -> Dataset:
    """Clean a raw interaction frame and index it into a :class:`Dataset`.

    Args:
        raw: raw interactions (see :func:`~metarec.data.cleaning.clean_interactions`).
        source: the file name for reports and errors.
        items: item attributes indexed by external item id (string). Items listed here but
            never interacted with stay in the catalogue.
        users: user attributes indexed by external user id.
        strict_ids: drop interactions whose user/item is missing from a given table.
        min_core: optional k-core filter on distinct user-item pairs.
        timestamp_kind: override; by default ``"unix"`` when ``raw`` has timestamps.
        time_unit: the unit of ``raw``'s numeric timestamps (``s``, ``ms``, ``us``, ``ns``).
    """
    for table in (items, users):
        if table is not None:
            table.index = table.index.astype(str).str.strip()
    clean, report = clean_interactions(
        raw,
        source=source,
        default_event=default_event,
        value_range=value_range,
        known_users=users.index if (strict_ids and users is not None and len(users)) else None,
        known_items=items.index if (strict_ids and items is not None and len(items)) else None,
        min_core=min_core,
        time_unit=time_unit,
    )
    if len(clean) == 0:
        raise nothing_left(source, report)
    user_vocab = _vocabulary(clean["user"], users, keep_table_ids=not min_core)
    item_vocab = _vocabulary(clean["item"], items, keep_table_ids=not min_core)
    inter = pd.DataFrame(
        {
            "user": pd.Index(user_vocab).get_indexer(clean["user"]).astype(np.int32),
            "item": pd.Index(item_vocab).get_indexer(clean["item"]).astype(np.int32),
            "event": clean["event"].astype(str).astype("category"),
            "value": clean["value"].astype(np.float32),
            "timestamp": clean["timestamp"].astype(np.float64),
        }
    )
    if timestamp_kind is None:
        timestamp_kind = "none" if inter["timestamp"].isna().all() else "unix"
    return Dataset(
        interactions=inter,
        user_ids=user_vocab,
        item_ids=item_vocab,
        items=_attribute_table(items, item_vocab, "items"),
        users=_attribute_table(users, user_vocab, "users"),
        name=name,
        text_fields=tuple(text_fields),
        tag_fields=tuple(tag_fields),
        timestamp_kind=timestamp_kind,
        value_range=None if value_range is None else (float(value_range[0]), float(value_range[1])),
        reports=(*extra_reports, report),
    )


def _vocabulary(ids: pd.Series, table: pd.DataFrame | None, keep_table_ids: bool) -> np.ndarray:
    """Sorted distinct ids: those in the log plus (unless filtered) those in the table."""
    values = pd.unique(ids.to_numpy(dtype=object))
    if keep_table_ids and table is not None and len(table):
        values = pd.unique(np.concatenate([values, table.index.to_numpy(dtype=object)]))
    # Natural order: numeric ids as numbers (2 < 10), digit runs inside strings too (u2 < u10).
    s = pd.Series(values, dtype=object)
    num = pd.to_numeric(s, errors="coerce")
    if num.notna().all():
        order = np.lexsort((s.to_numpy(dtype=str), num.to_numpy()))
    else:
        key = s.astype(str).str.replace(r"\d+", lambda m: m.group().zfill(20), regex=True)
        order = np.argsort(key.to_numpy(dtype=str), kind="stable")
    return s.to_numpy(dtype=object)[order]
