"""The evaluation harness: every model, same split, same metrics, same run.

For each seed the protocol's split is made once; every model is trained on its training set
and asked every query set. Scores are taken over the full candidate list, seen items are
removed, ties are broken by a seeded random order (so a scorer that returns the same score
everywhere is ranked at random, not by item index), and metrics are averaged per user.
Results over several seeds are the mean of the per-seed means, with their spread.
"""

from __future__ import annotations

import dataclasses
import itertools
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
from metarec.data.queries import Queries
from metarec.data.splits import QuerySet, Split, make_split
from metarec.data.tasks import task_labels
from metarec.errors import ConfigError, DataError
from metarec.evaluation.metrics import (
    auc,
    coverage,
    log_loss,
    mae,
    ranking_metrics,
    rmse,
)
from metarec.models.base import Scorer
from metarec.models.registry import make_scorer
from metarec.ranking import top_k_explore

log = logging.getLogger(__name__)

DEFAULT_CUTOFFS = (5, 10, 20)
#: Sampled non-interacted items per held-out pair in pointwise task metrics.
DEFAULT_NEGATIVES = 4
#: Score matrices are built a batch of users at a time, about this many cells at most.
BATCH_CELLS = 32_000_000


@dataclass
class Results:
    """Machine-readable results: one row per (model, segment, support, metric).

    Row keys: ``model``, ``segment``, ``support`` (int or null), ``metric`` (e.g.
    ``NDCG@10``), ``value`` (mean over seeds of the per-user mean), ``std`` (standard
    deviation over seeds, null with a single seed), ``users`` (users averaged over, mean
    over seeds), and ``seeds``. ``details`` holds, per model, what a trained model says about
    itself (``Scorer.describe()``, e.g. an ensemble's weights), one entry per seed.
    ``configs`` holds, per model, the full config it was evaluated with (defaults included;
    its ``seed``, where it has one, is the first seed's: each seed's run sets its own).
    ``paired`` holds, with ``evaluate(versus=...)``, each model against that one, user by user
    (:func:`paired_rows`). ``explore_new``: the share of every first places of the ranked lists
    that items without training pairs held at least (``evaluate(explore_new=...)``; 0: none).
    """

    dataset: str
    protocol: str
    seeds: list[int]
    rows: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, dict[str, float]] = field(default_factory=dict)
    details: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)
    paired: list[dict[str, Any]] = field(default_factory=list)
    explore_new: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "protocol": self.protocol,
            "seeds": self.seeds,
            "rows": self.rows,
            "timings": self.timings,
            "details": self.details,
            "configs": self.configs,
            "paired": self.paired,
            "explore_new": self.explore_new,
        }

    def write(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1, default=str))

    @classmethod
    def read(cls, path: str | Path) -> Results:
        d = json.loads(Path(path).read_text())
        # JSON keys are strings: the seeds of ``per_seed`` come back as the ints they were written from.
        paired = [{**p, "per_seed": {int(k): v for k, v in p.get("per_seed", {}).items()}} for p in d.get("paired", [])]
        return cls(d["dataset"], d["protocol"], d.get("seeds", []), d["rows"], d.get("timings", {}),
                   d.get("details", {}), d.get("configs", {}), paired, d.get("explore_new", 0.0))  # fmt: skip

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


def _cannot(segment: str, support: int | None, who: str) -> str:
    """What models that ranked nothing in a query set could not do, for a warning."""
    if segment == "cold-item":
        return f"no cold-item candidate (items never seen in training, which {who} cannot score)"
    if support == 0:
        return f"nothing for users with no interactions ({who} need{'s' if who == 'it' else ''} a history)"
    return f"no {segment} candidate" + (f" at {support} interactions" if support is not None else "")


def evaluate_query_set(
    scorer: Scorer, qs: QuerySet, cutoffs: Sequence[int], seed: int
) -> tuple[dict[str, float], int]:
    """Mean of every ranking metric over the users of one query set, and the user count."""
    return _means(*query_set_per_user(scorer, qs, cutoffs, seed), qs, cutoffs)


def _means(
    per_user: dict[str, np.ndarray], shown: np.ndarray, qs: QuerySet, cutoffs: Sequence[int]
) -> tuple[dict[str, float], int]:
    """The means of :func:`query_set_per_user`'s metrics, the catalogue coverage of what was
    shown, and the user count."""
    users = len(shown)
    means = {k: float(v.sum()) / max(users, 1) for k, v in per_user.items()}
    if users:
        n_cand = qs.queries.history.shape[1] if qs.candidates is None else len(qs.candidates)
        for k in cutoffs:
            means[f"Coverage@{k}"] = coverage(shown[:, :k], n_cand)
    return means, users


def query_set_per_user(
    scorer: Scorer, qs: QuerySet, cutoffs: Sequence[int], seed: int, explore: tuple[np.ndarray, float] | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Every ranking metric of each query with a relevant item, in query order (the same users,
    in the same order, for every scorer: paired comparisons rest on that), and the items shown
    to them ``(users, max cutoff)``, ``-1`` where fewer could be scored. ``explore``: ``(is_new,
    share)``, the lists as :func:`~metarec.ranking.explore_new` makes them, items flagged in
    ``is_new`` holding at least ``share`` of every first places."""
    n_items = qs.queries.history.shape[1]
    cand = np.arange(n_items) if qs.candidates is None else np.asarray(qs.candidates)
    # A seeded permutation of the candidates breaks ties at random (argpartition is not stable).
    perm = np.random.default_rng(seed).permutation(len(cand))
    cand = cand[perm]
    kmax = max(cutoffs)
    parts: dict[str, list[np.ndarray]] = defaultdict(list)
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
        # (b, K), -1 for places no scorable item fills (unscorable items are not shown)
        top = top_k_explore(scores, kmax, *((explore[0][cand], explore[1]) if explore else ()))
        hits = np.take_along_axis(rel.toarray().astype(bool), np.maximum(top, 0), axis=1) & (top >= 0)
        for name, vals in ranking_metrics(hits[keep], n_rel[keep], cutoffs).items():
            parts[name].append(np.asarray(vals, dtype=np.float64))
        shown.append(np.where(top[keep] >= 0, cand[np.maximum(top[keep], 0)], -1))
    per_user = {k: np.concatenate(v) for k, v in parts.items()}
    return per_user, (np.concatenate(shown) if shown else np.empty((0, kmax), dtype=np.int64))


def paired_rows(
    per_user: dict[tuple[str, int, str, int | None, str], np.ndarray], versus: str
) -> list[dict[str, Any]]:
    """Each model against ``versus``, user by user: for every (segment, support, metric) the
    mean over seeds of the per-seed mean difference (``model − versus``), its standard error
    over the users (``se_users``: each seed's per-user standard error, combined as for a
    mean of independent seeds) and over the seeds (``se_seeds``, from the spread of the
    per-seed means; null with one seed), the seeds where the model is above, and the users
    above and below summed over seeds.

    ``per_user`` maps ``(model, seed, segment, support, metric)`` to each query's metric, in
    query order (:func:`query_set_per_user`).

    >>> pu = {("b", 1, "warm", None, "NDCG@10"): np.array([0.5, 0.2, 0.3]),
    ...       ("a", 1, "warm", None, "NDCG@10"): np.array([0.4, 0.2, 0.1])}
    >>> r = paired_rows(pu, "a")[0]
    >>> r["model"], r["versus"], round(r["diff"], 4), round(r["se_users"], 4), r["better"], r["worse"]
    ('b', 'a', 0.1, 0.0577, 2, 0)
    """
    groups: dict[tuple, dict[int, np.ndarray]] = defaultdict(dict)
    for (model, seed, segment, support, metric), values in per_user.items():
        if model == versus:
            continue
        base = per_user.get((versus, seed, segment, support, metric))
        if base is None or len(base) != len(values):
            continue
        groups[(model, segment, support, metric)][seed] = values - base
    rows = []
    for (model, segment, support, metric), by_seed in groups.items():
        means = np.array([d.mean() for d in by_seed.values()])
        ses = np.array([d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else np.nan for d in by_seed.values()])
        rows.append({
            "model": model, "versus": versus, "segment": segment, "support": support, "metric": metric,
            "diff": float(means.mean()),
            "se_users": float(np.sqrt((ses**2).sum()) / len(ses)),
            "se_seeds": float(means.std(ddof=1) / np.sqrt(len(means))) if len(means) > 1 else None,
            "seeds": len(means), "seeds_above": int((means > 0).sum()),
            "better": int(sum((d > 0).sum() for d in by_seed.values())),
            "worse": int(sum((d < 0).sum() for d in by_seed.values())),
            "per_seed": {int(k): float(v.mean()) for k, v in by_seed.items()},
        })  # fmt: skip
    return rows


def evaluate_tasks(scorer: Scorer, split: Split, seed: int, negatives: int = DEFAULT_NEGATIVES) -> list[dict[str, Any]]:
    """Pointwise metrics per task for a scorer that predicts tasks (``predict_tasks``).

    The examples are the held-out (user, item) pairs the user has no training pair with,
    labelled per task from their held-out events (a held-out pair without the task's event is
    a negative: viewed, not bought),
    plus ``negatives`` items per pair drawn uniformly from the catalogue among those the user
    has no pair with (in training or test); the user's training history is the context.
    Binary tasks give ``AUC[t]`` and ``LogLoss[t]``, regression tasks ``RMSE[t]`` and ``MAE[t]``
    over the held-out pairs that carry a value. Rows: ``{metric, value, users, positives}``.
    """
    if split.test is None or not len(split.test) or not hasattr(scorer, "predict_tasks") or split.protocol == "melu":
        return []  # (melu's held-out ratings are evaluated by evaluate_ratings)
    train, test = split.train, split.test
    n_items = train.n_items
    tr = train.pairs()
    train_keys = tr["user"].to_numpy(np.int64) * n_items + tr["item"].to_numpy(np.int64)
    # As in ranking, a held-out pair the user already has in training is not a prediction
    # about a new pair (a later purchase of an item viewed in training): it is left out.
    test = test[~np.isin(test["user"].to_numpy(np.int64) * n_items + test["item"].to_numpy(np.int64), train_keys)]
    pairs = test[["user", "item"]].drop_duplicates().sort_values(["user", "item"]).reset_index(drop=True)
    pu, pi = pairs["user"].to_numpy(np.int64), pairs["item"].to_numpy(np.int64)
    known = np.union1d(train_keys, pu * n_items + pi)
    rng = np.random.default_rng(seed)
    nu = np.repeat(pu, negatives)
    ni = rng.integers(0, n_items, len(nu))
    ok = ~np.isin(nu * n_items + ni, known)
    nu, ni = nu[ok], ni[ok]
    users = np.unique(pu)
    queries = Queries(users, train.matrix()[users])
    all_u, all_i = np.concatenate([pu, nu]), np.concatenate([pi, ni])
    preds = scorer.predict_tasks(queries, np.searchsorted(users, all_u), all_i)
    rows = []
    for task in scorer.tasks:
        lab = task_labels(test, task)
        key = lab["user"].to_numpy(np.int64) * n_items + lab["item"].to_numpy(np.int64)
        pos = np.searchsorted(pu * n_items + pi, key)  # pairs are sorted by (user, item)
        p = preds[task.name]
        if task.kind == "binary":
            y = np.zeros(len(all_u))
            y[pos] = 1.0
            metrics = {f"AUC[{task.name}]": auc(y, p), f"LogLoss[{task.name}]": log_loss(y, p)}
        else:
            y, q = lab["label"].to_numpy(), p[pos]
            metrics = {f"RMSE[{task.name}]": rmse(y, q), f"MAE[{task.name}]": mae(y, q)} if len(y) else {}
        for metric, value in metrics.items():
            rows.append({"metric": metric, "value": value, "users": len(users), "positives": len(key)})
    return rows


def rating_metrics(users: np.ndarray, y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """MAE, RMSE, and nDCG@1 / nDCG@3 of each user's items ordered by ``pred`` (gain
    ``2^r - 1``; ties in ``pred`` keep the given order), averaged over users.

    >>> m = rating_metrics(np.array([0, 0, 0]), np.array([5.0, 1.0, 3.0]), np.array([4.0, 2.0, 3.0]))
    >>> round(m["MAE"], 4), m["nDCG@1"], m["nDCG@3"]
    (0.6667, 1.0, 1.0)
    """
    out = {"MAE": mae(y, pred), "RMSE": rmse(y, pred)}
    order = np.lexsort((-pred, users))
    u_sorted = users[order]
    starts = np.flatnonzero(np.r_[True, u_sorted[1:] != u_sorted[:-1]])
    bounds = np.r_[starts, len(order)]
    for k in (1, 3):
        vals = []
        for a, b in itertools.pairwise(bounds):
            got = y[order[a:b]][:k]
            ideal = np.sort(y[order[a:b]])[::-1][:k]
            disc = 1.0 / np.log2(np.arange(2, len(got) + 2))
            idcg = float(((2.0**ideal - 1) * disc).sum())
            if idcg > 0:
                vals.append(float(((2.0**got - 1) * disc).sum()) / idcg)
        out[f"nDCG@{k}"] = float(np.mean(vals)) if vals else float("nan")
    return out


def evaluate_ratings(scorer: Scorer, qs: QuerySet, test: Any) -> dict[str, float]:
    """MeLU's metrics for a scorer with a regression task: each query rating predicted with
    the user adapted to (or folded in from) the support and its ratings."""
    reg = [t for t in getattr(scorer, "tasks", []) if t.kind == "regression"]
    if not reg or not hasattr(scorer, "predict_tasks"):
        return {}
    users = qs.queries.users
    rows = np.searchsorted(users, test["user"].to_numpy())
    pred = scorer.predict_tasks(qs.queries, rows, test["item"].to_numpy())[reg[0].name]
    return rating_metrics(rows, test["value"].to_numpy(np.float64), pred)


def reference_ratings(train: Dataset, qs: QuerySet, test: Any) -> dict[str, dict[str, float]]:
    """The plain predictors MeLU-style results are read against: the global mean rating, the
    item's mean (global mean for an unrated item), and the item's mean plus the user's mean
    offset from item means over the support ratings."""
    inter = train.interactions
    mu = float(inter["value"].mean())
    sums = np.bincount(inter["item"], weights=inter["value"], minlength=train.n_items)
    cnt = np.bincount(inter["item"], minlength=train.n_items)
    item_mean = np.where(cnt > 0, sums / np.maximum(cnt, 1), mu)
    v = qs.queries.values.tocoo()
    bias = np.bincount(v.row, weights=v.data - item_mean[v.col], minlength=len(qs)) / np.maximum(
        np.bincount(v.row, minlength=len(qs)), 1
    )
    rows = np.searchsorted(qs.queries.users, test["user"].to_numpy())
    items, y = test["item"].to_numpy(), test["value"].to_numpy(np.float64)
    return {
        "global-mean": rating_metrics(rows, y, np.full(len(y), mu)),
        "item-mean": rating_metrics(rows, y, item_mean[items]),
        "item-mean+user-bias": rating_metrics(rows, y, item_mean[items] + bias[rows]),
    }


def ensemble_params(models: Sequence[str], params: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``params`` with the ensemble's members defaulting to the other models evaluated, each
    member with the parameters its model is evaluated with (unless the ensemble sets them), so
    "above every member" compares like with like.

    >>> ensemble_params(["ease", "ials", "ensemble"], {"ials": {"factors": 128}})["ensemble"]
    {'members': 'ease,ials', 'ials.factors': 128}
    """
    others = [m for m in models if m != "ensemble"]
    if "ensemble" not in models or not others or "members" in params.get("ensemble", {}):
        return params
    ens = {"members": ",".join(others)}
    for m in others:
        ens.update({f"{m}.{k}": v for k, v in params.get(m, {}).items()})
    ens.update(params.get("ensemble", {}))
    return {**params, "ensemble": ens}


def check_run(models: Sequence[str], seeds: Sequence[int], cutoffs: Sequence[int], versus: str | None = None) -> None:
    """ConfigError for a run :func:`evaluate` cannot report truly: a model or seed given twice
    (the repeat was averaged in as another seed), a cutoff below 1 (a traceback), or a
    ``versus`` model that is not evaluated."""
    if versus is not None and versus not in models:
        raise ConfigError(f"versus: {versus!r} is not one of the models evaluated ({', '.join(models)})")
    for what, values in (("models", list(models)), ("seeds", list(seeds))):
        repeated = sorted({str(v) for v in values if values.count(v) > 1})
        if repeated:
            raise ConfigError(f"{what}: {', '.join(repeated)} given more than once")
    if not cutoffs or min(cutoffs) < 1:
        raise ConfigError(f"cutoffs: each must be at least 1, got {list(cutoffs)}")


def check_models(models: Sequence[str], params: dict[str, dict[str, Any]] | None = None) -> None:
    """ConfigError for a model name, parameter or ensemble member that :func:`evaluate` would
    refuse, found by making each scorer (nothing is trained): before the data is read, not
    after it."""
    params = ensemble_params(models, params or {})
    for name in models:
        make_scorer(name, **params.get(name, {}))


def evaluate(
    data: Dataset,
    protocol: str,
    models: Sequence[str],
    seeds: Sequence[int] = (42,),
    cutoffs: Sequence[int] = DEFAULT_CUTOFFS,
    params: dict[str, dict[str, Any]] | None = None,
    progress: Callable[[str], None] | None = None,
    negatives: int = DEFAULT_NEGATIVES,
    versus: str | None = None,
    explore_new: float = 0.0,
) -> Results:
    """Train and evaluate ``models`` on ``data`` under ``protocol`` for each seed.

    Args:
        models: registered model names (see :data:`metarec.models.MODELS`).
        params: per-model parameter overrides, ``{"ease": {"l2": 300}}``.
        progress: called with a short description after each model/seed step.
        negatives: sampled negatives per held-out pair in task metrics (:func:`evaluate_tasks`).
        versus: one of ``models``: every other model is compared with it user by user, on
            the same queries (``Results.paired``, :func:`paired_rows`).
        explore_new: where the whole catalogue is ranked, the items without training pairs
            hold at least this share of every first places of each list, as the service's
            ``explore_new`` gives them (:func:`metarec.ranking.explore_new`); 0: the lists as
            the scores rank them.

    An ``ensemble`` evaluated beside other models combines those models, with their
    parameters, unless its ``members`` are given (:func:`ensemble_params`); the models
    evaluated before it are offered to it (:meth:`~metarec.models.ensemble.EnsembleScorer.offer`),
    so its final members are those very models, not the same models trained a second time
    (its fit time is then its validation folds and the weights, not a second training).
    """
    check_run(models, seeds, cutoffs, versus)
    if not 0 <= explore_new <= 1:
        raise ConfigError(f"explore_new: a share from 0 to 1, not {explore_new!r}")
    params = ensemble_params(models, params or {})
    per_seed: dict[tuple, list[tuple[float, int]]] = defaultdict(list)
    timings: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    positives: dict[tuple, list[int]] = defaultdict(list)
    details: dict[str, list[dict[str, Any]]] = defaultdict(list)
    configs: dict[str, dict[str, Any]] = {}
    blind: dict[tuple[str, int | None], dict[str, None]] = defaultdict(dict)  # models that ranked nothing
    per_user: dict[tuple[str, int, str, int | None, str], np.ndarray] = {}  # with ``versus``
    for seed in seeds:
        split = make_split(data, protocol, seed)
        if not any(len(qs) if qs.segment == "melu" else qs.relevant.nnz for qs in split.query_sets):
            raise DataError(
                f"{data.name}: protocol {protocol!r} (seed {seed}) leaves no user a held-out item to find "
                f"({data.n_users} users, {data.n_interactions} interactions): too little data for it"
            )  # before, an empty results file and a report that failed on it
        for qs in split.query_sets:
            if qs.segment == "melu":
                for ref, means in reference_ratings(split.train, qs, split.test).items():
                    for metric, value in means.items():
                        per_seed[(ref, qs.segment, qs.support, metric)].append((value, len(qs)))
        new_items = split.train.matrix().getnnz(axis=0) == 0 if explore_new else None  # (the pairs cost a pass)
        fitted: dict[str, Any] = {}  # models fit before an ensemble, handed over to it once evaluated
        for j, name in enumerate(models):
            scorer = _with_seed(make_scorer(name, **params.get(name, {})), seed)
            configs.setdefault(name, dataclasses.asdict(scorer.config))
            if name == "ensemble":
                for other, fit in fitted.items():
                    scorer.offer(other, fit, split.train)
                fitted = {}
            t0 = time.perf_counter()
            scorer.fit(split.train)
            if "ensemble" in models[j + 1 :]:
                fitted[name] = scorer
            t1 = time.perf_counter()
            if hasattr(scorer, "describe"):
                details[name].append({"seed": seed, **scorer.describe()})
            for qs in split.query_sets:
                if qs.segment == "melu":
                    means, users = evaluate_ratings(scorer, qs, split.test), len(qs)
                else:
                    explore = (new_items, explore_new) if explore_new and qs.candidates is None else None
                    values, shown = query_set_per_user(scorer, qs, cutoffs, seed, explore)
                    means, users = _means(values, shown, qs, cutoffs)
                    if versus is not None:
                        per_user.update({(name, seed, qs.segment, qs.support, m): v for m, v in values.items()})
                    if users and means.get(f"Coverage@{max(cutoffs)}") == 0:
                        # Nothing shown to anyone: its zeros say what it cannot do, not how well it ranks.
                        blind[(qs.segment, qs.support)].setdefault(name)
                for metric, value in means.items():
                    per_seed[(name, qs.segment, qs.support, metric)].append((value, users))
            for row in evaluate_tasks(scorer, split, seed, negatives):
                per_seed[(name, "pointwise", None, row["metric"])].append((row["value"], row["users"]))
                positives[(name, row["metric"])].append(row["positives"])
            t2 = time.perf_counter()
            timings[name]["fit_s"] += (t1 - t0) / len(seeds)
            timings[name]["evaluate_s"] += (t2 - t1) / len(seeds)
            log.info("%s seed %d: fit %.1fs, evaluate %.1fs", name, seed, t1 - t0, t2 - t1)
            if progress:
                progress(f"{protocol}: {name} (seed {seed})")
    for (segment, support), names in blind.items():
        one = len(names) == 1
        which = segment if support is None else f"{segment} (n = {support})"
        log.warning("%s: %s %s, so %s rows are 0 by construction", ", ".join(names), "ranks" if one else "rank",
                    _cannot(segment, support, "it" if one else "they"), which)  # fmt: skip
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
        if segment == "pointwise":
            rows[-1]["positives"] = int(round(np.mean(positives[(model, metric)])))
            rows[-1]["negatives_per_pair"] = negatives
    return Results(
        dataset=data.name,
        protocol=protocol,
        seeds=list(seeds),
        rows=rows,
        timings={k: dict(v) for k, v in timings.items()},
        details=dict(details),
        configs=configs,
        paired=paired_rows(per_user, versus) if versus is not None else [],
        explore_new=float(explore_new),
    )
