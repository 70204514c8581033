"""What a content encoder is: texts in, one L2-normalised float32 vector per text out."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class TextEncoder(Protocol):
    """Encodes texts into ``(n, dim)`` float32 rows of unit length.

    ``model_id`` and ``revision`` identify the weights: together with a text's hash they
    are the embedding cache key, so a new model version never reuses old vectors.
    """

    model_id: str
    revision: str

    @property
    def dim(self) -> int: ...

    def encode(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray: ...


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(n > 0, n, 1.0)


class HashingEncoder:
    """A dependency-free bag-of-words encoder: token and bigram counts hashed into ``dim``.

    Not a language model: it knows no synonyms. It is what the tests use to check the
    plumbing without torch, and a fallback when no pretrained model is wanted.

    >>> e = HashingEncoder(dim=64)
    >>> v = e.encode(["red kettle", "red kettle", "blue tent"])
    >>> bool(np.allclose(v[0], v[1])), round(float(v[0] @ v[2]), 3)
    (True, 0.0)
    """

    def __init__(self, dim: int = 256) -> None:
        self._dim = dim
        self.model_id = f"hashing-{dim}"
        self.revision = "1"
        self.calls = 0  # texts encoded so far (the cache tests count them)

    @property
    def dim(self) -> int:
        return self._dim

    def encode(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        self.calls += len(texts)
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        for row, text in enumerate(texts):
            tokens = re.findall(r"\w+", text.lower())
            for tok in tokens + [a + " " + b for a, b in zip(tokens, tokens[1:])]:
                h = int.from_bytes(hashlib.blake2b(tok.encode(), digest_size=8).digest(), "little")
                out[row, h % self._dim] += 1.0 if (h >> 63) & 1 else -1.0
        return normalize_rows(out)
