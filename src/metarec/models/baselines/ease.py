"""EASE (Steck, WWW 2019): a closed-form item-item linear autoencoder.

``B = argmin ||X - XB||^2 + lambda ||B||^2`` subject to ``diag(B) = 0``:
with ``P = (X^T X + lambda I)^-1``, ``B = -P / diag(P)`` and zero diagonal. A user (known or
new) is scored as ``history @ B``, so fold-in is exact and free.

``X`` may weight each (user, item) pair by its event value (``values="sqrt"``, the default:
the square root of a rating), so that co-occurrences of items a user rated highly count
more than those of items the user rated low; the history a user is scored from stays
binary. On data without graded values every pair weighs the same and ``B`` is the binary
model's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.linalg
import scipy.sparse as sp

from metarec.data.dataset import Dataset
from metarec.encoders.content import ContentConfig, optional_item_content
from metarec.errors import ConfigError
from metarec.models.base import Queries, Scorer


#: How event values weight EASE's pairs (:func:`value_weighted`).
VALUE_WEIGHTS = ("none", "sqrt", "log1p")


def _check_values(how: str) -> None:
    if how not in VALUE_WEIGHTS:
        raise ConfigError(f"values={how!r}: choose from {', '.join(VALUE_WEIGHTS)}")


def value_weight(values: np.ndarray, how: str) -> np.ndarray:
    """The weight of positive event ``values`` under ``how`` (``sqrt``, ``log1p``, ``none``: 1).

    >>> value_weight(np.array([4.0, 1.0]), "sqrt").tolist()
    [2.0, 1.0]
    """
    _check_values(how)
    values = np.asarray(values, dtype=np.float64)
    return {"sqrt": np.sqrt, "log1p": np.log1p}.get(how, np.ones_like)(values)


def value_weighted(data: Dataset, matrix: sp.csr_matrix, how: str) -> sp.csr_matrix:
    """``matrix`` (the binary pair matrix of ``data``) with each pair weighted by a transform
    of the largest value among its events: ``sqrt(v)`` or ``log1p(v)`` (``none``: binary).

    The readers give an event without a value the value 1 (a view, a click), so implicit
    data stays binary. A pair whose value is not positive takes the mean weight of the pairs
    whose value is, or 1 when none is.

    >>> import pandas as pd
    >>> from metarec.data.dataset import build_dataset
    >>> raw = pd.DataFrame({"user": [1, 1, 2], "item": ["a", "b", "a"], "value": [4.0, 1.0, 0.0]})
    >>> d = build_dataset(raw, source="toy.csv")
    >>> value_weighted(d, d.matrix(), "sqrt").toarray().tolist()
    [[2.0, 1.0], [1.5, 0.0]]
    """
    _check_values(how)
    if how == "none":
        return matrix
    df = data.interactions
    v = df.groupby(["user", "item"], sort=True, observed=True)["value"].max()
    users = v.index.get_level_values("user").to_numpy()
    items = v.index.get_level_values("item").to_numpy()
    v = v.to_numpy(np.float64)
    ok = np.isfinite(v) & (v > 0)
    w = np.ones(len(v))
    w[ok] = value_weight(v[ok], how)
    if ok.any():
        w[~ok] = w[ok].mean()
    out = sp.csr_matrix((w, (users, items)), shape=matrix.shape)
    if out.nnz != matrix.nnz:
        raise ValueError(f"value_weighted: {out.nnz} valued pairs but the matrix has {matrix.nnz}")
    return out


def tag_matrix(data: Dataset, columns: str, model: str = "") -> sp.csr_matrix:
    """``(n_tags, n_items)`` binary: a row per distinct value of each item column named in
    ``columns``, with a 1 for each item holding it; list values (``"Action, Thriller"``) are
    split at commas. ``model`` names the parameter in errors (``ials.tags``).

    >>> from metarec.data.dataset import build_dataset
    >>> raw = pd.DataFrame({"user": [1, 1], "item": ["a", "b"]})
    >>> items = pd.DataFrame({"genres": ["Drama, War", "War, War"]}, index=["a", "b"])
    >>> tag_matrix(build_dataset(raw, source="toy.csv", items=items), "genres").toarray().tolist()
    [[1.0, 0.0], [1.0, 1.0]]
    """
    blocks = []
    for name in (c.strip() for c in columns.split(",") if c.strip()):
        if name not in data.items.columns:
            have = ", ".join(map(str, data.items.columns)) or "none"
            raise ConfigError(f"{model + '.' if model else ''}tags: the items have no column {name!r} (they have: {have})")
        values = data.items[name].reset_index(drop=True).astype("string").str.split(",").explode().str.strip()
        values = values[values.notna() & (values != "")]
        pairs = pd.DataFrame({"item": values.index, "tag": values.to_numpy()}).drop_duplicates()  # once per item
        codes, uniq = pd.factorize(pairs["tag"], sort=True)
        blocks.append(sp.csr_matrix((np.ones(len(codes)), (codes, pairs["item"].to_numpy())),
                                    shape=(len(uniq), data.n_items)))  # fmt: skip
    return sp.vstack(blocks).tocsr() if blocks else sp.csr_matrix((0, data.n_items))


def with_tags(data: Dataset, matrix: sp.csr_matrix, tags: str, weight: float, model: str) -> sp.csr_matrix:
    """``matrix`` (users x items, weighted) with a pseudo-user row per tag below it
    (:func:`tag_matrix`), each pair weighing ``weight`` times the mean pair's weight:
    collective factorisation, which draws items sharing a genre or category together.
    ``tags``: item columns, ``auto`` for the data's declared ``tag_fields``, ``""`` for none."""
    columns = ",".join(data.tag_fields) if tags == "auto" else tags
    if not columns:
        return matrix
    if not weight > 0:
        raise ConfigError(f"{model}: tag_weight must be positive, not {weight!r}")
    mean = float(matrix.data.mean()) if matrix.nnz else 1.0
    return sp.vstack([matrix, tag_matrix(data, columns, model) * (weight * mean)]).tocsr()


def ease_weights(matrix: sp.csr_matrix, l2: float, content: tuple[np.ndarray, float] | None = None) -> np.ndarray:
    """EASE's item-item matrix ``B`` (float32, zero diagonal) for a user x item matrix, binary
    or weighted; ``l2`` is relative to the mean squared entry (1 for a binary matrix), so one
    penalty suits both.

    ``content = (C, a)``: ``B`` is drawn towards ``S = a (C C^T)`` off the diagonal (``C``:
    unit text vectors of the items, zero rows for items without) instead of towards zero:
    ``min ||X - XB||^2 + lambda ||B - S||^2`` subject to ``diag(B) = 0``, whose solution is
    ``M - P diag(mu)`` with ``M = P (G + lambda S)`` and ``mu = diag(M) / diag(P)`` (``P G =
    I - lambda P``, so ``M`` needs ``P C``, not a second dense product).

    >>> import scipy.sparse as sp
    >>> b = ease_weights(sp.csr_matrix(np.array([[1, 1, 0], [1, 1, 0], [0, 0, 1.0]])), l2=1.0)
    >>> bool(b[0, 1] > 0 and b[0, 2] == 0 and b[1, 1] == 0)
    True
    """
    gram = (matrix.T @ matrix).toarray().astype(np.float64)  # (I, I)
    scale = float(np.mean(np.square(matrix.data))) if matrix.nnz else 1.0
    lam = l2 * scale
    gram[np.diag_indices_from(gram)] += lam
    p = scipy.linalg.inv(gram, overwrite_a=True, check_finite=False)
    if content is None:
        b = -p / np.diag(p)[None, :]
    else:
        vectors, a = content
        c = vectors.astype(np.float64)
        b = (lam * a) * ((p @ c) @ c.T)  # lambda P S, S's diagonal taken out below
        b -= p * (lam * (1.0 + a * np.einsum("if,if->i", c, c)))[None, :]
        b[np.diag_indices_from(b)] += 1.0  # M = I - lambda P + lambda P S
        b -= p * (np.diag(b) / np.diag(p))[None, :]
    b[np.diag_indices_from(b)] = 0.0
    return b.astype(np.float32)


@dataclass
class EASEConfig(ContentConfig):
    """Attributes (besides :class:`~metarec.encoders.ContentConfig`'s, used when items have text):
    l2: the L2 penalty lambda (about 500 suits MovieLens-sized data), relative to the mean
        squared pair weight.
    values: how event values weight the pairs: ``sqrt`` (default; chosen on a development
        split of MovieLens-100K, see the README), ``log1p`` or ``none`` (binary).
    tags: item columns whose values join the matrix as pseudo-users (:func:`with_tags`);
        ``auto``: the data's declared ``tag_fields``; ``""`` (default): none.
    tag_weight: a tag pair's weight over the mean pair's.
    content: where items have text, ``B`` is drawn towards ``content`` times the cosine
        similarity of the items' text vectors instead of towards zero (see
        :func:`ease_weights`): items that read alike are related before any user says so,
        and the data overrides it where it speaks. 0 (default): Steck's EASE. 0.03 lifts
        EASE on four development splits of MovieLens-100K, but not the ensemble that has
        it as a member (see the README), so it is not the default yet.
    max_items: refuse larger catalogues: EASE inverts a dense items x items matrix.
    """

    l2: float = 500.0
    values: str = "sqrt"
    tags: str = ""
    tag_weight: float = 2.0
    content: float = 0.0
    max_items: int = 30_000


class EASEScorer(Scorer):
    """EASE item-item model; items with no training interaction are NaN."""

    name = "ease"
    pairs_only = True
    Config = EASEConfig
    saved_before = {"values": "none"}  # binary pairs

    def _fit(self, data: Dataset, matrix: sp.csr_matrix) -> None:
        n = data.n_items
        if n > self.config.max_items:
            raise ConfigError(
                f"ease: {n} items need a dense {n} x {n} matrix (~{8 * n * n / 2**30:.0f} GiB); "
                f"its limit is max_items={self.config.max_items}. Filter the catalogue "
                "(--min-core) or use ials/itemknn"
            )
        c = self.config
        weighted = with_tags(data, value_weighted(data, matrix, c.values), c.tags, c.tag_weight, self.name)
        text = optional_item_content(data, c, self.name, "content")
        self.weights_ = ease_weights(weighted, c.l2, None if text is None else (text[0], c.content))

    def _score(self, queries: Queries) -> np.ndarray:
        s = np.asarray(queries.history @ self.weights_)  # (n, I)
        s[:, ~self.known_items_] = np.nan
        return s

    def get_state(self) -> dict[str, np.ndarray]:
        return {**super().get_state(), "weights": self.weights_}

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        super().set_state(state)
        self.weights_ = state["weights"]
