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


def cosine_to_profiles(history: sp.csr_matrix, item_lex: sp.csr_matrix, items: np.ndarray | None = None) -> np.ndarray:
    """Cosine between each user's summed history TF-IDF and items' TF-IDF: ``(n, k)`` dense."""
    prof = (history @ item_lex).tocsr()  # (n, F) sparse
    norms = np.sqrt(np.asarray(prof.multiply(prof).sum(axis=1)).ravel())
    prof = sp.diags(1 / np.where(norms > 0, norms, 1)) @ prof
    target = item_lex if items is None else item_lex[items]
    return np.asarray((prof @ target.T).todense(), dtype=np.float32)
