"""Evaluation splits: who trains on what, who is asked what, and what counts as a hit.

Each protocol turns a :class:`~metarec.data.Dataset` and a seed into a :class:`Split`: a
training subset (same vocabularies) and one or more :class:`QuerySet` s, each a segment
(``warm``, ``cold-user``, ``cold-item``) at a support size. Ranking protocols treat each
distinct (user, item) pair as one positive, whatever its events; all events of a pair go
to the same side of a split, so nothing about a test pair leaks into training.

Protocols:

- ``holdout``: per user, a seeded random 75% of pairs train and the rest test.
- ``temporal``: a global time cut; the last 20% of events by time are the test set.
- ``leave-last``: each user's last interaction by time is the test (in these three, the
  test pairs on items without training pairs are also asked on their own, ranked in the
  whole catalogue: segment ``cold-item``).
- ``cold-user``: 80/20 users; each held-out user's first ``n`` pairs (by time) are the
  support, given at query time and never trained on, the rest the query; users with fewer
  than ``n + 5`` pairs sit out that ``n``.
- ``cold-item``: 80/20 items; each user with pairs on held-out items ranks all held-out items.
- ``melu``: MeLU's new-user protocol (Lee et al. KDD 2019): users with 13 to 100 rated
  items, 80/20 existing/new users; a new user's query is 10 random rated items and the
  support the rest, given with its ratings. Evaluated pointwise (MAE, RMSE, nDCG@1 and
  nDCG@3 within the query, gain ``2^r - 1``), not by catalogue ranking.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from metarec.data.dataset import Dataset, pair_matrix
from metarec.data.queries import Queries
from metarec.errors import ConfigError, DataError

PROTOCOLS = ("holdout", "temporal", "leave-last", "cold-user", "cold-item", "melu")
COLD_USER_SUPPORTS = (1, 3, 5, 10, 20)
#: History-length segments ``(lowest, highest)`` (``None``: no limit): users with no history,
#: a handful of interactions, some, and many.
HISTORY_SEGMENTS: tuple[tuple[int, int | None], ...] = ((0, 0), (1, 5), (6, 20), (21, None))


def segment_names(segments: Sequence[tuple[int, int | None]] = HISTORY_SEGMENTS) -> list[str]:
    """``["0", "1-5", "6-20", ">20"]``."""
    return [str(lo) if lo == hi else f">{lo - 1}" if hi is None else f"{lo}-{hi}" for lo, hi in segments]


def history_segment(lengths: np.ndarray, segments: Sequence[tuple[int, int | None]] = HISTORY_SEGMENTS) -> np.ndarray:
    """The segment index of each history length.

    >>> history_segment(np.array([0, 1, 5, 6, 20, 21, 500])).tolist()
    [0, 1, 1, 2, 2, 3, 3]
    """
    lows = np.array([lo for lo, _ in segments])
    return np.searchsorted(lows, np.asarray(lengths), side="right") - 1


@dataclass
class QuerySet:
    """Queries of one segment at one support size.

    Attributes:
        segment: ``warm``, ``cold-user`` or ``cold-item``.
        support: interactions given at query time for cold users (``None`` elsewhere).
        queries: users and their histories (seen items, excluded from the ranking).
        relevant: ``(n, n_items)`` binary CSR of the test positives.
        candidates: item indices ranked (``None`` = the whole catalogue).
    """

    segment: str
    support: int | None
    queries: Queries
    relevant: sp.csr_matrix
    candidates: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.queries)


@dataclass
class Split:
    """A training set and the query sets it is evaluated on.

    ``test`` holds the held-out interactions themselves (events and values), for pointwise
    task metrics, where the protocol holds out whole events (holdout, temporal, leave-last).
    """

    protocol: str
    seed: int
    train: Dataset
    query_sets: list[QuerySet]
    test: pd.DataFrame | None = None


def _pair_keys(users: np.ndarray, items: np.ndarray, n_items: int) -> np.ndarray:
    return users.astype(np.int64) * n_items + items.astype(np.int64)


def _train_without_pairs(data: Dataset, users: np.ndarray, items: np.ndarray) -> tuple[Dataset, pd.DataFrame]:
    """``data`` minus every event of the given (user, item) pairs, and those events."""
    inter = data.interactions
    keys = _pair_keys(inter["user"].to_numpy(), inter["item"].to_numpy(), data.n_items)
    drop = np.isin(keys, _pair_keys(users, items, data.n_items))
    return data.subset(~drop), inter.loc[drop].reset_index(drop=True)


def _warm_queries(
    train: Dataset, users: np.ndarray, items: np.ndarray, segment_cold: bool = True
) -> list[QuerySet]:
    """Query sets for test pairs: history = the user's training pairs.

    Test pairs already in the user's training history are removed (seen items are not
    ranked, so they could never be hit). Users with no training history form the
    ``cold-user`` segment at support 0. Where test pairs fall on items without training
    pairs (released after a time cut, or only ever taken by test pairs), the users with a
    history who took them are asked again, for those pairs alone, ranking the whole
    catalogue as before: the ``cold-item`` segment, which says whether new items reach a
    list among the known ones (the ``warm`` segment holds those pairs too, as before).
    """
    hist = train.matrix()
    rel = pair_matrix(users, items, train.n_users, train.n_items)
    rel = rel - rel.multiply(hist)
    rel.eliminate_zeros()
    rel = sp.csr_matrix(rel)
    test_users = np.flatnonzero(rel.getnnz(axis=1) > 0)
    has_hist = hist.getnnz(axis=1)[test_users] > 0
    out = []
    for segment, support, mask in (("warm", None, has_hist), ("cold-user", 0, ~has_hist)):
        u = test_users[mask]
        if len(u) and (segment == "warm" or segment_cold):
            out.append(QuerySet(segment, support, Queries(u, hist[u]), rel[u]))
    new_items = hist.getnnz(axis=0) == 0
    if new_items[rel.indices].any():
        rel_new = sp.csr_matrix(rel @ sp.diags(new_items.astype(rel.dtype)))
        rel_new.eliminate_zeros()
        u = test_users[has_hist]
        u = u[rel_new.getnnz(axis=1)[u] > 0]
        if len(u):
            out.append(QuerySet("cold-item", None, Queries(u, hist[u]), rel_new[u]))
    return out


def holdout(data: Dataset, seed: int, test_fraction: float = 0.25) -> Split:
    """Per user, a seeded random ``1 - test_fraction`` of pairs train, the rest test."""
    pairs = data.pairs()
    rng = np.random.default_rng(seed)
    pairs["key"] = rng.random(len(pairs))
    pairs["rank"] = pairs.groupby("user")["key"].rank(method="first").astype(int)
    n = pairs.groupby("user")["user"].transform("size")
    n_train = np.floor(n * (1 - test_fraction) + 0.5).astype(int)
    test = pairs[pairs["rank"] > n_train]
    u, i = test["user"].to_numpy(), test["item"].to_numpy()
    train, held_out = _train_without_pairs(data, u, i)
    return Split("holdout", seed, train, _warm_queries(train, u, i), held_out)


def _require_time(data: Dataset, protocol: str) -> None:
    if not data.has_time:
        raise DataError(f"protocol {protocol!r} needs timestamps; data set {data.name!r} has none")


def temporal(data: Dataset, seed: int, test_fraction: float = 0.2) -> Split:
    """A global time cut: the last ``test_fraction`` of events by time are the test set."""
    _require_time(data, "temporal")
    inter = data.interactions
    order = np.argsort(inter["timestamp"].to_numpy(), kind="stable")
    n_test = int(np.ceil(len(order) * test_fraction))
    is_test = np.zeros(len(order), dtype=bool)
    is_test[order[len(order) - n_test :]] = True
    train = data.subset(~is_test)
    test = inter.loc[is_test]
    return Split(
        "temporal", seed, train,
        _warm_queries(train, test["user"].to_numpy(), test["item"].to_numpy()), test.reset_index(drop=True),
    )  # fmt: skip


def ordered_pairs(data: Dataset) -> pd.DataFrame:
    """Distinct pairs in time order within each user (first event of the pair; ties by log order)."""
    inter = data.interactions
    df = pd.DataFrame(
        {"user": inter["user"], "item": inter["item"], "t": inter["timestamp"], "seq": np.arange(len(inter))}
    )
    if not data.has_time:
        df["t"] = 0.0
    first = df.sort_values(["user", "t", "seq"], kind="stable").drop_duplicates(["user", "item"])
    return first.reset_index(drop=True)


def leave_last(data: Dataset, seed: int) -> Split:
    """Each user's last interaction by time (all events of that pair) is the test."""
    _require_time(data, "leave-last")
    inter = data.interactions
    df = pd.DataFrame(
        {"user": inter["user"], "item": inter["item"], "t": inter["timestamp"], "seq": np.arange(len(inter))}
    )
    last = df.sort_values(["user", "t", "seq"], kind="stable").drop_duplicates("user", keep="last")
    n_items = df.groupby("user")["item"].nunique()
    last = last[last["user"].map(n_items).to_numpy() >= 2]  # someone to learn from
    u, i = last["user"].to_numpy(), last["item"].to_numpy()
    train, held_out = _train_without_pairs(data, u, i)
    return Split("leave-last", seed, train, _warm_queries(train, u, i), held_out)


def cold_user(
    data: Dataset,
    seed: int,
    supports: Sequence[int] = COLD_USER_SUPPORTS,
    test_fraction: float = 0.2,
    min_query: int = 5,
) -> Split:
    """Users split 80/20; a held-out user's first ``n`` pairs are the support, the rest the query."""
    users = np.flatnonzero(np.bincount(data.interactions["user"], minlength=data.n_users) > 0)
    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(users)
    n_test = int(round(len(users) * test_fraction))
    test_users = np.sort(shuffled[:n_test])
    is_test_user = np.zeros(data.n_users, dtype=bool)
    is_test_user[test_users] = True
    train = data.subset(~is_test_user[data.interactions["user"].to_numpy()])

    pairs = ordered_pairs(data)
    pairs = pairs[is_test_user[pairs["user"].to_numpy()]]
    pairs["pos"] = pairs.groupby("user").cumcount()
    counts = pairs.groupby("user").size()
    sets = []
    for n in supports:
        eligible = counts.index[counts >= n + min_query].to_numpy()
        p = pairs[pairs["user"].isin(eligible)]
        sup, qry = p[p["pos"] < n], p[p["pos"] >= n]
        # Rows follow `eligible` order: map user -> row.
        row = pd.Series(np.arange(len(eligible)), index=eligible)
        hist = pair_matrix(row[sup["user"]].to_numpy(), sup["item"].to_numpy(), len(eligible), data.n_items)
        rel = pair_matrix(row[qry["user"]].to_numpy(), qry["item"].to_numpy(), len(eligible), data.n_items)
        sets.append(QuerySet("cold-user", int(n), Queries(eligible, hist), rel))
    return Split("cold-user", seed, train, sets)


def cold_item(data: Dataset, seed: int, test_fraction: float = 0.2) -> Split:
    """Items split 80/20; users rank all held-out items, which have no training interaction."""
    items = np.flatnonzero(np.bincount(data.interactions["item"], minlength=data.n_items) > 0)
    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(items)
    cold = np.sort(shuffled[: int(round(len(items) * test_fraction))])
    is_cold = np.zeros(data.n_items, dtype=bool)
    is_cold[cold] = True
    inter_cold = is_cold[data.interactions["item"].to_numpy()]
    train = data.subset(~inter_cold)
    test = data.interactions.loc[inter_cold]
    rel = pair_matrix(test["user"].to_numpy(), test["item"].to_numpy(), data.n_users, data.n_items)
    users = np.flatnonzero(rel.getnnz(axis=1) > 0)
    hist = train.matrix()
    qs = QuerySet("cold-item", None, Queries(users, hist[users]), rel[users], candidates=cold)
    return Split("cold-item", seed, train, [qs])


def melu(data: Dataset, seed: int, min_items: int = 13, max_items: int = 100, query: int = 10,
         new_fraction: float = 0.2) -> Split:  # fmt: skip
    """MeLU's new-user split: one ``melu`` query set whose queries carry the support ratings;
    ``test`` holds the query ratings (one row per pair, the mean value)."""
    inter = data.interactions
    rated = inter.groupby(["user", "item"], observed=True)["value"].mean().rename("value").reset_index()
    if rated["value"].nunique() < 2:  # implicit data: every metric was perfect by construction (MAE 0, nDCG 1)
        raise DataError(f"protocol 'melu' evaluates predicted ratings, and every pair of {data.name!r} has the value "
                        f"{rated['value'].iloc[0]:g}: there is nothing to predict; use a rated data set")  # fmt: skip
    counts = rated.groupby("user").size()
    eligible = np.sort(counts.index[(counts >= min_items) & (counts <= max_items)].to_numpy())
    if len(eligible) == 0:
        raise DataError(f"protocol 'melu': no user of {data.name!r} has {min_items} to {max_items} rated items")
    rng = np.random.default_rng(seed)
    new = np.sort(rng.permutation(eligible)[: int(round(len(eligible) * new_fraction))])
    is_new = np.zeros(data.n_users, dtype=bool)
    is_new[new] = True
    train = data.subset(~is_new[inter["user"].to_numpy()])
    r = rated[is_new[rated["user"].to_numpy()]].copy()
    r["key"] = rng.random(len(r))
    r["rank"] = r.groupby("user")["key"].rank(method="first")
    qry, sup = r[r["rank"] <= query], r[r["rank"] > query]
    row = pd.Series(np.arange(len(new)), index=new)
    shape = (len(new), data.n_items)
    su, si = row[sup["user"]].to_numpy(), sup["item"].to_numpy()
    hist = pair_matrix(su, si, *shape)
    values = sp.csr_matrix((sup["value"].to_numpy(np.float32), (su, si)), shape=shape)
    rel = pair_matrix(row[qry["user"]].to_numpy(), qry["item"].to_numpy(), *shape)
    qs = QuerySet("melu", None, Queries(new, hist, values), rel)
    return Split("melu", seed, train, [qs], qry[["user", "item", "value"]].reset_index(drop=True))


def validation(
    data: Dataset,
    seed: int,
    users: float = 0.5,
    new_users: float = 0.3,
    holdout_share: float = 0.25,
    min_query: int = 3,
    segments: Sequence[tuple[int, int | None]] = HISTORY_SEGMENTS,
) -> Split:
    """A validation split carved from (training) data, for what is fit above the models,
    such as ensemble weights, never on the test.

    Of the users with at least ``min_query + 1`` pairs, a seeded ``users`` share are
    validation users. ``new_users`` of them leave training entirely and come back as new users
    (segment ``cold-user``): each is asked once per history-length segment its pairs can fill,
    with a history of its first ``n`` pairs (by time when there are timestamps), ``n`` drawn
    within the segment, and the rest of its pairs relevant. The other validation users (segment ``warm``) lose
    a random ``holdout_share`` of their pairs (at least one), which are relevant; their history
    is the rest. ``support`` is ``None``: the history lengths vary per query.
    """
    pairs = ordered_pairs(data)
    counts = pairs.groupby("user").size()
    eligible = np.sort(counts.index[counts > min_query].to_numpy())
    rng = np.random.default_rng(seed)
    chosen = rng.permutation(eligible)[: int(round(len(eligible) * users))]
    n_new = int(round(len(chosen) * new_users))
    new, warm = np.sort(chosen[:n_new]), np.sort(chosen[n_new:])
    shape_warm = (len(warm), data.n_items)
    pairs["pos"] = pairs.groupby("user").cumcount()

    # New users: one query per history-length segment the user can fill (a support size
    # drawn in the segment; the rest of the user's pairs are relevant), so every segment
    # gets as many new users as can fill it.
    c = counts.loc[new].to_numpy()
    q_user, q_size = [], []
    for j, cnt in enumerate(c):
        room = cnt - min_query
        for lo, hi in segments:
            if lo <= room:
                q_user.append(j)
                q_size.append(int(rng.integers(lo, (room if hi is None else min(hi, room)) + 1)))
    q_user, q_size = np.asarray(q_user, dtype=np.int64), np.asarray(q_size, dtype=np.int64)
    p = pairs[pairs["user"].isin(new)]
    pos = p["pos"].to_numpy()
    r = pd.Series(np.arange(len(new)), index=new)[p["user"]].to_numpy()
    # Expand the pairs to every query row of their user.
    starts = np.searchsorted(q_user, np.arange(len(new)))
    per_user = np.bincount(q_user, minlength=len(new))
    rep = per_user[r]
    pair_idx = np.repeat(np.arange(len(p)), rep)
    offsets = np.arange(int(rep.sum())) - np.repeat(np.cumsum(rep) - rep, rep)
    rows = np.repeat(starts[r], rep) + offsets  # the pair's k-th copy goes to its user's k-th query
    items = p["item"].to_numpy()[pair_idx]
    in_support = pos[pair_idx] < q_size[rows]
    shape_new = (len(q_user), data.n_items)
    hist_new = pair_matrix(rows[in_support], items[in_support], *shape_new)
    rel_new = pair_matrix(rows[~in_support], items[~in_support], *shape_new)

    # Warm users: a random share of their pairs held out.
    p = pairs[pairs["user"].isin(warm)].copy()
    p["key"] = rng.random(len(p))
    p["rank"] = p.groupby("user")["key"].rank(method="first")
    n_out = np.maximum(np.floor(p.groupby("user")["user"].transform("size") * holdout_share + 0.5), 1)
    out = p[p["rank"] <= n_out]
    keep_event = ~np.isin(data.interactions["user"].to_numpy(), new)
    train, _ = _train_without_pairs(data.subset(keep_event), out["user"].to_numpy(), out["item"].to_numpy())
    hist = train.matrix()
    row = pd.Series(np.arange(len(warm)), index=warm)
    rel_warm = pair_matrix(row[out["user"]].to_numpy(), out["item"].to_numpy(), *shape_warm)
    sets = [
        QuerySet("cold-user", None, Queries(new[q_user], hist_new), rel_new),
        QuerySet("warm", None, Queries(warm, hist[warm]), rel_warm),
    ]
    return Split("validation", seed, train, [qs for qs in sets if len(qs)])


def make_split(data: Dataset, protocol: str, seed: int) -> Split:
    """The split of ``data`` under ``protocol`` (one of :data:`PROTOCOLS`) for ``seed``."""
    funcs = {
        "holdout": holdout,
        "temporal": temporal,
        "leave-last": leave_last,
        "cold-user": cold_user,
        "cold-item": cold_item,
        "melu": melu,
    }
    if protocol not in funcs:
        raise ConfigError(f"unknown protocol {protocol!r}; choose from: {', '.join(PROTOCOLS)}")
    return funcs[protocol](data, seed)
