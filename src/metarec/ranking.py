"""Top-k selection shared by scorers, evaluation and serving, and exact nearest neighbours
by inner product (faiss)."""

from __future__ import annotations

import numpy as np


def top_k(scores: np.ndarray, k: int, tiebreak: np.ndarray | None = None) -> np.ndarray:
    """Column indices of the ``k`` highest scores per row, best first; NaN ranks last.

    Args:
        scores: ``(n, m)`` float array (not modified).
        k: how many to keep (clipped to ``m``).
        tiebreak: ``(m,)``, higher first among equal scores (e.g. the items' popularity, so
            that a model with nothing to say about a user, such as EASE for a user with no
            history, falls back to the most popular items); ``None``: ties in no set order.

    Returns:
        ``(n, min(k, m))`` int64 indices.

    >>> top_k(np.array([[0.1, np.nan, 0.7, 0.3]]), 2).tolist()
    [[2, 3]]
    >>> top_k(np.array([[0.0, 0.0, 0.5, 0.0]]), 3, tiebreak=np.array([1, 9, 0, 5])).tolist()
    [[2, 1, 3]]
    """
    n, m = scores.shape
    k = max(0, min(k, m))
    if k == 0:
        return np.zeros((n, 0), dtype=np.int64)
    if tiebreak is not None:
        tiebreak = np.asarray(tiebreak)
        return np.stack([_top_k_row(row, k, tiebreak) for row in scores])
    s = np.where(np.isnan(scores), -np.inf, scores)
    if k < m:
        part = np.argpartition(-s, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(m), (n, m)).copy()
    order = np.argsort(-np.take_along_axis(s, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1).astype(np.int64)


SAMPLE = 4096
"""Rows of at least ``4 * SAMPLE`` scores are cut to a few thousand candidates first (see
:func:`_candidates`)."""


def _top_k_row(row: np.ndarray, k: int, tiebreak: np.ndarray) -> np.ndarray:
    """:func:`top_k` of one row with ties broken by ``tiebreak``: the scores above the k-th are
    all kept, and the items tied with it are taken by ``tiebreak``, so a row of equal scores
    costs one partition, not a sort of the catalogue. A long row is first cut to the items at
    or above a threshold that at least ``k`` of them reach (:func:`_candidates`), which holds
    every item the whole row would give, ties at the k-th score included, in the same order."""
    cand = _candidates(row, k)
    if cand is None:
        return _top_k_exact(np.where(np.isnan(row), -np.inf, row), k, tiebreak)
    return cand[_top_k_exact(row[cand], k, tiebreak[cand])]


def _candidates(row: np.ndarray, k: int) -> np.ndarray | None:
    """Indices of the items scoring at or above a threshold, in index order, when at least ``k``
    do; ``None`` for a short row or a threshold that is not finite or too high (then the whole
    row is ranked). The threshold is a high score of an evenly spaced sample of the row, chosen
    so that about ``2k + 8 * step`` items reach it: one comparison over the row instead of a
    partition of it (1M items: 0.6 ms against 7 ms)."""
    m = len(row)
    if m < 4 * SAMPLE:
        return None
    step = m // SAMPLE
    sample = row[::step]
    sample = np.where(np.isnan(sample), -np.inf, sample)
    j = min(len(sample), 8 + -(-2 * k // step))  # the j-th highest of the sample
    threshold = np.partition(sample, len(sample) - j)[len(sample) - j]
    if not np.isfinite(threshold):
        return None
    cand = np.flatnonzero(row >= threshold)  # NaN never passes
    return cand if len(cand) >= k else None


def _top_k_exact(s: np.ndarray, k: int, tiebreak: np.ndarray) -> np.ndarray:
    """:func:`_top_k_row` without the cut; ``s`` has no NaN and holds at least ``k`` items."""
    kth = np.partition(s, len(s) - k)[len(s) - k]  # the k-th highest score
    above = np.flatnonzero(s > kth)
    tied = np.flatnonzero(s == kth)
    need = k - len(above)
    if len(tied) > need:
        tied = tied[np.argpartition(-tiebreak[tied], need - 1)[:need]]
    chosen = np.concatenate([above, tied])
    return chosen[np.lexsort((-tiebreak[chosen], -s[chosen]))].astype(np.int64)


def top_k_explore(
    scores: np.ndarray, k: int, is_new: np.ndarray | None = None, share: float = 0.0,
    tiebreak: np.ndarray | None = None,
) -> np.ndarray:  # fmt: skip
    """:func:`top_k`, ``-1`` where fewer than ``k`` scores are finite, and with ``share`` the
    lists :func:`explore_new` makes of it: the columns flagged in ``is_new`` hold at least
    ``floor(p * share)`` of every first ``p`` places, while any of them can be scored.

    >>> s = np.array([[0.9, 0.8, 0.7, 0.1, np.nan]])
    >>> top_k_explore(s, 4).tolist(), top_k_explore(s, 4, np.array([0, 0, 0, 1, 1], bool), 0.5).tolist()
    ([[0, 1, 2, 3]], [[0, 3, 1, 2]])
    """
    def scored(s: np.ndarray, n: int) -> np.ndarray:
        top = top_k(s, n, tiebreak)
        return np.where(np.isnan(np.take_along_axis(s, top, axis=1)), -1, top)

    top = scored(scores, k)
    if is_new is None or share <= 0:
        return top
    news = scored(np.where(is_new[None, :], scores, np.nan), int(np.ceil(k * share)))
    return explore_new(top, news, is_new, k, share)


def explore_new(order: np.ndarray, new_order: np.ndarray, is_new: np.ndarray, k: int, share: float) -> np.ndarray:
    """Lists of ``k`` where items without training pairs hold at least ``floor(p * share)`` of
    every first ``p`` places (Gorse's ``explore_recommend`` for its latest items, kept in the
    model's order): the best remaining item takes each place, unless the new items are behind
    that guarantee, when the best remaining new item takes it.

    Args:
        order: ``(n, >= k)`` the best items per row, best first (:func:`top_k`), ``-1`` pads.
        new_order: ``(n, >= ceil(k * share))`` the best new items per row, best first, ``-1`` pads.
        is_new: ``(m,)`` which item indices are new.
        share: 0 to 1; 0 returns ``order``'s first ``k`` (padded with ``-1``).

    Returns:
        ``(n, k)`` item indices, ``-1`` where fewer items are left.

    >>> is_new = np.array([False, False, False, True, True])
    >>> explore_new(np.array([[0, 1, 2, 3, 4]]), np.array([[3, 4]]), is_new, 4, 0.5).tolist()
    [[0, 3, 1, 4]]
    >>> explore_new(np.array([[3, 0, 1, 2, 4]]), np.array([[3, 4]]), is_new, 4, 0.25).tolist()
    [[3, 0, 1, 2]]
    """
    order, new_order = np.asarray(order), np.asarray(new_order)
    out = np.full((len(order), k), -1, dtype=np.int64)
    if share <= 0:
        out[:, : min(k, order.shape[1])] = order[:, :k]
        return out
    for r in range(len(order)):
        best = [int(i) for i in order[r] if i >= 0]
        new = [int(i) for i in new_order[r] if i >= 0]
        taken: set[int] = set()
        a = b = shown_new = 0
        for p in range(k):
            while a < len(best) and best[a] in taken:
                a += 1
            while b < len(new) and new[b] in taken:
                b += 1
            owed = shown_new < int(np.floor((p + 1) * share + 1e-9))
            if owed and b < len(new):
                item = new[b]
            elif a < len(best):
                item = best[a]
            elif b < len(new):
                item = new[b]
            else:
                break
            taken.add(item)
            shown_new += bool(is_new[item])
            out[r, p] = item
    return out


def nearest(base: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` rows of ``base`` with the highest inner product with each query row, best
    first: ``(scores, indices)``, both ``(len(queries), min(k, len(base)))``.

    Exact search with faiss (``IndexFlatIP``): the same neighbours as a matrix product and a
    partial sort, several times faster (``benchmarks/bench_neighbours.py``).

    >>> base = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], dtype=np.float32)
    >>> nearest(base, np.array([[1.0, 0.1]], dtype=np.float32), 2)[1].tolist()
    [[0, 2]]
    """
    import faiss

    base = np.ascontiguousarray(base, dtype=np.float32)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    k = min(k, len(base))
    if k == 0 or len(queries) == 0:
        return np.zeros((len(queries), k), np.float32), np.zeros((len(queries), k), np.int64)
    index = faiss.IndexFlatIP(base.shape[1])
    index.add(base)
    scores, idx = index.search(queries, k)
    return scores, idx.astype(np.int64)
