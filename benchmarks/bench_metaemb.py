"""MetaEmb on new items: the cold phase and the warm-up after an item's first events.

Run: ``python benchmarks/bench_metaemb.py --data ../shared/datasets/ml-100k --format movielens-100k
[--model meta] [--seeds 1,2,3] [--reveal 3]``.

On the ``cold-item`` split (a fifth of the items never seen in training) it fits ``--model``
once per seed with MetaEmb on, then ranks the held-out items for their users (NDCG@20 and
Recall@20 over the new items, as ``--protocol cold-item`` does) three ways:

- ``unknown``: every new item on the shared "unknown id" embedding (what the network does
  without MetaEmb: content and attributes only);
- ``generated``: MetaEmb's generated id embeddings (the cold phase);
- ``warm-up``: after each new item's first ``--reveal`` events (in time) were posted, one
  warm-up step on them (:meth:`MultiTaskScorer.warm_up`, what the service does on events).

The revealed pairs are left out of every phase's relevant items and ranking, so the three
rows rank the same pairs. Prints one row per phase and seed, then the means.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    import scipy.sparse as sp
    import torch

    from metarec.data import Queries, load_dataset
    from metarec.data.splits import QuerySet, make_split
    from metarec.evaluation.harness import evaluate_query_set
    from metarec.models import make_scorer

    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--format", required=True)
    ap.add_argument("--model", default="meta")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--reveal", type=int, default=3)
    args = ap.parse_args()

    data = load_dataset(args.data, args.format)
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        split = make_split(data, "cold-item", seed)
        (qs,) = split.query_sets
        t0 = time.perf_counter()
        m = make_scorer(args.model, metaemb=True, seed=seed).fit(split.train)
        fit_s = time.perf_counter() - t0
        # Each new item's first `reveal` events, in time.
        inter = data.interactions
        cold = np.zeros(data.n_items, dtype=bool)
        cold[qs.candidates] = True
        test = inter[cold[inter["item"].to_numpy()]].sort_values(["timestamp"], kind="stable")
        test = test.drop_duplicates(["user", "item"])
        first = test.groupby("item", sort=False).head(args.reveal)
        n = data.n_items
        revealed = sp.csr_matrix((np.ones(len(first)), (first["user"], first["item"])), shape=(data.n_users, n))
        shown = revealed[qs.queries.users]
        rel = qs.relevant - qs.relevant.multiply(shown > 0)
        hist = ((qs.queries.history + shown) > 0).astype(np.float32).tocsr()  # ranked by no phase
        query = QuerySet("cold-item", None, Queries(qs.queries.users, hist), sp.csr_matrix(rel), candidates=qs.candidates)

        net = m.nets_[0]
        generated = net.item_id.weight.detach().clone()
        own = net.own.clone()
        with torch.no_grad():
            net.own[:] = False
        results = {"unknown": evaluate_query_set(m, query, (20,), seed)[0]}
        with torch.no_grad():
            net.own.copy_(own)
        results["generated"] = evaluate_query_set(m, query, (20,), seed)[0]
        train_hist = split.train.matrix()
        for item, g in first.groupby("item"):
            users = g["user"].to_numpy()
            m.warm_up(int(item), Queries(users, train_hist[users]))
        results["warm-up"] = evaluate_query_set(m, query, (20,), seed)[0]
        with torch.no_grad():
            net.item_id.weight.copy_(generated)
        for phase, r in results.items():
            rows.append((seed, phase, r["NDCG@20"], r["Recall@20"]))
            print(f"seed {seed}  {phase:<10} NDCG@20 {r['NDCG@20']:.4f}  Recall@20 {r['Recall@20']:.4f}  (fit {fit_s:.0f} s)",
                  flush=True)  # fmt: skip

    print(f"\n{args.model} on {data.name} cold-item, {args.reveal} events revealed per new item (mean over seeds)")
    print(f"{'phase':<10} {'NDCG@20':>8} {'Recall@20':>10}")
    for phase in ("unknown", "generated", "warm-up"):
        sel = [r for r in rows if r[1] == phase]
        print(f"{phase:<10} {np.mean([r[2] for r in sel]):>8.4f} {np.mean([r[3] for r in sel]):>10.4f}")


if __name__ == "__main__":
    main()
