"""Meta-training time and request-time adaptation latency of ``meta`` (and ``finetune``).

Run: ``python benchmarks/bench_meta.py [--data ../shared/datasets/ml-100k --format movielens-100k]``.

1. Meta-training: fits ``meta`` on the data set (default: the synthetic world) and prints the
   seconds spent pretraining the multi-task network and meta-training it.
2. Adaptation: on a synthetic catalogue of ``--items`` items (default 10,000), a new user
   with a ``--history``-event history (default 20) is adapted and the whole catalogue scored,
   as the service does on every event; prints p50/p99 over ``--repeats`` requests, with one
   torch thread per request (the service runs one request per worker process).
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    import torch

    from metarec.data import Queries, load_dataset
    from metarec.data.synthetic import WorldConfig, make_world
    from metarec.models import make_scorer

    ap = argparse.ArgumentParser()
    ap.add_argument("--data")
    ap.add_argument("--format")
    ap.add_argument("--items", type=int, default=10_000)
    ap.add_argument("--history", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=200)
    args = ap.parse_args()

    data = load_dataset(args.data, args.format) if args.data else make_world(WorldConfig(n_users=1000, n_items=2000))
    t = time.perf_counter()
    m = make_scorer("meta").fit(data)
    total = time.perf_counter() - t
    pre = sum(h.get("seconds", 0.0) for r in m.training_ for h in r.history)
    meta = sum(h.get("seconds", 0.0) for h in m.meta_training_.history)
    print(f"{data.name}: meta fit {total:.1f} s (pretraining epochs {pre:.1f} s, meta-training epochs {meta:.1f} s, "
          f"best meta epoch {m.meta_training_.best_epoch})")  # fmt: skip

    world = make_world(WorldConfig(n_users=2000, n_items=args.items, views_per_user=20, seed=1))
    print(f"catalogue: {world.n_items} items ({world.n_interactions} events, {world.name})")
    rng = np.random.default_rng(0)
    torch.set_num_threads(1)
    print(f"{'model':<10}{'p50 ms':>9}{'p99 ms':>9}   (history {args.history}, whole catalogue scored)")
    for name in ("finetune", "meta"):
        s = make_scorer(name, encoder="hashing-64", epochs=2, meta_epochs=1).fit(world)
        lat = []
        for _ in range(args.repeats):
            items = rng.choice(world.n_items, args.history, replace=False)
            q = Queries.from_histories([-1], [items.tolist()], world.n_items)
            t = time.perf_counter()
            s.recommend(q, n=10)
            lat.append((time.perf_counter() - t) * 1000)
        lat = np.array(lat[5:])  # warm-up
        print(f"{name:<10}{np.percentile(lat, 50):>9.1f}{np.percentile(lat, 99):>9.1f}")


if __name__ == "__main__":
    main()
