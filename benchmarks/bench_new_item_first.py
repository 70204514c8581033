"""A user whose first click is a new item: how well does the next list find their other items?

Run: ``python benchmarks/bench_new_item_first.py [--data DIR --format F] [--seed 42]``
(default: ``$METAREC_DATA/amazon-scientific``, ``recbole``; ``$METAREC_DATA`` defaults to
``../shared/datasets``).

Holds out 20% of the items (they have no training pairs, only their text) and 20% of the
users (``--seed``), and trains on the rest. Each held-out user with a held-out item gets one
of them, drawn at random, as their whole history (an item posted a moment ago, and
clicked); their items with training pairs are the positives, ranked among all such items.
Neither the user nor the new item is in the training data, so no model has seen a positive
pair. Prints NDCG@10 and Recall@20 for ``--models`` (default ``hybrid,content-knn,pop``).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table


def main() -> None:
    from metarec.data import Queries, load_dataset
    from metarec.evaluation.metrics import ranking_metrics
    from metarec.models import make_scorer
    from metarec.ranking import top_k

    root = Path(os.environ.get("METAREC_DATA", "../shared/datasets"))
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(root / "amazon-scientific"))
    ap.add_argument("--format", default="recbole")
    ap.add_argument("--models", default="hybrid,content-knn,pop")
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()

    data = load_dataset(args.data, args.format)
    rng = np.random.default_rng(args.seed)
    inter = data.interactions
    items = np.flatnonzero(np.bincount(inter["item"], minlength=data.n_items) > 0)
    users = np.flatnonzero(np.bincount(inter["user"], minlength=data.n_users) > 0)
    new_item = np.zeros(data.n_items, dtype=bool)
    new_item[rng.permutation(items)[: round(len(items) * 0.2)]] = True
    new_user = np.zeros(data.n_users, dtype=bool)
    new_user[rng.permutation(users)[: round(len(users) * 0.2)]] = True
    held = new_item[inter["item"].to_numpy()] | new_user[inter["user"].to_numpy()]
    train = data.subset(~held)
    all_pairs = data.matrix()
    warm = np.flatnonzero(train.matrix().getnnz(axis=0) > 0)
    test, first = [], []
    for u in np.flatnonzero(new_user):
        cold = all_pairs[u].indices[new_item[all_pairs[u].indices]]
        if len(cold):
            test.append(u)
            first.append(int(rng.choice(cold)))
    rel = all_pairs[test][:, warm]
    keep = rel.getnnz(axis=1) > 0
    q = Queries.from_histories([-1] * len(test), [[c] for c in first], data.n_items)
    table = Table(title=f"{data.name}: a new user's first click is a new item (seed {args.seed}, "
                        f"{int(keep.sum())} users)")  # fmt: skip
    for col in ("model", "NDCG@10", "Recall@20"):
        table.add_column(col, justify="right")
    for name in args.models.split(","):
        scorer = make_scorer(name).fit(train)
        top = top_k(scorer.score(q, warm), 20)
        hits = np.take_along_axis(rel.toarray().astype(bool), top, axis=1)
        m = ranking_metrics(hits[keep], np.asarray(rel.getnnz(axis=1))[keep], [10, 20])
        table.add_row(name, f"{m['NDCG@10'].mean():.4f}", f"{m['Recall@20'].mean():.4f}")
    Console().print(table)


if __name__ == "__main__":
    main()
