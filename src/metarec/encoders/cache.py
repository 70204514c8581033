"""An on-disk embedding cache keyed by model id + revision + text hash.

A SQLite file (stdlib) holds one row per (model key, text hash) with the vector as bytes.
:func:`encode_cached` looks every text up, encodes only the misses in batches, and stores
them in one transaction: a second run re-encodes nothing, and a changed text re-encodes only
that text.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from metarec.encoders.base import TextEncoder
from metarec.errors import ConfigError

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """``$METAREC_CACHE`` or ``~/.cache/metarec``."""
    return Path(os.environ.get("METAREC_CACHE") or Path.home() / ".cache" / "metarec")


def text_hash(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()[:16]


class EmbeddingCache:
    """Vectors by (model key, text hash) in ``<dir>/embeddings.sqlite``."""

    def __init__(self, directory: str | os.PathLike | None = None) -> None:
        self.directory = Path(directory) if directory is not None else default_cache_dir()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a file in the way: was "File exists", naming nothing else
            raise ConfigError(f"{self.directory}: the embedding cache directory cannot be made there ({exc.strerror}); "
                              "give another --cache-dir (or $METAREC_CACHE)") from None  # fmt: skip
        self.path = self.directory / "embeddings.sqlite"
        with self._connect() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS vectors (model TEXT NOT NULL, hash BLOB NOT NULL, "
                "dim INTEGER NOT NULL, vec BLOB NOT NULL, PRIMARY KEY (model, hash))"
            )

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30)
        db.execute("PRAGMA journal_mode=WAL")
        return db

    def get(self, model: str, hashes: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        out: dict[bytes, np.ndarray] = {}
        with self._connect() as db:
            for start in range(0, len(hashes), 900):  # SQLite's bound-parameter limit
                chunk = list(hashes[start : start + 900])
                marks = ",".join("?" * len(chunk))
                rows = db.execute(
                    f"SELECT hash, vec FROM vectors WHERE model = ? AND hash IN ({marks})", [model, *chunk]
                )
                for h, vec in rows:
                    out[bytes(h)] = np.frombuffer(vec, dtype=np.float32)
        return out

    def put(self, model: str, hashes: Sequence[bytes], vectors: np.ndarray) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        with self._connect() as db:
            db.executemany(
                "INSERT OR REPLACE INTO vectors (model, hash, dim, vec) VALUES (?, ?, ?, ?)",
                [(model, h, vectors.shape[1], v.tobytes()) for h, v in zip(hashes, vectors)],
            )

    def count(self, model: str | None = None) -> int:
        with self._connect() as db:
            if model is None:
                return db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0]
            return db.execute("SELECT COUNT(*) FROM vectors WHERE model = ?", [model]).fetchone()[0]


def model_key(encoder: TextEncoder) -> str:
    return f"{encoder.model_id}@{encoder.revision}"


def encode_cached(
    encoder: TextEncoder,
    texts: Sequence[str],
    cache: EmbeddingCache | None,
    batch_size: int = 64,
    progress: bool = False,
) -> np.ndarray:
    """``(n, dim)`` embeddings of ``texts``, encoding only what ``cache`` lacks.

    Identical texts are encoded once. With ``cache=None`` everything is encoded.
    """
    hashes = [text_hash(t) for t in texts]
    unique: dict[bytes, int] = {}
    for i, h in enumerate(hashes):
        unique.setdefault(h, i)
    key = model_key(encoder)
    found = cache.get(key, list(unique)) if cache is not None else {}
    missing = [h for h in unique if h not in found]
    if missing:
        log.info("encoding %d of %d distinct texts with %s", len(missing), len(unique), key)
        vecs = encoder.encode([texts[unique[h]] for h in missing], batch_size=batch_size, progress=progress)
        if cache is not None:
            cache.put(key, missing, vecs)
        found.update(zip(missing, vecs))
    if not hashes:
        return np.zeros((0, encoder.dim), dtype=np.float32)
    return np.stack([found[h] for h in hashes]).astype(np.float32)
