"""Scale-out on a local Ray cluster: data-parallel training and batch encoding.

Run: ``python benchmarks/bench_distributed.py [--data D --format F] [--model multitask]``.

1. Training: the model trained single-process with three seeds, and by two Ray Train workers
   (torch DDP, one thread each) — NDCG@10 on the ``holdout`` split (seed 42) of each, and
   seconds. The bar: the two-worker NDCG@10 within the spread of the three single-process
   seeds.
2. Encoding: the data set's item texts encoded with no cache by the local encoder (torch's
   default threads), and by one and by two Ray Data actors (one thread each); items/s and
   the two-to-one ratio.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

os.environ.setdefault("RAY_AUTH_MODE", "disabled")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.path.join(os.environ.get("METAREC_DATA", "../shared/datasets"), "ml-100k"))
    ap.add_argument("--format", default="movielens-100k")
    ap.add_argument("--model", default="multitask")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--skip-encode", action="store_true")
    args = ap.parse_args()

    from metarec.data import load_dataset
    from metarec.data.splits import make_split
    from metarec.distributed import RayEncoder, ensure_ray, fit_distributed
    from metarec.encoders import ContentConfig
    from metarec.encoders.content import item_texts, make_encoder
    from metarec.evaluation.harness import evaluate_query_set
    from metarec.models import make_scorer

    data = load_dataset(args.data, args.format)
    ensure_ray(args.workers)
    if not args.skip_train:
        split = make_split(data, "holdout", 42)
        warm = next(qs for qs in split.query_sets if qs.segment == "warm")
        rows = []
        for seed in (1, 2, 3):
            t = time.perf_counter()
            s = make_scorer(args.model, seed=seed).fit(split.train)
            secs = time.perf_counter() - t
            rows.append((f"single process, seed {seed}", evaluate_query_set(s, warm, (10,), 42)[0]["NDCG@10"], secs))
        t = time.perf_counter()
        s = fit_distributed(args.model, {"seed": 1}, split.train, workers=args.workers)
        secs = time.perf_counter() - t
        rows.append((f"{args.workers} Ray Train workers (DDP), seed 1", evaluate_query_set(s, warm, (10,), 42)[0]["NDCG@10"], secs))
        single = np.array([r[1] for r in rows[:3]])
        print(f"\n{args.model} on {data.name} holdout (seed 42):\n")
        print("| training | NDCG@10 | seconds |\n|---|---|---|")
        for name, ndcg, secs in rows:
            print(f"| {name} | {ndcg:.4f} | {secs:.0f} |")
        inside = single.min() <= rows[-1][1] <= single.max()
        print(f"\nsingle-process spread {single.min():.4f}–{single.max():.4f}; distributed "
              f"{'inside' if inside else 'outside'} it (mean ± sd {single.mean():.4f} ± {single.std(ddof=1):.4f})")
    if not args.skip_encode:
        texts = item_texts(data, None)
        config = ContentConfig(cache_dir="none")
        timings = []
        t = time.perf_counter()
        local = make_encoder(config).encode(texts)
        timings.append(("local encoder (torch default threads)", time.perf_counter() - t))
        for w in (1, args.workers):
            t = time.perf_counter()
            vecs = RayEncoder(config, w).encode(texts)
            timings.append((f"Ray Data, {w} actor(s)", time.perf_counter() - t))
            assert np.allclose(vecs, local, atol=1e-4), "distributed vectors differ"
        print(f"\nencoding {len(texts)} item texts of {data.name} (no cache):\n")
        print("| encoder | seconds | items/s |\n|---|---|---|")
        for name, secs in timings:
            print(f"| {name} | {secs:.1f} | {len(texts) / secs:.0f} |")
        print(f"\n{args.workers} actors vs 1: {timings[1][1] / timings[2][1]:.2f}x faster")


if __name__ == "__main__":
    main()
