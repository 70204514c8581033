"""Nearest neighbours: exact inner-product search with faiss against a matrix product and a
partial sort (what ``content_neighbours`` did before), on random unit vectors.

Run: ``python benchmarks/bench_neighbours.py [--items 5000,20000,50000] [--dim 384] [--k 50]``.
Every item queries its ``k + 1`` nearest (as the content models' neighbour tables do); the
table gives seconds for both, the speed-up, and whether both found the same neighbours
(share of rows whose neighbour sets agree; near-ties may swap an item at the boundary).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from rich.console import Console
from rich.table import Table

from metarec.ranking import nearest


def brute(base: np.ndarray, queries: np.ndarray, k: int, chunk: int = 2048) -> np.ndarray:
    out = []
    for s in range(0, len(queries), chunk):
        sim = queries[s : s + chunk] @ base.T
        out.append(np.argpartition(-sim, k - 1, axis=1)[:, :k])
    return np.vstack(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", default="5000,20000,50000")
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--k", type=int, default=50)
    args = ap.parse_args()
    table = Table(title=f"exact k={args.k} nearest of every item, dim {args.dim}")
    for col in ("items", "numpy s", "faiss s", "speed-up", "same neighbours"):
        table.add_column(col, justify="right")
    rng = np.random.default_rng(0)
    for n in (int(x) for x in args.items.split(",")):
        v = rng.standard_normal((n, args.dim)).astype(np.float32)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        t = time.perf_counter()
        a = brute(v, v, args.k + 1)
        t_np = time.perf_counter() - t
        t = time.perf_counter()
        _, b = nearest(v, v, args.k + 1)
        t_fa = time.perf_counter() - t
        same = np.mean([set(x) == set(y) for x, y in zip(a, b)])
        table.add_row(f"{n:,}", f"{t_np:.2f}", f"{t_fa:.2f}", f"{t_np / t_fa:.1f}×", f"{same:.4f}")
    Console().print(table)


if __name__ == "__main__":
    main()
