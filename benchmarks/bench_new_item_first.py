"""A user whose first click is a new item: how well does the next list find their other items?

Run: ``python benchmarks/bench_new_item_first.py [--data DIR --format F] [--seed 42]``
(default: ``$METAREC_DATA/amazon-scientific``, ``recbole``; ``$METAREC_DATA`` defaults to
``../shared/datasets``).

Splits the data as the ``cold-item`` protocol does (``--seed``): the held-out items have no
training pairs, only their text. Each user with a held-out item gets one of them, drawn at
random, as their whole history (an item posted a moment ago, and clicked); their training
items are the positives, ranked among the items with training pairs. Prints NDCG@10 and
Recall@20 for ``--models`` (default ``hybrid,content-knn,pop``).
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
    from metarec.data.splits import cold_item
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
    split = cold_item(data, args.seed)
    qs = split.query_sets[0]
    hist = split.train.matrix()
    rng = np.random.default_rng(args.seed)
    users = qs.queries.users
    first = [int(rng.choice(qs.relevant[row].indices)) for row in range(len(users))]
    warm = np.flatnonzero(hist.getnnz(axis=0) > 0)
    rel = hist[users][:, warm]
    keep = rel.getnnz(axis=1) > 0
    q = Queries.from_histories([-1] * len(users), [[c] for c in first], data.n_items)
    table = Table(title=f"{data.name}: a new item as the whole history, cold-item split seed {args.seed}, "
                        f"{int(keep.sum())} users")  # fmt: skip
    for col in ("model", "NDCG@10", "Recall@20"):
        table.add_column(col, justify="right")
    for name in args.models.split(","):
        scorer = make_scorer(name).fit(split.train)
        top = top_k(scorer.score(q, warm), 20)
        hits = np.take_along_axis(rel.toarray().astype(bool), top, axis=1)
        m = ranking_metrics(hits[keep], np.asarray(rel.getnnz(axis=1))[keep], [10, 20])
        table.add_row(name, f"{m['NDCG@10'].mean():.4f}", f"{m['Recall@20'].mean():.4f}")
    Console().print(table)


if __name__ == "__main__":
    main()
