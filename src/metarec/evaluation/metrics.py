"""The one metrics module: ranking metrics per user and pointwise metrics per task.

Ranking metrics take a boolean hit matrix ``hits`` of shape ``(n, K)`` (``hits[u, j]`` is
true when the item at rank ``j`` of user ``u`` is relevant) and each user's number of
relevant items, and return one value per user, so the harness can average, split by
segment and count users. Relevance is binary; every metric is over the full candidate
list (no sampled negatives).

Definitions (``r`` = relevant count, ``h_j`` = hit at rank ``j``, 1-based):

- ``Recall@K = sum_{j<=K} h_j / r``
- ``Precision@K = sum_{j<=K} h_j / K``
- ``HitRate@K = 1 if any h_j``
- ``NDCG@K = sum h_j / log2(j+1) / IDCG``, ``IDCG = sum_{j<=min(K,r)} 1 / log2(j+1)``
- ``MRR@K = 1 / (rank of first hit)``, 0 if none in the top K
- ``MAP@K = sum_j Precision@j * h_j / min(K, r)``
- ``Coverage@K`` = distinct items in all top-K lists / number of candidates (one value).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

RANKING_METRICS = ("Recall", "Precision", "NDCG", "HitRate", "MRR", "MAP")


def _discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2))


def recall(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    return hits[:, :k].sum(axis=1) / np.maximum(n_relevant, 1)


def precision(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    return hits[:, :k].sum(axis=1) / k


def hit_rate(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    return hits[:, :k].any(axis=1).astype(np.float64)


def ndcg(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    h = hits[:, :k]
    disc = _discounts(k)
    dcg = (h * disc[: h.shape[1]]).sum(axis=1)
    ideal = np.concatenate([[0.0], np.cumsum(disc)])[np.minimum(n_relevant, k)]
    return np.where(ideal > 0, dcg / np.where(ideal > 0, ideal, 1), 0.0)


def mrr(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    h = hits[:, :k]
    first = np.argmax(h, axis=1)
    return np.where(h.any(axis=1), 1.0 / (first + 1), 0.0)


def average_precision(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    h = hits[:, :k].astype(np.float64)
    prec = np.cumsum(h, axis=1) / np.arange(1, h.shape[1] + 1)
    return (prec * h).sum(axis=1) / np.maximum(np.minimum(n_relevant, k), 1)


_FUNCS = {
    "Recall": recall,
    "Precision": precision,
    "NDCG": ndcg,
    "HitRate": hit_rate,
    "MRR": mrr,
    "MAP": average_precision,
}


def ranking_metrics(
    hits: np.ndarray, n_relevant: np.ndarray, cutoffs: Sequence[int]
) -> dict[str, np.ndarray]:
    """Per-user values of every ranking metric at every cutoff, keyed ``"NDCG@10"``.

    Args:
        hits: ``(n, K)`` boolean, ``K >= max(cutoffs)`` (shorter lists count as misses).
        n_relevant: ``(n,)`` relevant items per user (users with 0 should be left out).
    """
    hits = np.asarray(hits, dtype=bool)
    n_relevant = np.asarray(n_relevant, dtype=np.int64)
    kmax = max(cutoffs)
    if hits.shape[1] < kmax:
        hits = np.pad(hits, ((0, 0), (0, kmax - hits.shape[1])))
    return {f"{m}@{k}": _FUNCS[m](hits, n_relevant, k) for m in RANKING_METRICS for k in cutoffs}


def coverage(top_items: np.ndarray, n_candidates: int) -> float:
    """Share of the candidates that appear in at least one list (``-1`` pads are ignored)."""
    shown = np.unique(top_items[top_items >= 0])
    return len(shown) / max(n_candidates, 1)


# ---------------------------------------------------------------------------- pointwise
def auc(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U, ties count one half); NaN if one class only."""
    y = np.asarray(y_true).astype(bool)
    s = np.asarray(y_score, dtype=np.float64)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    from scipy.stats import rankdata

    ranks = rankdata(s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def log_loss(y_true: np.ndarray, p: np.ndarray, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy of probabilities ``p`` (clipped to ``[eps, 1 - eps]``)."""
    y = np.asarray(y_true, dtype=np.float64)
    q = np.clip(np.asarray(p, dtype=np.float64), eps, 1 - eps)
    return float(-np.mean(y * np.log(q) + (1 - y) * np.log(1 - q)))


def rmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Root mean squared error."""
    d = np.asarray(y_true, dtype=np.float64) - np.asarray(y_pred, dtype=np.float64)
    return float(np.sqrt(np.mean(d * d)))


def mae(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean absolute error."""
    d = np.asarray(y_true, dtype=np.float64) - np.asarray(y_pred, dtype=np.float64)
    return float(np.mean(np.abs(d)))
