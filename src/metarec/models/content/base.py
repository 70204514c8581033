"""What every content-aware scorer shares: item vectors from :mod:`metarec.encoders`, saved
with the model, and extendable by new items without retraining."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from metarec.data.dataset import Dataset
from metarec.encoders.content import ContentConfig, content_config_of, item_content
from metarec.models.base import Scorer
from metarec.ranking import nearest


class ContentScorer(Scorer):
    """Base class: ``self.item_vectors_`` ``(I, d)`` unit rows, ``self.has_content_`` ``(I,)``.

    Subclass configs inherit :class:`~metarec.encoders.ContentConfig`'s fields.
    """

    @property
    def can_add_items(self) -> bool:
        return True

    def content_config(self) -> ContentConfig:
        return content_config_of(self.config)

    def _fit(self, data: Dataset, matrix: sp.csr_matrix) -> None:
        self.item_vectors_, self.has_content_ = item_content(data, self.content_config())
        self._fit_content(data, matrix)

    def _fit_content(self, data: Dataset, matrix: sp.csr_matrix) -> None:
        """Learn from interactions once item vectors exist (nothing to learn by default)."""

    def fit_lexical(self, data: Dataset, enabled: bool) -> None:
        """TF-IDF item vectors (``item_lexical_``), when enabled and the items have text."""
        from metarec.encoders.content import item_texts
        from metarec.encoders.lexical import LexicalEncoder

        config = self.content_config()
        has_text = bool(config.template or data.text_fields) and not config.vectors
        if enabled and has_text:
            texts = item_texts(data, config.template)
            self.lexical_encoder_ = LexicalEncoder().fit(texts)
            self.item_lexical_ = self.lexical_encoder_.transform(texts)
        else:
            self.lexical_encoder_ = None
            self.item_lexical_ = sp.csr_matrix((self.n_items_, 1), dtype=np.float32)

    def add_items(self, vectors: np.ndarray, texts: list[str] | None = None) -> np.ndarray:
        """Append new items from their content vectors (and texts); returns their indices.

        The items are scorable at once, from content alone (no interaction yet).
        """
        from metarec.encoders.base import normalize_rows

        vectors = normalize_rows(np.atleast_2d(vectors))
        start = self.n_items_
        self.item_vectors_ = np.vstack([self.item_vectors_, vectors])
        self.has_content_ = np.concatenate([self.has_content_, np.ones(len(vectors), dtype=bool)])
        self.known_items_ = np.concatenate([self.known_items_, np.zeros(len(vectors), dtype=bool)])
        self.n_items_ = start + len(vectors)
        if hasattr(self, "item_lexical_"):
            if self.lexical_encoder_ is not None and texts is not None:
                lex = self.lexical_encoder_.transform(texts)
            else:
                lex = sp.csr_matrix((len(vectors), self.item_lexical_.shape[1]), dtype=np.float32)
            self.item_lexical_ = sp.vstack([self.item_lexical_, lex]).tocsr()
        self._added_items(len(vectors), texts)
        return np.arange(start, self.n_items_)

    def update_items(self, indices: np.ndarray, vectors: np.ndarray, texts: list[str] | None = None) -> None:
        """Replace the content of existing items (a changed text): scored from it at once."""
        from metarec.encoders.base import normalize_rows

        indices = np.asarray(indices, dtype=np.int64)
        self.item_vectors_ = self.item_vectors_.copy()
        self.item_vectors_[indices] = normalize_rows(np.atleast_2d(vectors))
        self.has_content_ = self.has_content_.copy()
        self.has_content_[indices] = True
        if getattr(self, "lexical_encoder_", None) is not None and texts is not None:
            self.item_lexical_ = replace_rows(self.item_lexical_, indices, self.lexical_encoder_.transform(texts))
        self._updated_items(indices, texts)

    def _added_items(self, n: int, texts: list[str] | None = None) -> None:
        """Hook for subclasses with per-item state."""

    def _updated_items(self, indices: np.ndarray, texts: list[str] | None = None) -> None:
        """Hook for subclasses with per-item state."""

    def get_state(self) -> dict[str, np.ndarray]:
        state = {**super().get_state(), "item_vectors": self.item_vectors_, "has_content": self.has_content_}
        if hasattr(self, "item_lexical_"):
            lex = self.item_lexical_
            state.update(lex_data=lex.data, lex_indices=lex.indices, lex_indptr=lex.indptr,
                         lex_shape=np.array(lex.shape, dtype=np.int64))  # fmt: skip
            if self.lexical_encoder_ is not None:
                state["lex_idf"] = self.lexical_encoder_.idf
        return state

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        from metarec.encoders.lexical import LexicalEncoder

        super().set_state(state)
        self.item_vectors_ = state["item_vectors"]
        self.has_content_ = state["has_content"].astype(bool)
        if "lex_shape" in state:
            self.item_lexical_ = sp.csr_matrix(
                (state["lex_data"], state["lex_indices"], state["lex_indptr"]), shape=tuple(state["lex_shape"])
            )
            self.lexical_encoder_ = LexicalEncoder(state["lex_idf"]) if "lex_idf" in state else None


def replace_rows(matrix: sp.csr_matrix, rows: np.ndarray, new: sp.spmatrix) -> sp.csr_matrix:
    """``matrix`` with ``rows`` replaced by the rows of ``new`` (same column count), in one pass.

    >>> m = sp.csr_matrix(np.arange(6.0).reshape(3, 2))
    >>> replace_rows(m, np.array([2, 0]), sp.csr_matrix([[9.0, 9.0], [0.0, 1.0]])).toarray().tolist()
    [[0.0, 1.0], [2.0, 3.0], [9.0, 9.0]]
    """
    keep = np.ones(matrix.shape[0], dtype=bool)
    keep[rows] = False
    old = matrix.tocoo()
    fresh = sp.coo_matrix(new)
    mask = keep[old.row]
    r = np.concatenate([old.row[mask], np.asarray(rows)[fresh.row]])
    c = np.concatenate([old.col[mask], fresh.col])
    v = np.concatenate([old.data[mask], fresh.data]).astype(matrix.dtype)
    return sp.csr_matrix((v, (r, c)), shape=matrix.shape)


def row_normalise(m: sp.csr_matrix) -> sp.csr_matrix:
    """Rows scaled to sum to one (empty rows stay empty)."""
    counts = np.asarray(m.sum(axis=1)).ravel()
    return (sp.diags(1.0 / np.maximum(counts, 1)) @ m).tocsr()


def carve_validation(
    matrix: sp.csr_matrix, share: float, rng: np.random.Generator, item_share: float | None = None,
    max_users: int | None = None,
) -> tuple[sp.csr_matrix, sp.csr_matrix, sp.csr_matrix]:  # fmt: skip
    """Carve validation from training pairs: ``(train, warm, cold)``, same shape as ``matrix``.

    Cold: ``item_share`` (default ``share``) of the items with pairs, all their pairs held out
    (as the cold-item protocol does). Warm: 20% of the remaining pairs of ``share`` of the
    users with five or more pairs (at most ``max_users``).
    """
    coo = matrix.tocoo()
    items = np.flatnonzero(matrix.getnnz(axis=0) > 0)
    n_cold = int(round(len(items) * (share if item_share is None else item_share)))
    is_cold = np.zeros(matrix.shape[1], dtype=bool)
    if n_cold:
        is_cold[rng.choice(items, n_cold, replace=False)] = True
    eligible = np.flatnonzero(matrix.getnnz(axis=1) >= 5)
    n_val = int(round(len(eligible) * share))
    if max_users is not None:
        n_val = min(n_val, max_users)
    is_val_user = np.zeros(matrix.shape[0], dtype=bool)
    if n_val:
        is_val_user[rng.choice(eligible, n_val, replace=False)] = True
    cold = is_cold[coo.col]
    warm = ~cold & is_val_user[coo.row] & (rng.random(coo.nnz) < 0.2)

    def part(mask: np.ndarray) -> sp.csr_matrix:
        return sp.csr_matrix((coo.data[mask], (coo.row[mask], coo.col[mask])), shape=matrix.shape)

    return part(~cold & ~warm), part(warm), part(cold)


def content_neighbours(
    vectors: np.ndarray, warm: np.ndarray, k: int, temperature: float, rows: np.ndarray | None = None
) -> sp.csr_matrix:
    """Row ``i``: softmax(cosine / temperature) weights over item ``i``'s ``k`` nearest warm
    items by content (never itself). ``(len(rows), n_items)`` CSR; rows default to all items.
    """
    n = len(vectors)
    rows = np.arange(n) if rows is None else np.asarray(rows)
    warm_idx = np.flatnonzero(warm)
    k = min(k, max(len(warm_idx) - 1, 0))
    if k == 0:
        return sp.csr_matrix((len(rows), n), dtype=np.float32)
    pos_in_warm = np.full(n, -1)
    pos_in_warm[warm_idx] = np.arange(len(warm_idx))
    # k + 1 nearest, then the item itself (when warm) or the last one is dropped.
    sim, top = nearest(vectors[warm_idx], vectors[rows], k + 1)
    own = pos_in_warm[rows]
    sim[top == own[:, None]] = -np.inf
    keep = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    s = np.take_along_axis(sim, keep, axis=1) / temperature
    w = np.exp(s - s.max(axis=1, keepdims=True))
    idx, w = warm_idx[np.take_along_axis(top, keep, axis=1)], w / w.sum(axis=1, keepdims=True)
    indptr = np.arange(0, len(rows) * k + 1, k)
    return sp.csr_matrix((w.ravel().astype(np.float32), idx.ravel(), indptr), shape=(len(rows), n))
