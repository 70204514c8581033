"""Out-of-core cleaning (DuckDB) gives what the in-memory cleaning gives: same rows kept,
same report."""

import numpy as np
import pandas as pd
import pytest

from metarec.data import load_dataset
from metarec.errors import DataError

duckdb = pytest.importorskip("duckdb")

from metarec.data.large import clean_large  # noqa: E402


def _log(path, rows=3000, seed=0):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "uid": [f"u{u}" for u in rng.integers(0, 60, rows)],
        "iid": [f"i{i}" for i in rng.integers(0, 80, rows)],
        "type": rng.choice(["View", "cart ", "buy", ""], rows),
        "stars": rng.integers(0, 7, rows).astype(str),
        "ts": (1_600_000_000 + rng.integers(0, 10_000, rows)).astype(str),
    })  # fmt: skip
    df.loc[rng.choice(rows, 20, replace=False), "ts"] = "n/a"
    df.loc[rng.choice(rows, 10, replace=False), "ts"] = "2021-03-04T05:06:07Z"
    df.loc[rng.choice(rows, 15, replace=False), "uid"] = " "
    df.loc[rng.choice(rows, 5, replace=False), "stars"] = ""
    df = pd.concat([df, df.sample(100, random_state=seed)], ignore_index=True)  # exact duplicates
    df.to_csv(path, index=False)


@pytest.mark.parametrize("min_core", [None, 5])
def test_out_of_core_cleaning_matches_the_in_memory_path(tmp_path, min_core):
    src = tmp_path / "log.csv"
    _log(src)
    columns = "user=uid,item=iid,event=type,value=stars,timestamp=ts"
    data = load_dataset(src, "csv", columns=columns, value_range=(1, 5), min_core=min_core)
    mem = data.reports[0]
    report = clean_large(src, tmp_path / "clean.parquet", columns, value_range=(1, 5), min_core=min_core,
                         memory_limit="256MB", threads=2)  # fmt: skip
    assert (report.rows_in, report.rows_out) == (mem.rows_in, mem.rows_out)
    assert [(d.reason, d.count, d.rows) for d in report.drops] == [(d.reason, d.count, d.rows) for d in mem.drops]
    assert {d.reason for d in report.drops} >= {"missing id", "bad timestamp", "value out of range", "duplicate"}
    out = pd.read_parquet(tmp_path / "clean.parquet")
    inter = data.interactions
    ours = pd.DataFrame({"user": out["user"], "item": out["item"], "event": out["event"],
                         "value": out["value"], "t": out["timestamp"]})  # fmt: skip
    theirs = pd.DataFrame({"user": data.user_ids[inter["user"]], "item": data.item_ids[inter["item"]],
                           "event": inter["event"].astype(str), "value": inter["value"], "t": inter["timestamp"]})  # fmt: skip
    key = ["user", "item", "event", "t", "value"]
    pd.testing.assert_frame_equal(
        ours.sort_values(key).reset_index(drop=True).astype({"value": float, "t": float}),
        theirs.sort_values(key).reset_index(drop=True).astype({"user": str, "item": str, "value": float, "t": float}),
        check_dtype=False,
    )


def test_a_parquet_log_reads_alike_in_both_paths_rows_from_1_and_flags_as_values(tmp_path):
    """Parquet has no header line: the report's rows count from 1, as in memory (they were one
    higher); a boolean value column is 1 and 0 (it was 'true' is not a number); a boolean
    timestamp is no time (it was 0 and 1 seconds in memory); and nothing left is an error in
    both (an empty Parquet was written)."""
    src = tmp_path / "log.parquet"
    pd.DataFrame({"user": ["u1", None, "u2", "u3"], "item": ["a", "b", "b", "a"],
                  "value": [True, False, True, False]}).to_parquet(src)  # fmt: skip
    mem = load_dataset(src, "parquet").reports[0]
    report = clean_large(src, tmp_path / "o.parquet")
    assert [(d.reason, d.rows) for d in report.drops] == [(d.reason, d.rows) for d in mem.drops] == [("missing id", [2])]
    assert pd.read_parquet(tmp_path / "o.parquet")["value"].tolist() == [1.0, 1.0, 0.0]
    pd.DataFrame({"user": ["u1", "u2"], "item": ["a", "b"], "timestamp": [True, False]}).to_parquet(src)
    (tmp_path / "o.parquet").unlink()
    refused_by_both_paths(src, r"log\.parquet: no valid rows left after cleaning \(dropped 2 \(bad timestamp\), e\.g\. rows 1, 2\)")


def test_errors_name_the_file_line_and_column(tmp_path):
    src = tmp_path / "bad.csv"
    src.write_text("user,item,value\nu1,i1,5\nu2,i2,five\n")
    with pytest.raises(DataError, match=r"bad.csv: row 3, column value \('value'\): 'five' is not a number"):
        clean_large(src, tmp_path / "o.parquet")
    assert not (tmp_path / "o.parquet").exists()
    with pytest.raises(DataError, match="missing column item"):
        clean_large(src, tmp_path / "o.parquet", "user=user,item=product")
    ms = tmp_path / "ms.csv"
    ms.write_text("user,item,ts\nu1,i1,1733390000\nu2,i2,1733390000123\nu3,i3,1733390000456\n")
    with pytest.raises(DataError, match=r"ms.csv: row 3, column timestamp \('ts'\): 1733390000123 is after the "
                                        r"year 9999 as unix seconds \(milliseconds\? read them with --time-unit ms"
                                        r".*\(2 such rows\)"):
        clean_large(ms, tmp_path / "o.parquet", "user=user,item=item,timestamp=ts")
    assert not (tmp_path / "o.parquet").exists()
    ms.write_text("user,item,ts\nu1,i1,1733390000000\nu2,i2,1733390000123\nu3,i3,2024-12-05T00:00:00Z\n")
    clean_large(ms, tmp_path / "o.parquet", "user=user,item=item,timestamp=ts", time_unit="ms")
    got = pd.read_parquet(tmp_path / "o.parquet")["timestamp"].tolist()
    assert got == [1733390000.0, 1733390000.123, 1733356800.0]  # as the in-memory reader reads them
    empty = tmp_path / "empty.csv"
    empty.write_text("user,item\n")
    with pytest.raises(DataError, match="no rows"):
        clean_large(empty, tmp_path / "o.parquet")


def test_a_column_the_mapping_does_not_read_is_said(tmp_path, caplog):
    src = tmp_path / "log.csv"
    src.write_text("user,item,rating\nu1,i1,5\nu2,i2,4\n")
    clean_large(src, tmp_path / "o.parquet")
    assert "log.csv: column(s) not read: rating" in caplog.text


def test_a_partial_mapping_keeps_the_canonical_columns_as_the_in_memory_reader_does(tmp_path):
    src = tmp_path / "log.csv"
    src.write_text("user,item,ts,stars\nu1,i1,100,5\nu2,i2,200,4\n")
    report = clean_large(src, tmp_path / "o.parquet", "timestamp=ts,value=stars")  # was "missing column user"
    out = pd.read_parquet(tmp_path / "o.parquet")
    mem = load_dataset(src, "csv", columns="timestamp=ts,value=stars")
    assert report.rows_out == 2 == len(mem.interactions)
    assert out["user"].tolist() == ["u1", "u2"] and out["timestamp"].tolist() == [100.0, 200.0]
    assert out["value"].tolist() == [5.0, 4.0]


def test_the_log_itself_or_a_file_that_is_not_parquet_is_never_written_over(tmp_path):
    """``--out`` naming the log replaced the CSV with its own Parquet, and any other file was
    replaced without a word; an earlier Parquet output still is (a rerun)."""
    src = tmp_path / "log.csv"
    src.write_text("user,item\nu1,i1\n")
    with pytest.raises(DataError, match="log.csv: is the log being cleaned; give another file to write"):
        clean_large(src, tmp_path / "." / "log.csv")
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    with pytest.raises(DataError, match="notes.txt: exists and is not a Parquet file"):
        clean_large(src, notes)
    assert src.read_text() == "user,item\nu1,i1\n" and notes.read_text() == "mine"
    clean_large(src, tmp_path / "o.parquet")
    clean_large(src, tmp_path / "o.parquet")  # a rerun replaces its own output
    assert pd.read_parquet(tmp_path / "o.parquet")["user"].tolist() == ["u1"]
    with pytest.raises(DataError, match="o.parquet: is the log being cleaned"):
        clean_large(tmp_path / "o.parquet", tmp_path / "o.parquet")


def test_an_output_that_is_a_directory_is_refused_and_nothing_is_left_behind(tmp_path):
    src = tmp_path / "log.csv"
    src.write_text("user,item\nu1,i1\n")
    (tmp_path / "out").mkdir()
    with pytest.raises(DataError, match="out: is a directory; give the Parquet file to write"):
        clean_large(src, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.csv", "out"]  # was a stray .out.partial


@pytest.mark.parametrize(
    "text, row, fields, header",
    [
        ("user,item\nu1,i1,x\nu2,i2\n", 2, 3, 2),  # DuckDB's sniffer read such a file as one column
        ("user,item\nu1,i1\nu2,i2\nu3,i3,x\n", 4, 3, 2),  # ... or took line 4 as the header, no rows
        ("user,item\n" + "u1,i1\n" * 30000 + "u2,i2,x\n", 30002, 3, 2),  # past the sniffer's sample
    ],
)
def test_a_line_longer_than_the_header_is_named_as_the_in_memory_reader_names_it(tmp_path, text, row, fields, header):
    src = tmp_path / "log.csv"
    src.write_text(text)
    refused_by_both_paths(src, rf"log\.csv: row {row} has {fields} fields where the header names {header}")


@pytest.mark.parametrize("text, message", [
    (None, r"exports: is a directory, not a data file; give the file itself"),  # a DuckDB traceback
    ("", r"exports: the file is empty"),  # "missing column user"
    ("user,item\n", r"exports: the file has a header but no rows"),  # "no rows to read (the file is empty)"
])
def test_a_directory_an_empty_file_or_a_header_alone_is_named_alike_by_both_paths(tmp_path, text, message):
    src = tmp_path / "exports"
    src.mkdir() if text is None else src.write_text(text)
    refused_by_both_paths(src, message)


def refused_by_both_paths(src, message):
    """The in-memory reader and ``clean_large`` refuse ``src`` with one message, and nothing is
    written."""
    with pytest.raises(DataError, match=message):
        load_dataset(src, "csv")
    with pytest.raises(DataError, match=message):
        clean_large(src, src.parent / "o.parquet")
    assert not (src.parent / "o.parquet").exists()


@pytest.mark.parametrize("name, text", [("log.csv", "user,item,user\nu1,i1,u9\n"), ("log.tsv", "user\titem\tuser\nu1\ti1\tu9\n")])
def test_a_column_read_that_the_header_names_twice_is_refused_by_both_paths(tmp_path, name, text):
    """pandas read the first as the users and the second as 'user.1', DuckDB as 'user_1': the
    users were one of two columns, said only as a column not read."""
    src = tmp_path / name
    src.write_text(text)
    refused_by_both_paths(src, rf"{name}: the header names column 'user' 2 times \(columns 1 and 3\); rename all but one")
    src.write_text(text.replace("user", "note").replace("note", "user", 1))  # a repeat of a column not read
    assert load_dataset(src, "csv").n_users == 1
    assert clean_large(src, tmp_path / "o.parquet") is not None


def test_empty_fields_at_the_end_of_each_data_line_are_read_alike_by_both_paths(tmp_path):
    src = tmp_path / "log.csv"
    src.write_text("user,item,stars\nu1,i1,5,\nu2,i1,4,\nu2,i2,3,\n")
    clean_large(src, tmp_path / "o.parquet", "value=stars")
    out = pd.read_parquet(tmp_path / "o.parquet")
    mem = load_dataset(src, "csv", columns="value=stars")
    assert out["user"].tolist() == ["u1", "u2", "u2"] and out["value"].tolist() == [5.0, 4.0, 3.0]
    assert sorted(mem.interactions["value"].tolist()) == [3.0, 4.0, 5.0] and sorted(mem.user_ids) == ["u1", "u2"]


def test_a_file_that_is_not_utf8_names_its_first_bad_row(tmp_path):
    src = tmp_path / "log.csv"
    src.write_bytes(b"user,item\nu,i\n" + "u,café\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"log\.csv: row 3 is not UTF-8 \(bytes e9\)"):
        clean_large(src, tmp_path / "o.parquet")


def test_user_and_item_from_one_column_is_refused_as_in_memory(tmp_path):
    from metarec.errors import ConfigError

    src = tmp_path / "log.csv"
    src.write_text("user,item\nu1,i1\n")
    with pytest.raises(ConfigError, match="column mapping: user and item both read column 'user'"):
        clean_large(src, tmp_path / "o.parquet", "item=user")
