"""Most-popular: every user gets the items with the most distinct training users."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from metarec.data.dataset import Dataset
from metarec.models.base import Queries, Scorer


@dataclass
class PopConfig:
    """No parameters: popularity is the number of distinct users per item."""


class PopScorer(Scorer):
    """Scores an item by its training popularity; items never seen in training are NaN.

    >>> import numpy as np, scipy.sparse as sp
    >>> from metarec.models.base import Queries
    >>> from metarec.testing import tiny_dataset
    >>> s = PopScorer().fit(tiny_dataset([[0, 1], [1], [1, 2]]))
    >>> s.score(Queries([0], sp.csr_matrix((1, 3)))).tolist()
    [[1.0, 3.0, 1.0]]
    """

    name = "pop"
    pairs_only = True
    Config = PopConfig

    def _fit(self, data: Dataset, matrix: sp.csr_matrix) -> None:
        counts = np.asarray(matrix.sum(axis=0)).ravel().astype(np.float32)
        self.popularity_ = np.where(counts > 0, counts, np.nan).astype(np.float32)

    def _score(self, queries: Queries) -> np.ndarray:
        return np.broadcast_to(self.popularity_, (len(queries), self.n_items_)).copy()

    def get_state(self) -> dict[str, np.ndarray]:
        return {**super().get_state(), "popularity": self.popularity_}

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        super().set_state(state)
        self.popularity_ = state["popularity"]
