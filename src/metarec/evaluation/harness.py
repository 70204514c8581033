"""The evaluation harness: every model, same split, same metrics, same run.

For each seed the protocol's split is made once; every model is trained on its training set
and asked every query set. Scores are taken over the full candidate list, seen items are
removed, ties are broken by a seeded random order (so a scorer that returns the same score
everywhere is ranked at random, not by item index), and metrics are averaged per user.
Results over several seeds are the mean of the per-seed means, with their spread.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from metarec.data.dataset import Dataset
from metarec.data.splits import QuerySet, make_split
from metarec.evaluation.metrics import coverage, ranking_metrics
from metarec.models.base import Scorer
from metarec.models.registry import make_scorer
from metarec.ranking import top_k

log = logging.getLogger(__name__)

DEFAULT_CUTOFFS = (5, 10, 20)
#: Score matrices are built a batch of users at a time, about this many cells at most.
BATCH_CELLS = 32_000_000


@dataclass
class Results:
    """Machine-readable results: one row per (model, segment, support, metric).

    Row keys: ``model``, ``segment``, ``support`` (int or null), ``metric`` (e.g.
    ``NDCG@10``), ``value`` (mean over seeds of the per-user mean), ``std`` (standard
    deviation over seeds, null with a single seed), ``users`` (users averaged over, mean
    over seeds), and ``seeds``.
    """

    dataset: str
    protocol: str
    seeds: list[int]
    rows: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "protocol": self.protocol,
            "seeds": self.seeds,
            "rows": self.rows,
            "timings": self.timings,
        }

    def write(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def read(cls, path: str | Path) -> Results:
        d = json.loads(Path(path).read_text())
        return cls(d["dataset"], d["protocol"], d.get("seeds", []), d["rows"], d.get("timings", {}))

    def value(self, model: str, metric: str, segment: str | None = None, support: int | None = None) -> float:
        """The value of one row (first match); KeyError if absent."""
        for r in self.rows:
            if (
                r["model"] == model
                and r["metric"] == metric
                and (segment is None or r["segment"] == segment)
                and (support is None or r["support"] == support)
            ):
                return r["value"]
        raise KeyError((model, metric, segment, support))


def _with_seed(scorer: Scorer, seed: int) -> Scorer:
    names = {f.name for f in dataclasses.fields(scorer.config)}
    if "seed" in names:
        scorer.config = dataclasses.replace(scorer.config, seed=seed)
    return scorer


def evaluate_query_set(
    scorer: Scorer, qs: QuerySet, cutoffs: Sequence[int], seed: int
) -> tuple[dict[str, float], int]:
    """Mean of every ranking metric over the users of one query set, and the user count."""
    n_items = qs.queries.history.shape[1]
    cand = np.arange(n_items) if qs.candidates is None else np.asarray(qs.candidates)
    # A seeded permutation of the candidates breaks ties at random (argpartition is not stable).
    perm = np.random.default_rng(seed).permutation(len(cand))
    cand = cand[perm]
    kmax = max(cutoffs)
    sums: dict[str, float] = defaultdict(float)
    users = 0
    shown: list[np.ndarray] = []
    batch = int(np.clip(BATCH_CELLS // max(n_items, 1), 16, 2048))
    for start in range(0, len(qs), batch):
        q = qs.queries[start : start + batch]
        rel = qs.relevant[start : start + batch][:, cand]  # (b, C)
        n_rel = np.asarray(rel.getnnz(axis=1))
        keep = n_rel > 0
        if not keep.any():
            continue
        scores = scorer.score(q, cand)  # (b, C)
        seen = q.history[:, cand].nonzero()
        scores[seen] = np.nan
        top = top_k(scores, kmax)  # (b, K)
        ranked_scores = np.take_along_axis(scores, top, axis=1)
        top = np.where(np.isnan(ranked_scores), -1, top)  # unscorable items are not shown
        hits = np.take_along_axis(rel.toarray().astype(bool), np.maximum(top, 0), axis=1) & (top >= 0)
        for name, vals in ranking_metrics(hits[keep], n_rel[keep], cutoffs).items():
            sums[name] += float(vals.sum())
        users += int(keep.sum())
        shown.append(np.where(top[keep] >= 0, cand[np.maximum(top[keep], 0)], -1))
    means = {k: v / max(users, 1) for k, v in sums.items()}
    if shown:
        all_top = np.concatenate(shown)
        for k in cutoffs:
            means[f"Coverage@{k}"] = coverage(all_top[:, :k], len(cand))
    return means, users


def evaluate(
    data: Dataset,
    protocol: str,
    models: Sequence[str],
    seeds: Sequence[int] = (42,),
    cutoffs: Sequence[int] = DEFAULT_CUTOFFS,
    params: dict[str, dict[str, Any]] | None = None,
    progress: Callable[[str], None] | None = None,
) -> Results:
    """Train and evaluate ``models`` on ``data`` under ``protocol`` for each seed.

    Args:
        models: registered model names (see :data:`metarec.models.MODELS`).
        params: per-model parameter overrides, ``{"ease": {"l2": 300}}``.
        progress: called with a short description after each model/seed step.
    """
    params = params or {}
    per_seed: dict[tuple, list[tuple[float, int]]] = defaultdict(list)
    timings: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for seed in seeds:
        split = make_split(data, protocol, seed)
        for name in models:
            scorer = _with_seed(make_scorer(name, **params.get(name, {})), seed)
            t0 = time.perf_counter()
            scorer.fit(split.train)
            t1 = time.perf_counter()
            for qs in split.query_sets:
                means, users = evaluate_query_set(scorer, qs, cutoffs, seed)
                for metric, value in means.items():
                    per_seed[(name, qs.segment, qs.support, metric)].append((value, users))
            t2 = time.perf_counter()
            timings[name]["fit_s"] += (t1 - t0) / len(seeds)
            timings[name]["evaluate_s"] += (t2 - t1) / len(seeds)
            log.info("%s seed %d: fit %.1fs, evaluate %.1fs", name, seed, t1 - t0, t2 - t1)
            if progress:
                progress(f"{protocol}: {name} (seed {seed})")
    rows = []
    for (model, segment, support, metric), vals in per_seed.items():
        v = np.array([x for x, _ in vals])
        rows.append(
            {
                "model": model,
                "segment": segment,
                "support": support,
                "metric": metric,
                "value": float(v.mean()),
                "std": float(v.std(ddof=1)) if len(v) > 1 else None,
                "users": int(round(np.mean([n for _, n in vals]))),
                "seeds": len(v),
            }
        )
    return Results(
        dataset=data.name,
        protocol=protocol,
        seeds=list(seeds),
        rows=rows,
        timings={k: dict(v) for k, v in timings.items()},
    )
