"""A batch of recommendation queries: who asks, and what they have interacted with."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp


@dataclass
class Queries:
    """A batch of ``n`` queries.

    Attributes:
        users: ``(n,)`` int64 user indices into the training vocabulary, ``-1`` if unknown.
        history: ``(n, n_items)`` CSR matrix of the items each user interacted with
            (binary); at evaluation, the training interactions or the support set.
        values: optional ``(n, n_items)`` CSR of the history's event values (ratings), for
            models that adapt to them; ``None`` when only the items are known.
        refresh: optional ``(n,)`` bool: rows of trained users whose history holds events
            the model was not trained on (a service's users, after training). Models that
            keep a trained state per user that does not read the history (factor models)
            fold these users in from the history instead; the others read the history
            already, and keep the user's id and attributes.
    """

    users: np.ndarray
    history: sp.csr_matrix
    values: sp.csr_matrix | None = None
    refresh: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.users = np.asarray(self.users, dtype=np.int64)
        if not sp.isspmatrix_csr(self.history):
            self.history = sp.csr_matrix(self.history)
        if self.history.shape[0] != len(self.users):
            raise ValueError(f"{len(self.users)} users but {self.history.shape[0]} history rows")
        if self.refresh is not None:
            self.refresh = np.asarray(self.refresh, dtype=bool)
            if self.refresh.shape != self.users.shape:
                raise ValueError(f"{len(self.users)} users but {len(self.refresh)} refresh flags")

    def __len__(self) -> int:
        return len(self.users)

    def __getitem__(self, rows: slice | np.ndarray) -> Queries:
        return Queries(self.users[rows], self.history[rows], None if self.values is None else self.values[rows],
                       None if self.refresh is None else self.refresh[rows])  # fmt: skip

    @classmethod
    def from_histories(
        cls, users: list[int] | np.ndarray, histories: list[list[int]], n_items: int,
        refresh: np.ndarray | None = None,
    ) -> Queries:
        """Build from per-user lists of item indices (``refresh``: as the attribute)."""
        indptr = np.cumsum([0] + [len(h) for h in histories])
        indices = np.asarray([i for h in histories for i in h], dtype=np.int32)
        m = sp.csr_matrix(
            (np.ones(len(indices), np.float32), indices, indptr), shape=(len(histories), n_items)
        )
        m.sum_duplicates()
        m.data[:] = 1.0
        return cls(np.asarray(users), m, refresh=refresh)
