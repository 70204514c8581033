"""Cleaning of raw interaction frames: one vectorised pass, every dropped row accounted for.

A reader hands over a *raw* frame with the canonical columns ``user``, ``item`` and, where
the source has them, ``event``, ``value`` and ``timestamp`` (any dtype, usually strings),
plus ``_row``: the 1-based line number of the row in its file, so that a report or an error
can point at it. :func:`clean_interactions` turns it into typed columns and drops, in this
order, rows with a missing id, a bad timestamp, a value out of range, an unknown id, exact
duplicates, and (optionally) rows outside the k-core. Non-numeric values are not dropped:
they mean the wrong column was mapped, so they raise :class:`~metarec.errors.DataError`
naming the file, row and column.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from metarec.errors import ConfigError, DataError

log = logging.getLogger(__name__)

#: Reasons in the order the cleaning steps apply them.
DROP_REASONS = (
    "missing id",
    "bad timestamp",
    "value out of range",
    "unknown user",
    "unknown item",
    "duplicate",
    "k-core",
)


#: Reasons that mean a row was malformed (or names an id its attribute table lacks).
_BAD_INPUT = frozenset({"missing id", "bad timestamp", "value out of range", "unknown user", "unknown item"})


@dataclass
class Drop:
    """Rows dropped for one reason: how many and the first few line numbers."""

    reason: str
    count: int
    rows: list[int] = field(default_factory=list)


@dataclass
class CleaningReport:
    """What cleaning did to one source: rows read, rows kept, rows dropped by reason."""

    source: str
    rows_in: int = 0
    rows_out: int = 0
    drops: list[Drop] = field(default_factory=list)

    @property
    def dropped(self) -> int:
        return sum(d.count for d in self.drops)

    def add(self, reason: str, rows: np.ndarray) -> None:
        if len(rows):
            self.drops.append(Drop(reason, int(len(rows)), [int(r) for r in rows[:5]]))

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "rows_in": self.rows_in,
            "rows_out": self.rows_out,
            "dropped": {d.reason: {"count": d.count, "example_rows": d.rows} for d in self.drops},
        }

    def lines(self) -> list[str]:
        """Human-readable summary, one line per reason."""
        out = [f"{self.source}: {self.rows_in} rows read, {self.rows_out} kept"]
        for d in self.drops:
            out.append(f"  dropped {d.count} ({d.reason}), e.g. rows {', '.join(map(str, d.rows))}")
        return out


def _column_label(frame: pd.DataFrame, column: str) -> str:
    """The source's own name of a canonical column, for messages."""
    names = frame.attrs.get("columns", {})
    src = names.get(column)
    return f"{column} ({src!r})" if src and src != column else column


def parse_values(frame: pd.DataFrame, source: str) -> pd.Series:
    """Numeric ``value`` column; a non-numeric cell raises a DataError naming its row."""
    raw = frame["value"]
    values = pd.to_numeric(raw, errors="coerce")
    bad = values.isna() & raw.notna() & (raw.astype(str).str.strip() != "")
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        row = int(frame["_row"].iloc[i])
        raise DataError(
            f"{source}: row {row}, column {_column_label(frame, 'value')}: "
            f"{str(raw.iloc[i])!r} is not a number ({int(bad.sum())} such rows)"
        )
    return values.astype("float64")


#: The last second of the year 9999. A timestamp above it is not unix seconds: most often it
#: is milliseconds (JavaScript's ``Date.now()``, many public logs), which read as seconds put
#: an event tens of thousands of years ahead and after every event in seconds (a retrained
#: model's live events, ``leave-last``). Refused, not dropped, as a non-number is: a wrong unit.
MAX_TIMESTAMP = 253_402_300_799.0


#: Units a log's numeric timestamps may be read in (``--time-unit``), as divisors to seconds.
TIME_UNITS = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}

#: What a reader's error suggests for a timestamp after the year 9999.
READ_AS_MILLISECONDS = "milliseconds? read them with --time-unit ms (time_unit='ms')"


def timestamp_too_late(value: float, hint: str = "milliseconds? divide by 1000") -> str:
    """The message for a timestamp above :data:`MAX_TIMESTAMP` (the caller names the place)."""
    return f"{value:.17g} is after the year 9999 as unix seconds ({hint})"


def check_timestamps(ts: pd.Series, frame: pd.DataFrame, source: str) -> None:
    """A DataError naming the first row whose timestamp is after :data:`MAX_TIMESTAMP`."""
    late = (ts > MAX_TIMESTAMP).to_numpy()
    if late.any():
        i = int(np.flatnonzero(late)[0])
        raise DataError(f"{source}: row {int(frame['_row'].iloc[i])}, column {_column_label(frame, 'timestamp')}: "
                        f"{timestamp_too_late(float(ts.iloc[i]), READ_AS_MILLISECONDS)} ({int(late.sum())} such rows)")  # fmt: skip


def time_unit_divisor(unit: str) -> float:
    """Seconds per ``unit`` of :data:`TIME_UNITS`; a ConfigError names the choices."""
    if unit not in TIME_UNITS:
        raise ConfigError(f"time unit {unit!r}: choose from {', '.join(TIME_UNITS)}")
    return TIME_UNITS[unit]


def nothing_left(source: str, report: CleaningReport) -> DataError:
    """The error for a log whose every row cleaning dropped, with the report's reasons."""
    reasons = "; ".join(line.strip() for line in report.lines()[1:])
    return DataError(f"{source}: no valid rows left after cleaning ({reasons})")


def parse_timestamps(raw: pd.Series, unit: str = "s") -> pd.Series:
    """Seconds since the epoch as float64; NaN where a cell is missing or unparseable.

    Accepts unix time in ``unit`` (numbers or numeric strings: ``s``, ``ms``, ``us``, ``ns``),
    ISO-like date strings, and date columns (``datetime64``, as Parquet stores a timestamp;
    naive ones are UTC), which ``unit`` does not touch.

    >>> parse_timestamps(pd.Series(["1733390000123", "1970-01-02"]), "ms").tolist()
    [1733390000.123, 86400.0]
    >>> parse_timestamps(pd.Series(pd.to_datetime(["1970-01-02", None])), "ms").tolist()
    [86400.0, nan]
    """
    divisor = time_unit_divisor(unit)
    if pd.api.types.is_bool_dtype(raw):  # a flag is not a time (it was read as 0 and 1 seconds), as data clean says
        return pd.Series(np.nan, index=raw.index, dtype="float64")
    if pd.api.types.is_datetime64_any_dtype(raw):  # a typed date column (Parquet): a date, not a count
        utc = raw.dt.tz_localize("UTC") if raw.dt.tz is None else raw.dt.tz_convert("UTC")
        return ((utc - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)).astype("float64")
    numeric = pd.to_numeric(raw, errors="coerce") / divisor
    todo = numeric.isna() & raw.notna()
    if todo.any():
        dates = pd.to_datetime(raw[todo].astype(str), errors="coerce", utc=True, format="mixed")
        secs = (dates - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)
        numeric = numeric.astype("float64")
        numeric[todo] = secs.astype("float64")
    return numeric.astype("float64")


def _ids(col: pd.Series) -> pd.Series:
    """Ids as stripped strings; missing or empty become NA. Integral floats lose their '.0'."""
    if pd.api.types.is_float_dtype(col):
        whole = col.dropna()
        if len(whole) and (whole == np.floor(whole)).all():
            col = col.astype("Int64")
    s = col.astype("string").str.strip()
    return s.mask(s == "")


def kcore(users: np.ndarray, items: np.ndarray, k: int) -> np.ndarray:
    """Boolean mask of the rows in the k-core of the user-item graph (distinct pairs count).

    Iteratively removes users and items with fewer than ``k`` distinct partners.
    """
    keep = np.ones(len(users), dtype=bool)
    if k <= 1:
        return keep
    while True:
        u, i = users[keep], items[keep]
        pairs = pd.DataFrame({"u": u, "i": i}).drop_duplicates()
        ucount = pairs["u"].value_counts()
        icount = pairs["i"].value_counts()
        bad_u = ucount.index[ucount < k]
        bad_i = icount.index[icount < k]
        if len(bad_u) == 0 and len(bad_i) == 0:
            return keep
        drop = np.isin(users, bad_u.to_numpy()) | np.isin(items, bad_i.to_numpy())
        keep &= ~drop


def clean_interactions(
    raw: pd.DataFrame,
    *,
    source: str,
    default_event: str = "interaction",
    value_range: tuple[float, float] | None = None,
    known_users: pd.Index | None = None,
    known_items: pd.Index | None = None,
    min_core: int | None = None,
    time_unit: str = "s",
) -> tuple[pd.DataFrame, CleaningReport]:
    """Type and filter a raw interaction frame.

    Args:
        raw: canonical columns (``user``, ``item``, optional ``event``, ``value``,
            ``timestamp``) and ``_row`` (1-based line number in ``source``).
        source: file name used in the report and in errors.
        default_event: event type for sources without an event column.
        value_range: inclusive bounds; rows outside are dropped.
        known_users / known_items: when given, rows whose id is not in them are dropped
            (an attribute table defines the universe of ids).
        min_core: keep only the ``min_core``-core (distinct user-item pairs).
        time_unit: the unit of numeric timestamps (``s``, ``ms``, ``us``, ``ns``); read as seconds.

    Returns:
        ``(frame, report)`` where frame has string ``user``/``item``, a lower-case string
        ``event``, float ``value`` (1.0 if absent) and float ``timestamp`` (NaN if absent).

    Raises:
        DataError: empty input, a missing id column, a non-numeric value, or a timestamp after
            the year 9999 (:data:`MAX_TIMESTAMP`: milliseconds read as seconds).
    """
    report = CleaningReport(source=source, rows_in=len(raw))
    if len(raw) == 0:
        raise DataError(f"{source}: no rows to read (the file is empty)")
    for col in ("user", "item"):
        if col not in raw.columns:
            raise DataError(f"{source}: missing column {_column_label(raw, col)}")
    if "_row" not in raw.columns:
        raw = raw.assign(_row=np.arange(1, len(raw) + 1))

    out = pd.DataFrame({"user": _ids(raw["user"]), "item": _ids(raw["item"]), "_row": raw["_row"]})
    if "event" in raw.columns:
        ev = raw["event"].astype("string").str.strip().str.lower()
        out["event"] = ev.fillna(default_event).mask(ev == "", default_event)
    else:
        out["event"] = default_event
    out["value"] = parse_values(raw, source) if "value" in raw.columns else 1.0
    if "value" in raw.columns:
        out["value"] = out["value"].fillna(1.0)
    has_time = "timestamp" in raw.columns
    out["timestamp"] = parse_timestamps(raw["timestamp"], time_unit) if has_time else np.nan
    if has_time:
        check_timestamps(out["timestamp"], raw, source)

    def drop(mask: pd.Series | np.ndarray, reason: str) -> None:
        nonlocal out
        mask = np.asarray(mask, dtype=bool)
        if mask.any():
            report.add(reason, out["_row"].to_numpy()[mask])
            out = out.loc[~mask]

    drop(out["user"].isna() | out["item"].isna(), "missing id")
    if has_time:
        drop(out["timestamp"].isna(), "bad timestamp")
    if value_range is not None:
        lo, hi = value_range
        drop((out["value"] < lo) | (out["value"] > hi), "value out of range")
    if known_users is not None:
        drop(~out["user"].isin(known_users), "unknown user")
    if known_items is not None:
        drop(~out["item"].isin(known_items), "unknown item")
    drop(out.duplicated(["user", "item", "event", "timestamp"], keep="first"), "duplicate")
    if min_core and min_core > 1:
        u = pd.factorize(out["user"])[0]
        i = pd.factorize(out["item"])[0]
        drop(~kcore(u, i, min_core), "k-core")

    report.rows_out = len(out)
    if report.dropped:
        # Rows dropped as malformed are said at the default level, with their reasons and
        # line numbers; duplicates and the k-core the user asked for alone are routine.
        level = logging.WARNING if any(d.reason in _BAD_INPUT for d in report.drops) else logging.INFO
        log.log(level, "%s", "\n".join(report.lines()))
    return out.reset_index(drop=True), report
