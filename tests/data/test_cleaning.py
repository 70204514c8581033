import logging

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metarec.data import build_dataset
from metarec.data.cleaning import clean_interactions, kcore
from metarec.errors import ConfigError, DataError


def raw(**cols):
    df = pd.DataFrame(cols)
    df["_row"] = np.arange(2, len(df) + 2)
    return df


def test_every_drop_is_reported_with_its_rows():
    df = raw(
        user=["a", "a", "b", None, "c", "d", "a"],
        item=["x", "x", "y", "x", "z", "unknown", "y"],
        value=["5", "5", "9", "3", "4", "4", "1"],
        timestamp=["100", "100", "101", "102", "yesterday?", "104", "105"],
    )
    clean, report = clean_interactions(
        df, source="f.csv", value_range=(1, 5), known_items=pd.Index(["x", "y", "z"])
    )
    dropped = {d.reason: (d.count, d.rows) for d in report.drops}
    assert dropped == {
        "missing id": (1, [5]),
        "bad timestamp": (1, [6]),
        "value out of range": (1, [4]),
        "unknown item": (1, [7]),
        "duplicate": (1, [3]),
    }
    assert report.rows_in == 7 and report.rows_out == 2 == len(clean)
    assert clean["user"].tolist() == ["a", "a"] and clean["value"].tolist() == [5.0, 1.0]


def test_malformed_rows_dropped_are_said_by_default_duplicates_are_not(caplog):
    caplog.set_level(logging.WARNING)  # the CLI's default level
    df = raw(user=["a", None, "b", "b"], item=["x", "x", "y", "y"], timestamp=["1", "2", "3", "3"])
    clean_interactions(df, source="f.csv")
    assert "f.csv: 4 rows read, 2 kept" in caplog.text
    assert "dropped 1 (missing id), e.g. rows 3" in caplog.text and "dropped 1 (duplicate)" in caplog.text
    caplog.clear()
    clean_interactions(raw(user=["a", "a"], item=["x", "x"], timestamp=["1", "1"]), source="g.csv")
    assert caplog.text == ""  # an exact duplicate alone is routine


def test_non_numeric_value_names_file_row_and_column():
    df = raw(user=["a", "b"], item=["x", "y"], value=["4", "four"])
    df.attrs["columns"] = {"value": "rating"}
    with pytest.raises(DataError, match=r"f\.csv: row 3, column value \('rating'\): 'four' is not a number"):
        clean_interactions(df, source="f.csv")


def test_empty_and_missing_id_column():
    with pytest.raises(DataError, match="empty"):
        clean_interactions(raw(user=[], item=[]), source="f.csv")
    with pytest.raises(DataError, match="missing column item"):
        clean_interactions(raw(user=["a"]), source="f.csv")


def test_iso_dates_and_string_ids():
    df = raw(user=[" alice ", "bob"], item=["B00X", "B00Y"], timestamp=["2020-01-01T00:00:00Z", "1577836800"])
    clean, _ = clean_interactions(df, source="f")
    assert clean["user"].tolist() == ["alice", "bob"]
    assert clean["timestamp"].tolist() == [1577836800.0, 1577836800.0]


def test_kcore_known_answer():
    # user c and item z only have one partner each; removing them leaves a 2-core.
    users = np.array([0, 0, 1, 1, 2])
    items = np.array([0, 1, 0, 1, 2])
    assert kcore(users, items, 2).tolist() == [True, True, True, True, False]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 8), st.integers(0, 8)), min_size=1, max_size=60), st.integers(1, 4))
def test_kcore_property(pairs, k):
    users = np.array([p[0] for p in pairs])
    items = np.array([p[1] for p in pairs])
    keep = kcore(users, items, k)
    kept = pd.DataFrame({"u": users[keep], "i": items[keep]}).drop_duplicates()
    assert (kept.groupby("u").size() >= k).all()
    assert (kept.groupby("i").size() >= k).all()


def test_build_dataset_keeps_catalogue_items_without_events():
    items = pd.DataFrame({"title": ["A", "B", "C"]}, index=["1", "2", "10"])
    data = build_dataset(raw(user=["u"], item=["2"]), source="f", items=items, text_fields=("title",))
    assert data.item_ids.tolist() == ["1", "2", "10"]  # natural order, table-only ids kept
    assert data.item_text() == ["A", "B", "C"]
    assert data.matrix().toarray().tolist() == [[0.0, 1.0, 0.0]]


def test_a_timestamp_in_milliseconds_names_file_row_and_column():
    """Unix seconds after the year 9999 are milliseconds, most often: refused with the row,
    not read as events tens of thousands of years ahead of every event in seconds."""
    df = raw(user=["a", "b", "c"], item=["x", "y", "z"], timestamp=["1733390000", "1733390000123", "2024-12-05"])
    df.attrs["columns"] = {"timestamp": "ts"}
    with pytest.raises(DataError, match=r"f\.csv: row 3, column timestamp \('ts'\): 1733390000123 is after the "
                                        r"year 9999 as unix seconds \(milliseconds\? read them with --time-unit ms "
                                        r".*\(1 such rows\)"):
        clean_interactions(df, source="f.csv")
    ok = raw(user=["a", "b"], item=["x", "y"], timestamp=["253402300799", "-86400"])  # the last second of 9999; 1969
    assert clean_interactions(ok, source="f.csv")[0]["timestamp"].tolist() == [253402300799.0, -86400.0]


def test_timestamps_in_another_unit_are_read_as_seconds():
    """``time_unit`` divides numeric timestamps to seconds; dates are dates whatever it is."""
    df = raw(user=["a", "b", "c"], item=["x", "y", "z"], timestamp=["1733390000123", "2024-12-05T00:00:00Z", "5"])
    got = clean_interactions(df, source="f.csv", time_unit="ms")[0]["timestamp"].tolist()
    assert got == [1733390000.123, 1733356800.0, 0.005]
    us = raw(user=["a"], item=["x"], timestamp=["1733390000123456"])
    assert clean_interactions(us, source="f.csv", time_unit="us")[0]["timestamp"].tolist() == [1733390000.123456]
    with pytest.raises(ConfigError, match=r"time unit 'min': choose from s, ms, us, ns"):
        clean_interactions(df, source="f.csv", time_unit="min")
