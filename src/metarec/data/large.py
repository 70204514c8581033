"""Cleaning logs larger than memory, out of core with DuckDB.

:func:`clean_large` applies the rules of :func:`metarec.data.cleaning.clean_interactions`
(same order, same reasons, same report) to a CSV or Parquet log of any size and writes the
kept rows to Parquet. DuckDB streams the file, keeps its tables in an on-disk database and
spills what does not fit under ``memory_limit``, so memory stays bounded whatever the log's
size. Row numbers in the report are the file's line numbers (header = line 1; a Parquet
file's rows count from 1), as in the in-memory path.

The cleaned Parquet (``user``, ``item``, ``event``, ``value``, ``timestamp``, ``_row``) reads
back with ``--format parquet`` once it fits in memory, or goes on to other out-of-core work.
"""

from __future__ import annotations

import csv
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from metarec.data.cleaning import (
    DROP_REASONS,
    MAX_TIMESTAMP,
    READ_AS_MILLISECONDS,
    CleaningReport,
    nothing_left,
    time_unit_divisor,
    timestamp_too_late,
)
from metarec.data.readers import (
    CANONICAL,
    check_ids_apart,
    check_unrepeated,
    first_long_line,
    need_file,
    not_utf8,
    parse_mapping,
    repeated_names,
    too_many_fields,
    warn_unread,
)
from metarec.errors import ConfigError, DataError


def _is_parquet(path: Path) -> bool:
    """Whether ``path`` starts as a Parquet file does (``PAR1``), as one this module wrote."""
    with open(path, "rb") as fh:
        return fh.read(4) == b"PAR1"


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _csv_error(exc: Exception, path: Path) -> DataError:
    """DuckDB's error for a malformed CSV as the in-memory reader's: the row and its fields."""
    text = str(exc)
    if "not utf-8 encoded" in text.lower():
        bad = not_utf8(path)
        if bad is not None:
            return bad
    line = re.search(r"CSV Error on Line: (\d+)", text)
    count = re.search(r"Expected Number of Columns: (\d+) Found: (\d+)", text)
    if line and count:
        return too_many_fields(path.name, line[1], count[2], count[1])
    return DataError(f"{path.name}: cannot parse ({text.splitlines()[0]})")


def _one_column_error(path: Path, header: str) -> DataError | None:
    """Where DuckDB's sniffer read a CSV as one column whose name holds a separator: its lines
    do not agree on their fields (the sniffer gives up on the separator). Names the first line
    longer than the header, as the in-memory reader does; None where the name holds none."""
    sep = next((c for c in ",\t;|" if c in header), None)
    if sep is None:
        return None
    quoting = csv.QUOTE_NONE if sep == "\t" else csv.QUOTE_MINIMAL
    width = len(next(csv.reader([header], delimiter=sep, quoting=quoting)))
    long = first_long_line(path, sep, width, "utf-8", quoting)
    if long is not None:
        return too_many_fields(path.name, *long, width)
    return DataError(f"{path.name}: its lines do not agree on their fields "
                     f"(the header has {width}, separated by {sep!r})")  # fmt: skip


def clean_large(
    path: str | os.PathLike,
    out: str | os.PathLike,
    columns: str | dict[str, str] | None = None,
    *,
    default_event: str = "interaction",
    value_range: tuple[float, float] | None = None,
    min_core: int | None = None,
    time_unit: str = "s",
    memory_limit: str = "2GB",
    threads: int | None = None,
    temp_dir: str | os.PathLike | None = None,
) -> CleaningReport:
    """Clean the log at ``path`` (CSV with a header, or Parquet) into the Parquet file ``out``.

    Args:
        columns: mapping of canonical to source columns, e.g. ``user=userId,item=movieId``
            (default: the canonical names themselves, those present).
        default_event, value_range, min_core, time_unit: as in ``clean_interactions``.
        memory_limit: DuckDB's memory limit (it spills to ``temp_dir`` beyond it).
        threads: DuckDB threads (default: all cores).

    Raises:
        DataError: a missing file or column, an empty log, or a non-numeric value (naming
            the file, line and column).
    """
    import duckdb

    divisor = time_unit_divisor(time_unit)  # before any work: a bad unit names the choices
    path, out = Path(path), Path(out)
    need_file(path)  # a directory was a DuckDB traceback, an empty file "missing column user"
    if out.is_dir():  # it failed at the end, leaving its partial file beside the directory
        raise DataError(f"{out}: is a directory; give the Parquet file to write")
    if out.exists() and out.resolve() == path.resolve():  # the log was replaced by its own Parquet
        raise DataError(f"{out}: is the log being cleaned; give another file to write")
    if out.is_file() and not _is_parquet(out):  # replaced without a word before
        raise DataError(f"{out}: exists and is not a Parquet file; give another file to write, or remove it")
    source = path.name
    reader = "read_parquet" if path.suffix in (".parquet", ".pq") else "read_csv"
    # skip = 0: the header is line 1, as the row numbers say (DuckDB's sniffer otherwise takes a
    # later line as the header where an earlier one has other fields, and drops those above it).
    opts = "" if reader == "read_parquet" else ", header = true, all_varchar = true, skip = 0"
    scan = f"{reader}({_literal(str(path))}{opts})"
    with tempfile.TemporaryDirectory(dir=temp_dir, prefix="metarec-clean-") as tmp:
        con = duckdb.connect(str(Path(tmp) / "clean.duckdb"))
        try:
            con.execute(f"SET memory_limit = {_literal(memory_limit)}")
            con.execute(f"SET temp_directory = {_literal(str(Path(tmp) / 'spill'))}")
            con.execute("SET preserve_insertion_order = true")
            if threads:
                con.execute(f"SET threads = {int(threads)}")
            try:
                described = con.execute(f"DESCRIBE SELECT * FROM {scan}").fetchall()
                present = [r[0] for r in described]
            except duckdb.InvalidInputException as exc:
                raise _csv_error(exc, path) from exc
            if reader == "read_csv" and len(present) == 1:
                one = _one_column_error(path, present[0])
                if one is not None:
                    raise one
            # Canonical names default to themselves, as the in-memory reader has it: before,
            # ``--columns timestamp=ts`` lost the log's own ``user`` and ``item`` columns.
            given = parse_mapping(columns) if columns else {}
            mapping = {c: c for c in CANONICAL if c in present} | given
            for canon, src in mapping.items():
                if canon not in CANONICAL:
                    raise ConfigError(f"column mapping: {canon!r} is not one of {', '.join(CANONICAL)}")
                if src not in present:
                    raise DataError(f"{source}: missing column {canon} ({src!r}); columns are {', '.join(present)}")
            for need in ("user", "item"):
                if need not in mapping:
                    raise DataError(f"{source}: missing column {need}")
            check_ids_apart(mapping)
            if reader == "read_csv":  # DuckDB reads a repeated name as name_1: which one is meant?
                sniff = f"SELECT Delimiter FROM sniff_csv({_literal(str(path))}, header = true, skip = 0)"
                try:
                    (sep,) = con.execute(sniff).fetchone()
                except duckdb.Error:  # read above, so not expected; then the check is skipped
                    sep = None
                if sep:
                    with open(path, encoding="utf-8", errors="replace", newline="") as fh:
                        check_unrepeated(repeated_names(fh.readline(), sep), mapping.values(), source)
            warn_unread(source, present, mapping.values())
            try:
                flags = {r[0] for r in described if r[1] == "BOOLEAN"}  # a Parquet flag column: 1 and 0 as values
                return _clean(con, scan, source, mapping, out, default_event, value_range, min_core, divisor, flags)
            except duckdb.InvalidInputException as exc:  # a malformed line past the sniffer's sample
                raise _csv_error(exc, path) from exc
        finally:
            con.close()


def _clean(
    con: Any, scan: str, source: str, mapping: dict[str, str], out: Path, default_event: str,
    value_range: tuple[float, float] | None, min_core: int | None, divisor: float = 1.0,
    flags: frozenset[str] | set[str] = frozenset(),
) -> CleaningReport:  # fmt: skip
    parquet = scan.startswith("read_parquet")  # no header line; what a file without rows has
    col = {k: f"CAST({_quote(v)} AS VARCHAR)" for k, v in mapping.items()}
    if mapping.get("value") in flags:  # true and false as 1 and 0, as the in-memory reader reads them
        col["value"] = f"CAST(CAST({_quote(mapping['value'])} AS INTEGER) AS VARCHAR)"
    ev = f"lower(trim({col['event']}))" if "event" in col else "NULL"
    # Unix seconds, else an ISO-like date; NULL when neither parses.
    ts = (f"COALESCE(TRY_CAST(trim({col['timestamp']}) AS DOUBLE) / {divisor!r}, "
          f"epoch(TRY_CAST(trim({col['timestamp']}) AS TIMESTAMPTZ)))") if "timestamp" in col else "NULL"  # fmt: skip
    value = f"TRY_CAST(trim({col['value']}) AS DOUBLE)" if "value" in col else "1.0"
    raw_value = f"trim({col['value']})" if "value" in col else "NULL"
    con.execute(f"""
        CREATE TABLE typed AS
        SELECT row_number() OVER () + {0 if parquet else 1} AS _row,
               NULLIF(trim({col['user']}), '') AS "user",
               NULLIF(trim({col['item']}), '') AS item,
               COALESCE(NULLIF({ev}, ''), {_literal(default_event)}) AS event,
               {value} AS value, {raw_value} AS raw_value,
               {ts} AS "timestamp"
        FROM {scan}
    """)
    rows_in = con.execute("SELECT count(*) FROM typed").fetchone()[0]
    report = CleaningReport(source=source, rows_in=int(rows_in))
    if rows_in == 0:
        what = "no rows" if parquet else "a header but no rows"  # as the in-memory reader says
        raise DataError(f"{source}: the file has {what}")
    bad = con.execute(
        "SELECT _row, raw_value, count(*) OVER () FROM typed "
        "WHERE value IS NULL AND raw_value IS NOT NULL AND raw_value <> '' ORDER BY _row LIMIT 1"
    ).fetchone()
    if bad:
        raise DataError(f"{source}: row {bad[0]}, column value ({mapping['value']!r}): {bad[1]!r} is not a number "
                        f"({bad[2]} such rows)")  # fmt: skip
    late = con.execute(
        f'SELECT _row, "timestamp", count(*) OVER () FROM typed WHERE "timestamp" > {MAX_TIMESTAMP!r} ORDER BY _row LIMIT 1'
    ).fetchone()
    if late:
        raise DataError(f"{source}: row {late[0]}, column timestamp ({mapping['timestamp']!r}): "
                        f"{timestamp_too_late(late[1], READ_AS_MILLISECONDS)} ({late[2]} such rows)")  # fmt: skip
    # Each row's first failing rule, in clean_interactions' order; duplicates (the same user,
    # item, event and time as an earlier kept row) after the per-row rules.
    rules = ['WHEN "user" IS NULL OR item IS NULL THEN \'missing id\'']
    if "timestamp" in col:
        rules.append('WHEN "timestamp" IS NULL THEN \'bad timestamp\'')
    if value_range is not None:
        lo, hi = (float(x) for x in value_range)
        rules.append(f"WHEN COALESCE(value, 1.0) < {lo!r} OR COALESCE(value, 1.0) > {hi!r} THEN 'value out of range'")
    con.execute(f"""
        CREATE TABLE flagged AS
        SELECT _row, "user", item, event, COALESCE(value, 1.0) AS value, "timestamp",
               CASE {' '.join(rules)} ELSE NULL END AS reason
        FROM typed
    """)
    con.execute("DROP TABLE typed")
    con.execute("""
        CREATE TABLE firsts AS
        SELECT min(_row) AS _row FROM flagged WHERE reason IS NULL
        GROUP BY "user", item, event, "timestamp"
    """)
    con.execute("""
        UPDATE flagged SET reason = 'duplicate'
        WHERE reason IS NULL AND _row NOT IN (SELECT _row FROM firsts)
    """)
    if min_core and min_core > 1:
        _kcore(con, int(min_core))
    for reason, count, examples in con.execute("""
        SELECT reason, count(*), min(_row, 5) FROM flagged WHERE reason IS NOT NULL GROUP BY reason
    """).fetchall():
        report.drops.append(_drop(reason, count, sorted(examples)))
    report.drops.sort(key=lambda d: DROP_REASONS.index(d.reason))
    report.rows_out = report.rows_in - report.dropped
    if report.rows_out == 0:  # refused as in memory (an empty Parquet was written, and read back as an error)
        raise nothing_left(source, report)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_name(f".{out.name}.partial")
    try:
        con.execute(f"""
            COPY (SELECT "user", item, event, value, "timestamp", _row FROM flagged WHERE reason IS NULL ORDER BY _row)
            TO {_literal(str(tmp_out))} (FORMAT parquet)
        """)
        os.replace(tmp_out, out)  # readers never see a half-written file
    finally:
        tmp_out.unlink(missing_ok=True)  # left behind only where the write or the rename failed
    return report


def _drop(reason: str, count: int, rows: list[int]) -> Any:
    from metarec.data.cleaning import Drop

    return Drop(reason, int(count), [int(r) for r in rows])


def _kcore(con: Any, k: int) -> None:
    """Flag rows outside the k-core of distinct (user, item) pairs, iterating in SQL."""
    con.execute('CREATE TABLE pairs AS SELECT DISTINCT "user", item FROM flagged WHERE reason IS NULL')
    while True:
        before = con.execute("SELECT count(*) FROM pairs").fetchone()[0]
        con.execute(f"""
            DELETE FROM pairs WHERE "user" IN (SELECT "user" FROM pairs GROUP BY "user" HAVING count(*) < {k})
                                 OR item IN (SELECT item FROM pairs GROUP BY item HAVING count(*) < {k})
        """)
        if con.execute("SELECT count(*) FROM pairs").fetchone()[0] == before:
            break
    con.execute("""
        UPDATE flagged SET reason = 'k-core'
        WHERE reason IS NULL AND NOT EXISTS (
            SELECT 1 FROM pairs p WHERE p."user" = flagged."user" AND p.item = flagged.item)
    """)
