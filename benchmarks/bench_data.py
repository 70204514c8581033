"""Reading and cleaning a 1M-interaction CSV: metarec's vectorised path vs a plain Python loop.

Run: ``python benchmarks/bench_data.py [--rows 1000000]``. Prints a table; the ratio of the
two paths in the same run is the number to look at (the machine is shared and noisy).
The log has string ids, four event types, ISO and unix timestamps, duplicates and bad rows.
"""

from __future__ import annotations

import argparse
import csv
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from metarec.data import load_dataset


def write_log(path: Path, rows: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    users = rng.integers(0, rows // 20, rows)
    items = (rng.pareto(1.2, rows) * 50).astype(int) % (rows // 10)
    events = np.array(["view", "cart", "purchase", "rating"])[rng.choice(4, rows, p=[0.7, 0.15, 0.1, 0.05])]
    ts = 1_600_000_000 + rng.integers(0, 86400 * 90, rows)
    df = pd.DataFrame(
        {"user": np.char.add("user-", users.astype(str)), "item": np.char.add("B0", items.astype(str)),
         "event": events, "value": rng.integers(1, 6, rows), "timestamp": ts.astype(str)}
    )  # fmt: skip
    bad = rng.choice(rows, rows // 1000, replace=False)
    df.loc[bad, "timestamp"] = "n/a"
    df = pd.concat([df, df.sample(rows // 100, random_state=seed)], ignore_index=True)
    df.to_csv(path, index=False)


def python_loop(path: Path) -> int:
    """The same cleaning written as a row loop: parse, validate, de-duplicate, index."""
    seen, users, items, kept = set(), {}, {}, []
    with open(path, newline="") as f:
        reader = csv.reader(f)
        next(reader)
        for user, item, event, value, ts in reader:
            if not user or not item:
                continue
            try:
                t = float(ts)
            except ValueError:
                continue
            v = float(value)
            key = (user, item, event, t)
            if key in seen:
                continue
            seen.add(key)
            kept.append((users.setdefault(user, len(users)), items.setdefault(item, len(items)), event, v, t))
    return len(kept)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "log.csv"
        write_log(path, args.rows)
        size = path.stat().st_size / 2**20
        t = time.perf_counter()
        data = load_dataset(path, "csv")
        ours = time.perf_counter() - t
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        t = time.perf_counter()
        n_loop = python_loop(path)
        loop = time.perf_counter() - t
    rows_in = data.reports[0].rows_in
    print(f"input: {rows_in:,} rows, {size:.0f} MiB CSV; kept {data.n_interactions:,} (loop kept {n_loop:,})")
    print(f"{'path':<28}{'seconds':>10}{'rows/s':>14}{'vs loop':>10}")
    print(f"{'metarec load_dataset (csv)':<28}{ours:>10.2f}{rows_in / ours:>14,.0f}{loop / ours:>9.1f}x")
    print(f"{'python row loop':<28}{loop:>10.2f}{rows_in / loop:>14,.0f}{1:>9.1f}x")
    print(f"peak RSS after metarec path: {peak:,.0f} MiB")
    for line in data.reports[0].lines():
        print(line)


if __name__ == "__main__":
    main()
