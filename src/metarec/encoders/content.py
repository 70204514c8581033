"""Item content as vectors: texts from a template, encoded (and cached), or your own vectors.

:class:`ContentConfig` is embedded in the config of every content-aware scorer, so a saved
model records which encoder, template or vector file made its item vectors.
"""

from __future__ import annotations

import dataclasses
import logging
import string
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from metarec.data.dataset import Dataset
from metarec.encoders.base import HashingEncoder, TextEncoder, normalize_rows
from metarec.encoders.cache import EmbeddingCache, encode_cached
from metarec.errors import ConfigError, DataError

log = logging.getLogger(__name__)


@dataclass
class ContentConfig:
    """Where item vectors come from.

    Attributes:
        encoder: ``all-MiniLM-L6-v2`` (default, offline from its package), a local model
            directory, a hub name (only with ``allow_download``), or ``hashing`` /
            ``hashing-<dim>`` for the dependency-free bag-of-words encoder.
        template: e.g. ``"{title} ({year}). {genres}"``; default: the data set's text
            fields joined with ``". "``.
        vectors: a Parquet (``id`` + ``embedding`` list column, or ``id`` + numeric
            columns) or ``.npz`` (``ids``, ``vectors``) file of your own item vectors
            (image, API, ...); overrides ``encoder``.
        cache_dir: embedding cache directory (default ``$METAREC_CACHE`` or ``~/.cache/metarec``);
            ``"none"`` disables the cache.
        device: where the encoder runs (``cpu``, ``cuda``, ``mps``, ``auto``).
        allow_download: let the encoder fetch a model from the hub.
    """

    encoder: str = "all-MiniLM-L6-v2"
    template: str | None = None
    vectors: str | None = None
    cache_dir: str | None = None
    device: str = "cpu"
    allow_download: bool = False


def make_encoder(config: ContentConfig) -> TextEncoder:
    """The encoder named by ``config.encoder``."""
    name = config.encoder
    if name == "hashing" or name.startswith("hashing-"):
        dim = name.split("-", 1)[1] if "-" in name else "256"
        if not dim.isdigit() or int(dim) < 1:  # was a ValueError or ZeroDivisionError traceback
            raise ConfigError(f"encoder {name!r}: hashing-N takes a whole number of dimensions, at least 1 (hashing-256)")
        return HashingEncoder(int(dim))
    from metarec.encoders.sentence import SentenceEncoder

    return SentenceEncoder(name, device=config.device, allow_download=config.allow_download)


def render_texts(items: pd.DataFrame, template: str) -> list[str]:
    """Fill ``template`` (``str.format`` fields) from item columns, vectorised per field.

    >>> render_texts(pd.DataFrame({"t": ["Up", "Heat"], "y": [2009, None]}), "{t} ({y})")
    ['Up (2009)', 'Heat ()']
    """
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:  # an unclosed or stray brace: was a traceback
        raise ConfigError(f"template {template!r}: {exc} (a brace of the text itself is written twice: {{{{ or }}}})") from None
    out = pd.Series([""] * len(items), index=items.index, dtype=object)
    for literal, field, _spec, _conv in parts:
        out = out + literal
        if field is None:
            continue
        if field not in items.columns:
            raise ConfigError(f"template field {{{field}}} is not an item column ({', '.join(map(str, items.columns))})")
        col = items[field]
        if pd.api.types.is_float_dtype(col) and (col.dropna() == col.dropna().round()).all():
            col = col.astype("Int64")
        out = out + col.astype("string").fillna("").astype(object)
    return [str(t).strip() for t in out]


def item_texts(data: Dataset, template: str | None) -> list[str]:
    """One text per item of ``data``: the template, or the text fields joined."""
    if template:
        return render_texts(data.items, template)
    if not data.text_fields:
        raise ConfigError(
            f"data set {data.name!r} has no item text fields; name them (--text-fields), give a template "
            "(--param template='{title}. {category}', or encode --template) or your own vectors (--param vectors=FILE)"
        )
    return data.item_text()


def load_vectors(path: str | Path, item_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Your own item vectors, aligned to ``item_ids``: ``(vectors, has_vector mask)``."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: vector file not found")
    if p.suffix not in (".npz", ".parquet", ".pq"):
        raise DataError(f"{p}: vector files are .parquet or .npz")
    try:
        ids, vecs = _read_vectors(p)
    except DataError:
        raise
    except Exception as exc:  # numpy, zipfile and pyarrow each raise their own type
        hint = ""
        if "Object arrays" in str(exc):
            # np.savez of a pandas column or a list of Python objects: never unpickled here
            hint = "; save the ids as strings (ids.astype(str)), not Python objects"
        raise DataError(f"{p}: cannot read this vector file ({type(exc).__name__}: {exc}){hint}") from None
    if vecs.ndim != 2 or len(vecs) != len(ids):
        raise DataError(f"{p}: {len(ids)} ids but vectors of shape {vecs.shape}")
    if not np.isfinite(vecs).all():
        bad = int(np.flatnonzero(~np.isfinite(vecs).all(axis=1))[0])
        raise DataError(f"{p}: row {bad + 1} (id {str(ids[bad])!r}) has a non-finite value")
    pos = pd.Index(ids).get_indexer(item_ids.astype(str))
    out = np.zeros((len(item_ids), vecs.shape[1]), dtype=np.float32)
    has = pos >= 0
    out[has] = vecs[pos[has]]
    log.info("%s: vectors for %d of %d items", p, int(has.sum()), len(item_ids))
    return normalize_rows(out), has


def _read_vectors(p: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(ids as str, vectors as float32)`` from an .npz or Parquet vector file."""
    if p.suffix == ".npz":
        if not zipfile.is_zipfile(p):
            raise DataError(f"{p}: not an .npz archive (np.savez writes one)")
        with np.load(p, allow_pickle=False) as z:
            if "ids" not in z or "vectors" not in z:
                raise DataError(f"{p}: an .npz vector file needs arrays 'ids' and 'vectors'")
            return z["ids"].astype(str), np.asarray(z["vectors"], dtype=np.float32)
    df = pd.read_parquet(p)
    if "id" not in df.columns:
        raise DataError(f"{p}: missing column 'id'")
    ids = df["id"].astype(str).to_numpy()
    if "embedding" in df.columns:
        return ids, np.stack(df["embedding"].to_numpy()).astype(np.float32)
    return ids, df.drop(columns="id").to_numpy(dtype=np.float32)


def item_content(
    data: Dataset, config: ContentConfig, progress: bool = False, workers: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """``(vectors (n_items, dim), has_content (n_items,))`` for every item of ``data``.

    With ``workers > 1`` the texts the cache lacks are encoded by that many Ray Data actors
    (:class:`metarec.distributed.RayEncoder`); the cache is the same.
    """
    if config.vectors:
        return load_vectors(config.vectors, data.item_ids)
    texts = item_texts(data, config.template)
    cache = None if config.cache_dir == "none" else EmbeddingCache(config.cache_dir)
    if workers > 1:
        from metarec.distributed import RayEncoder

        encoder: TextEncoder = RayEncoder(config, workers)
    else:
        encoder = make_encoder(config)
    vecs = encode_cached(encoder, texts, cache, progress=progress)
    has = np.array([bool(t) for t in texts])
    vecs[~has] = 0.0
    return vecs, has


def content_config_of(config: Any) -> ContentConfig:
    """The :class:`ContentConfig` inside a model's config (whose class extends it)."""
    return ContentConfig(**{f.name: getattr(config, f.name) for f in dataclasses.fields(ContentConfig)})


def optional_item_content(data: Dataset, config: Any, model: str, setting: str) -> tuple[np.ndarray, np.ndarray] | None:
    """:func:`item_content` for a collaborative model that also reads text when it can
    (``config`` holds :class:`ContentConfig`'s fields and ``setting``, the weight of text):
    ``None`` when that weight is 0, the data has no text, or the text extra that the default
    encoder needs is not installed (then with a warning: such a model runs without it)."""
    import importlib.util

    weight = getattr(config, setting)
    c = content_config_of(config)
    if not weight > 0 or not (c.vectors or c.template or data.text_fields):
        return None
    if not (c.vectors or c.encoder.startswith("hashing")) and not importlib.util.find_spec("sentence_transformers"):
        log.warning("%s: the items' text is not used (%s=%g) without sentence-transformers: pip install "
                    "'metarec[text]' to use it, or --param %s.%s=0 to say so", model, setting, weight, model, setting)
        return None
    vectors, has = item_content(data, c)
    return (vectors, has) if has.any() else None
