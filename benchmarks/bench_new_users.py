"""New users' first lists over HTTP, with and without ``PUT /users`` attributes.

Run: ``python benchmarks/bench_new_users.py [--model multitask] [--seed 1]`` (reads
``$METAREC_DATA/ml-100k``, default ``../shared/datasets``).

Splits MovieLens-100K as the ``cold-user`` protocol does (seed ``--seed``), trains
``--model`` on the training users, starts ``metarec serve`` on it, and asks for each
held-out user's top 10 at 0, 1 and 3 events (the user's first events by time, posted to
``/events``) three ways: as the evaluation harness scores them (the data set's attributes,
model-side), over HTTP after ``PUT /users/{id}`` with those attributes, and over HTTP as an
anonymous user (no attributes). Prints NDCG@10 against the user's other items, and the share
of HTTP lists equal to the harness's.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    import httpx

    from metarec.data import load_dataset
    from metarec.data.splits import cold_user
    from metarec.evaluation.metrics import ndcg
    from metarec.models import make_scorer
    from metarec.models.io import save_model

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="multitask")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--port", type=int, default=8765)
    args = ap.parse_args()
    root = Path(os.environ.get("METAREC_DATA", "../shared/datasets")) / "ml-100k"
    if not root.exists():
        sys.exit(f"{root} not found: set METAREC_DATA to the folder holding ml-100k")

    data = load_dataset(root, "movielens-100k")
    split = cold_user(data, args.seed, supports=(0, 1, 3))
    work = Path(tempfile.mkdtemp(prefix="metarec-bench-"))
    t = time.perf_counter()
    model = make_scorer(args.model).fit(split.train)
    save_model(model, split.train, work / "model")
    print(f"trained {args.model} in {time.perf_counter() - t:.0f} s", flush=True)

    def score(lists: list[list[int]], relevant) -> float:
        rel = relevant.toarray().astype(bool)
        hits = np.zeros((len(lists), 10), dtype=bool)
        for r, row in enumerate(lists):
            hits[r, : len(row)] = rel[r, row]
        return float(ndcg(hits, rel.sum(axis=1), 10).mean())

    position = {str(v): i for i, v in enumerate(data.item_ids)}
    server = subprocess.Popen(
        [sys.executable, "-m", "metarec.cli", "serve", "--model", str(work / "model"),
         "--store", f"sqlite:///{work / 'events.db'}", "--port", str(args.port)],
        env={**os.environ, "METAREC_API_KEY": "bench"}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    rows = []
    try:
        client = httpx.Client(base_url=f"http://127.0.0.1:{args.port}", timeout=60, headers={"X-API-Key": "bench"})
        for _ in range(300):
            try:
                if client.get("/health/ready").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        else:
            sys.exit("the service did not start")
        for qs in split.query_sets:
            q = qs.queries
            top, _ = model.recommend(q, n=10)
            harness = [[int(i) for i in row if i >= 0] for row in top]
            served: dict[str, list[list[int]]] = {"put": [], "anonymous": []}
            for r, u in enumerate(q.users):
                attributes = {k: (None if v != v else getattr(v, "item", lambda v=v: v)()) for k, v in data.users.iloc[u].items()}
                support = [str(data.item_ids[i]) for i in q.history[r].indices]
                for how, lists in served.items():
                    user = f"{how}{qs.support}-{data.user_ids[u]}"
                    if how == "put":
                        client.put(f"/users/{user}", json={"attributes": attributes}).raise_for_status()
                    if support:
                        events = [{"user_id": user, "item_id": i, "type": "rated", "value": 4.0} for i in support]
                        client.post("/events", json={"events": events}).raise_for_status()
                    got = client.get(f"/users/{user}/recommendations", params={"n": 10}).json()["items"]
                    lists.append([position[x["id"]] for x in got])
            same = np.mean([a == b for a, b in zip(served["put"], harness, strict=True)])
            rows.append((qs.support, len(q), score(harness, qs.relevant), score(served["put"], qs.relevant),
                         score(served["anonymous"], qs.relevant), same))  # fmt: skip
    finally:
        server.terminate()
        server.wait()
    print(f"\n{args.model}, MovieLens-100K cold-user seed {args.seed}, NDCG@10")
    print("| events | users | harness | HTTP, PUT /users | HTTP, anonymous | HTTP lists = harness |")
    print("|---|---|---|---|---|---|")
    for n, users, h, p, a, same in rows:
        print(f"| {n} | {users} | {h:.4f} | {p:.4f} | {a:.4f} | {same:.3f} |")


if __name__ == "__main__":
    main()
