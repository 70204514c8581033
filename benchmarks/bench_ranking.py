"""One user's top items from a large catalogue, as serving ranks them (ties broken by
popularity): the whole row partitioned, against the row first cut to the items at or above a
sampled threshold (``metarec.ranking.top_k``), and the matrix product that makes the row.

Run: ``python benchmarks/bench_ranking.py [--items 10000,100000,1000000] [--factors 64] [--n 10]``.
Scores are a factor model's (random user and item factors, float32); popularity is a long
tail. The table gives the median milliseconds per user over ``--repeats`` users for each
step and whether both selections gave the same list.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from rich.console import Console
from rich.table import Table

from metarec.ranking import _top_k_exact, top_k


def median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times)) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", default="10000,100000,1000000")
    ap.add_argument("--factors", type=int, default=64)
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=30)
    args = ap.parse_args()
    table = Table(title=f"top {args.n} for one user, ties by popularity (median ms of {args.repeats})")
    for col in ("items", "scores (u @ V.T)", "whole row", "cut row", "speed-up", "same list"):
        table.add_column(col, justify="right")
    rng = np.random.default_rng(0)
    for m in (int(x) for x in args.items.split(",")):
        v = (rng.standard_normal((m, args.factors)) * 0.1).astype(np.float32)
        users = (rng.standard_normal((args.repeats + 1, args.factors))).astype(np.float32)
        pop = np.floor(1e4 / (1 + np.arange(m)) ** 0.8)[rng.permutation(m)]  # long tail, many ties
        rows = iter(range(10**9))

        def score() -> np.ndarray:
            return users[next(rows) % len(users)] @ v.T

        s_ms = median_ms(score, args.repeats)
        row = score()
        whole = median_ms(lambda: _top_k_exact(np.where(np.isnan(row), -np.inf, row), args.n, pop), args.repeats)
        cut = median_ms(lambda: top_k(row[None, :], args.n, pop), args.repeats)
        same = all(
            np.array_equal(top_k(r[None, :], args.n, pop)[0], _top_k_exact(r.copy(), args.n, pop))
            for r in (u @ v.T for u in users[:10])
        )
        table.add_row(f"{m:,}", f"{s_ms:.2f}", f"{whole:.2f}", f"{cut:.2f}", f"{whole / cut:.1f}x", str(same))
    Console().print(table)


if __name__ == "__main__":
    main()
