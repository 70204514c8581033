"""Top-k selection shared by scorers, evaluation and serving."""

from __future__ import annotations

import numpy as np


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the ``k`` highest scores per row, best first; NaN ranks last.

    Args:
        scores: ``(n, m)`` float array (not modified).
        k: how many to keep (clipped to ``m``).

    Returns:
        ``(n, min(k, m))`` int64 indices.

    >>> top_k(np.array([[0.1, np.nan, 0.7, 0.3]]), 2).tolist()
    [[2, 3]]
    """
    n, m = scores.shape
    k = min(k, m)
    if k == 0:
        return np.zeros((n, 0), dtype=np.int64)
    s = np.where(np.isnan(scores), -np.inf, scores)
    if k < m:
        part = np.argpartition(-s, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(m), (n, m)).copy()
    order = np.argsort(-np.take_along_axis(s, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1).astype(np.int64)
