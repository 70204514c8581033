"""Item-based k-nearest neighbours on cosine similarity (Sarwar et al. 2001).

The neighbour matrix comes from the ``implicit`` package (``CosineRecommender``, top-``k``
neighbours per item); a user, known or new, is scored as ``history @ similarity``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from metarec.data.dataset import Dataset
from metarec.models.base import Queries, Scorer


@dataclass
class ItemKNNConfig:
    """Attributes:
    k: neighbours kept per item (20 was best of 20-400 on MovieLens-100K holdout, seed 0).
    """

    k: int = 20


class ItemKNNScorer(Scorer):
    """Item-kNN; items with no training interaction are NaN."""

    name = "itemknn"
    pairs_only = True
    Config = ItemKNNConfig

    def _fit(self, data: Dataset, matrix: sp.csr_matrix) -> None:
        from implicit.nearest_neighbours import CosineRecommender
        from implicit.utils import ParameterWarning

        model = CosineRecommender(K=self.config.k, num_threads=1)
        with threadpool_limits(1, "blas"), warnings.catch_warnings():
            # implicit normalises into COO internally and then warns about its own conversion.
            warnings.simplefilter("ignore", category=ParameterWarning)
            model.fit(matrix, show_progress=False)
        # Row i holds item i's k nearest neighbours; a history item votes for its neighbours.
        sim = sp.csr_matrix(model.similarity, dtype=np.float32)
        sim.setdiag(0.0)
        sim.eliminate_zeros()
        self.similarity_ = sim

    def _score(self, queries: Queries) -> np.ndarray:
        s = (queries.history @ self.similarity_).toarray()  # (n, I)
        s[:, ~self.known_items_] = np.nan
        return s

    def get_state(self) -> dict[str, np.ndarray]:
        m = self.similarity_
        return {**super().get_state(), "sim_data": m.data, "sim_indices": m.indices,
                "sim_indptr": m.indptr}  # fmt: skip

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        super().set_state(state)
        n = self.n_items_
        self.similarity_ = sp.csr_matrix(
            (state["sim_data"], state["sim_indices"], state["sim_indptr"]), shape=(n, n)
        )
