"""EASE (Steck, WWW 2019): a closed-form item-item linear autoencoder.

``B = argmin ||X - XB||^2 + lambda ||B||^2`` subject to ``diag(B) = 0``:
with ``P = (X^T X + lambda I)^-1``, ``B = -P / diag(P)`` and zero diagonal. A user (known or
new) is scored as ``history @ B``, so fold-in is exact and free.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from metarec.data.dataset import Dataset
from metarec.errors import ConfigError
from metarec.models.base import Queries, Scorer


def ease_weights(matrix: sp.csr_matrix, l2: float) -> np.ndarray:
    """EASE's item-item matrix ``B`` (float32, zero diagonal) for a binary user x item matrix.

    >>> import scipy.sparse as sp
    >>> b = ease_weights(sp.csr_matrix(np.array([[1, 1, 0], [1, 1, 0], [0, 0, 1.0]])), l2=1.0)
    >>> bool(b[0, 1] > 0 and b[0, 2] == 0 and b[1, 1] == 0)
    True
    """
    gram = (matrix.T @ matrix).toarray().astype(np.float64)  # (I, I)
    gram[np.diag_indices_from(gram)] += l2
    p = scipy.linalg.inv(gram, overwrite_a=True, check_finite=False)
    b = -p / np.diag(p)[None, :]
    b[np.diag_indices_from(b)] = 0.0
    return b.astype(np.float32)


@dataclass
class EASEConfig:
    """Attributes:
    l2: the L2 penalty lambda (about 500 suits MovieLens-sized data).
    max_items: refuse larger catalogues: EASE inverts a dense items x items matrix.
    """

    l2: float = 500.0
    max_items: int = 30_000


class EASEScorer(Scorer):
    """EASE item-item model; items with no training interaction are NaN."""

    name = "ease"
    Config = EASEConfig

    def _fit(self, data: Dataset, matrix: sp.csr_matrix) -> None:
        n = data.n_items
        if n > self.config.max_items:
            raise ConfigError(
                f"ease: {n} items need a dense {n} x {n} matrix (~{8 * n * n / 2**30:.0f} GiB); "
                f"its limit is max_items={self.config.max_items}. Filter the catalogue "
                "(--min-core) or use ials/itemknn"
            )
        self.weights_ = ease_weights(matrix, self.config.l2)

    def _score(self, queries: Queries) -> np.ndarray:
        s = np.asarray(queries.history @ self.weights_)  # (n, I)
        s[:, ~self.known_items_] = np.nan
        return s

    def get_state(self) -> dict[str, np.ndarray]:
        return {**super().get_state(), "weights": self.weights_}

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        super().set_state(state)
        self.weights_ = state["weights"]
