"""Out-of-core cleaning of a log larger than it should take in memory: rows/s and peak RSS.

Run: ``python benchmarks/bench_large.py [--rows 50000000] [--memory-limit 4GB]``. Writes a
synthetic Taobao-like CSV (string ids, four behaviours, unix times, 1% duplicate rows, 0.1%
bad timestamps) with DuckDB in a child process, then cleans it with
:func:`metarec.data.large.clean_large` in this process and prints a table: rows, seconds,
rows/s, the process's peak RSS (bar: within 8 GiB) and the cleaning report.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import tempfile
import time
from pathlib import Path


def write_log(path: Path, rows: int, seed: int = 0) -> None:
    """``rows`` events plus 1% exact duplicates, written by DuckDB (streamed, not in memory)."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET memory_limit = '2GB'")
    con.execute(f"SELECT setseed({seed / 1000})")
    dup = rows // 100
    con.execute(f"""
        COPY (
          WITH ev AS (
            SELECT i,
                   'u' || CAST(floor(random() * {max(rows // 100, 1)}) AS BIGINT) AS user_id,
                   'i' || CAST(floor(pow(random(), 3) * {max(rows // 20, 1)}) AS BIGINT) AS item_id,
                   CASE WHEN random() < 0.9 THEN 'pv' WHEN random() < 0.5 THEN 'cart'
                        WHEN random() < 0.5 THEN 'fav' ELSE 'buy' END AS behavior,
                   CASE WHEN random() < 0.001 THEN 'n/a'
                        ELSE CAST(1511539200 + CAST(floor(random() * 777600) AS BIGINT) AS VARCHAR) END AS ts
            FROM range({rows}) t(i)
          )
          SELECT user_id, item_id, behavior, ts FROM ev
          UNION ALL
          SELECT user_id, item_id, behavior, ts FROM ev WHERE i < {dup}
        ) TO '{path}' (HEADER, DELIMITER ',')
    """)
    con.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=50_000_000)
    ap.add_argument("--memory-limit", default="4GB", help="DuckDB's limit; it spills beyond it")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--dir", default=None, help="where the log and the output go (default: a temp dir)")
    args = ap.parse_args()

    from metarec.data.large import clean_large

    with tempfile.TemporaryDirectory(dir=args.dir, prefix="bench-large-") as tmp:
        log = Path(tmp) / "events.csv"
        t0 = time.perf_counter()
        p = mp.get_context("spawn").Process(target=write_log, args=(log, args.rows))
        p.start()
        p.join()
        gen = time.perf_counter() - t0
        size = log.stat().st_size
        t0 = time.perf_counter()
        report = clean_large(log, Path(tmp) / "clean.parquet", "user=user_id,item=item_id,event=behavior,timestamp=ts",
                             memory_limit=args.memory_limit, threads=args.threads, temp_dir=tmp)  # fmt: skip
        secs = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
        out_size = (Path(tmp) / "clean.parquet").stat().st_size
    print("| rows read | file | written in | cleaned in | rows/s | peak RSS | DuckDB memory limit | parquet out |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {report.rows_in:,} | {size / 2**30:.2f} GiB | {gen:.0f} s | {secs:.0f} s | {report.rows_in / secs:,.0f} "
          f"| {peak:.2f} GiB | {args.memory_limit} | {out_size / 2**30:.2f} GiB |")
    print()
    print("\n".join(report.lines()))


if __name__ == "__main__":
    main()
