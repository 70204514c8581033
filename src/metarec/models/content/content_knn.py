"""Content-kNN: the mean of the user's history embeddings against every item's embedding."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from metarec.data.queries import Queries
from metarec.encoders.base import normalize_rows
from metarec.encoders.content import ContentConfig
from metarec.models.content.base import ContentScorer


@dataclass
class ContentKNNConfig(ContentConfig):
    """Only where item vectors come from (see :class:`~metarec.encoders.ContentConfig`)."""


class ContentKNNScorer(ContentScorer):
    """Cosine of each item's content vector with the user's mean history vector.

    Items without content, and users without history, are NaN (nothing to compare).
    """

    name = "content-knn"
    Config = ContentKNNConfig

    def _score(self, queries: Queries) -> np.ndarray:
        h = queries.history
        profile = normalize_rows(np.asarray(h @ self.item_vectors_))  # (n, d)
        s = profile @ self.item_vectors_.T  # (n, I)
        s[:, ~self.has_content_] = np.nan
        s[np.asarray(h.getnnz(axis=1)) == 0] = np.nan
        return s
