"""Lexical item vectors: hashed word and bigram TF-IDF, from scikit-learn.

Pretrained sentence encoders blur exact tokens (brands, model numbers, names) that matter
for products; a sparse TF-IDF view keeps them. Hashing (no vocabulary) means a new item's
text is transformed with nothing but the fitted IDF weights, which are saved with the model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from metarec.errors import ConfigError

N_FEATURES = 2**18


def _vectorizer():
    try:
        from sklearn.feature_extraction.text import HashingVectorizer
    except ImportError:
        raise ConfigError("lexical features need scikit-learn: pip install 'metarec[text]'") from None
    return HashingVectorizer(n_features=N_FEATURES, ngram_range=(1, 2), alternate_sign=False, norm=None)


class LexicalEncoder:
    """Hashed TF-IDF (sublinear tf, smooth idf), rows L2-normalised.

    >>> enc = LexicalEncoder().fit(["red kettle", "blue tent", "red tent"])
    >>> m = enc.transform(["red kettle"])
    >>> m.shape[1] == N_FEATURES, round(float(m.multiply(m).sum()), 6)
    (True, 1.0)
    """

    def __init__(self, idf: np.ndarray | None = None) -> None:
        self.idf = idf

    def fit(self, texts: Sequence[str]) -> LexicalEncoder:
        counts = _vectorizer().transform(list(texts))
        df = np.bincount(counts.indices, minlength=N_FEATURES)
        n = counts.shape[0]
        self.idf = (np.log((1 + n) / (1 + df)) + 1).astype(np.float32)
        return self

    def transform(self, texts: Sequence[str]) -> sp.csr_matrix:
        if self.idf is None:
            raise RuntimeError("LexicalEncoder: fit() first")
        m = _vectorizer().transform(list(texts)).astype(np.float32).tocsr()
        m.data = (1 + np.log(m.data)) * self.idf[m.indices]
        norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
        return (sp.diags(1 / np.where(norms > 0, norms, 1)) @ m).astype(np.float32).tocsr()


def cosine_to_profiles(
    history: sp.csr_matrix, item_lex: sp.csr_matrix, items: np.ndarray | None = None,
    item_lex_t: sp.csr_matrix | None = None,
) -> np.ndarray:  # fmt: skip
    """Cosine between each user's summed history TF-IDF and items' TF-IDF: ``(n, k)`` dense.

    ``item_lex_t`` (``item_lex.T`` as CSR, for all items) saves a transpose per call.
    """
    prof = (history @ item_lex).tocsr()  # (n, F) sparse
    sq = prof.copy()
    sq.data **= 2
    norms = np.sqrt(np.asarray(sq.sum(axis=1)).ravel())
    prof = (sp.diags(1 / np.where(norms > 0, norms, 1)) @ prof).tocsr()
    if items is None:
        target = item_lex_t if item_lex_t is not None else item_lex.T.tocsr()
    else:
        target = item_lex[items].T.tocsr()
    return (prof @ target).toarray().astype(np.float32, copy=False)


def top_k_similarity(item_lex: sp.csr_matrix, k: int, chunk: int = 2048) -> sp.csr_matrix:
    """Item x item TF-IDF cosine, keeping each row's ``k`` largest entries (self excluded).

    ``history @ S`` then approximates the history profile's dot product with every item
    by an item-kNN sum, without a sparse-sparse product per query.
    """
    n = item_lex.shape[0]
    blocks = [top_k_similarity_rows(item_lex, np.arange(s, min(s + chunk, n)), k, n) for s in range(0, n, chunk)]
    return sp.vstack(blocks).tocsr() if blocks else sp.csr_matrix((0, 0), dtype=np.float32)


def top_k_similarity_rows(item_lex: sp.csr_matrix, rows: np.ndarray, k: int, n_cols: int) -> sp.csr_matrix:
    """Rows ``rows`` of :func:`top_k_similarity` against the first ``n_cols`` items: ``(len(rows), n_cols)``."""
    rows = np.asarray(rows, dtype=np.int64)
    block = (item_lex[rows] @ item_lex[:n_cols].T).toarray()  # (r, n_cols)
    inside = rows < n_cols
    block[np.flatnonzero(inside), rows[inside]] = 0.0
    k = min(k, max(n_cols - 1, 0))
    if k == 0 or len(rows) == 0:
        return sp.csr_matrix((len(rows), n_cols), dtype=np.float32)
    top = np.argpartition(-block, k - 1, axis=1)[:, :k]  # (r, k)
    v = np.take_along_axis(block, top, axis=1)
    keep = (v > 0).ravel()
    r = np.repeat(np.arange(len(rows)), k)[keep]
    return sp.csr_matrix((v.ravel()[keep].astype(np.float32), (r, top.ravel()[keep])), shape=(len(rows), n_cols))
