"""User and item attributes as arrays a network reads: categorical codes and scaled numbers.

Columns are typed from the data: string/categorical columns (other than the item text
fields, which reach the network as content vectors) become categorical codes over their most
frequent values (code 0 = missing or rare); numeric columns become standardised numbers
(``log1p`` first when they are non-negative and heavy-tailed, as prices are; missing = 0).
Arrays are aligned to the data set's vocabularies, so a user never trained on (a cold user)
still has attributes.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from metarec.data.dataset import Dataset


@dataclass
class Attributes:
    """One entity's attributes: ``codes`` ``(n, n_cat)`` int64 with ``sizes`` (vocabulary
    size per column, code 0 included), ``numbers`` ``(n, n_num)`` float32, and the column names.

    ``coding`` is how the columns were coded (each categorical column's vocabulary, each
    numeric column's scaling), so that rows added later (a new user's attributes, given to
    the service) are coded exactly as the training rows were: :meth:`encode`. It is ``None``
    for a model saved before it was kept; new rows then code as missing."""

    codes: np.ndarray
    sizes: list[int]
    numbers: np.ndarray
    cat_columns: list[str]
    num_columns: list[str]
    coding: dict | None = None

    def extend(self, n: int) -> Attributes:
        """``n`` more rows with no known attribute (new items)."""
        return self.append(np.zeros((n, self.codes.shape[1]), dtype=np.int64), np.zeros((n, self.numbers.shape[1]), dtype=np.float32))

    def append(self, codes: np.ndarray, numbers: np.ndarray) -> Attributes:
        """These rows added at the end (as :meth:`encode` returns them)."""
        return dataclasses.replace(self, codes=np.vstack([self.codes, codes]), numbers=np.vstack([self.numbers, numbers]))

    def encode(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """``(codes, numbers)`` of new rows ``frame``, coded as the training rows were: an
        unseen category or a missing column is code 0, a missing or non-numeric number 0."""
        if self.coding is None:
            n = len(frame)
            return np.zeros((n, self.codes.shape[1]), dtype=np.int64), np.zeros((n, self.numbers.shape[1]), dtype=np.float32)
        return _apply_coding(self.coding, frame)

    def state(self, prefix: str) -> dict[str, np.ndarray]:
        out = {f"{prefix}.codes": self.codes, f"{prefix}.sizes": np.asarray(self.sizes, dtype=np.int64),
               f"{prefix}.numbers": self.numbers}  # fmt: skip
        if self.coding is not None:
            out[f"{prefix}.coding"] = np.frombuffer(json.dumps(self.coding).encode(), dtype=np.uint8).copy()
        return out

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray], prefix: str) -> Attributes:
        codes, numbers = np.asarray(state[f"{prefix}.codes"]), np.asarray(state[f"{prefix}.numbers"])
        coding = state.get(f"{prefix}.coding")
        if coding is None:  # saved before the coding was kept
            return cls(codes, [int(s) for s in state[f"{prefix}.sizes"]], numbers, [""] * codes.shape[1], [""] * numbers.shape[1])
        coding = json.loads(bytes(np.asarray(coding, dtype=np.uint8)).decode())
        return cls(codes, [int(s) for s in state[f"{prefix}.sizes"]], numbers,
                   [c for c, _ in coding["cat"]], [c for c, *_ in coding["num"]], coding)  # fmt: skip


def _numbers(s: pd.Series | None, n: int) -> np.ndarray:
    """A column as float64 (missing, or not a number: NaN)."""
    if s is None:
        return np.full(n, np.nan)
    return pd.to_numeric(s, errors="coerce").astype(np.float64).to_numpy()


def _fit_coding(frame: pd.DataFrame, skip: tuple[str, ...], max_vocab: int) -> dict:
    """How to code each usable column of ``frame``: ``{"cat": [[column, vocabulary]],
    "num": [[column, log1p, mean, std]]}`` (JSON, kept with the model)."""
    cats, nums = [], []
    for col in frame.columns:
        if col in skip:
            continue
        s = frame[col]
        if pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
            x = _numbers(s, len(s))
            ok = np.isfinite(x)
            if not ok.any() or np.nanstd(x[ok]) == 0:
                continue
            log = bool(x[ok].min() >= 0 and np.quantile(x[ok], 0.99) > 20 * max(np.median(x[ok]), 1e-9))
            if log:
                x = np.log1p(np.where(ok, x, 0.0))
            nums.append([str(col), log, float(x[ok].mean()), float(x[ok].std())])
        else:
            top = s.astype("string").value_counts().index[:max_vocab]
            if len(top) < 2:
                continue
            cats.append([str(col), [str(v) for v in top]])
    return {"cat": cats, "num": nums}


def _apply_coding(coding: dict, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """``(codes, numbers)`` of ``frame``'s rows under ``coding`` (see :func:`_fit_coding`)."""
    n = len(frame)
    columns = {str(c): c for c in frame.columns}
    codes = []
    for col, vocab in coding["cat"]:
        s = frame[columns[col]].astype("string") if col in columns else pd.Series(pd.NA, index=range(n), dtype="string")
        codes.append((pd.Index(vocab).get_indexer(s.fillna("\0")) + 1).astype(np.int64))  # -1 (missing or rare) -> 0
    numbers = []
    for col, log, mu, sd in coding["num"]:
        x = _numbers(frame[columns[col]] if col in columns else None, n)
        ok = np.isfinite(x)
        if log:
            with np.errstate(invalid="ignore", divide="ignore"):
                x = np.log1p(np.where(ok, x, 0.0))
            ok &= np.isfinite(x)
        numbers.append(np.where(ok, (x - mu) / sd, 0.0).astype(np.float32))
    return (
        np.stack(codes, axis=1) if codes else np.zeros((n, 0), dtype=np.int64),
        np.stack(numbers, axis=1) if numbers else np.zeros((n, 0), dtype=np.float32),
    )


def encode_attributes(frame: pd.DataFrame, n: int, skip: tuple[str, ...] = (), max_vocab: int = 5000) -> Attributes:
    """Codes and numbers for the columns of ``frame`` (``n`` rows) except ``skip``.

    >>> a = encode_attributes(pd.DataFrame({"g": ["M", "F", None], "age": [20, 40, None]}), 3)
    >>> a.codes[:, 0].tolist(), a.sizes, a.numbers[:, 0].round(2).tolist()
    ([1, 2, 0], [3], [-1.0, 1.0, 0.0])
    >>> codes, numbers = a.encode(pd.DataFrame({"g": ["F", "X"], "age": [40, "old"]}))
    >>> codes[:, 0].tolist(), numbers[:, 0].round(2).tolist()
    ([2, 0], [1.0, 0.0])
    """
    coding = _fit_coding(frame, skip, max_vocab)
    codes, numbers = _apply_coding(coding, frame)
    return Attributes(codes, [len(v) + 1 for _, v in coding["cat"]], numbers,
                      [c for c, _ in coding["cat"]], [c for c, *_ in coding["num"]], coding)  # fmt: skip


def user_attributes(data: Dataset, max_vocab: int = 5000) -> Attributes:
    """The users' attributes (age, gender, occupation, ...), one row per user."""
    users = data.users if len(data.users) == data.n_users else pd.DataFrame(index=range(data.n_users))
    return encode_attributes(users.reset_index(drop=True), data.n_users, max_vocab=max_vocab)


def item_attributes(data: Dataset, max_vocab: int = 5000) -> Attributes:
    """The items' non-text attributes (category, brand, price, year, ...), one row per item."""
    items = data.items if len(data.items) == data.n_items else pd.DataFrame(index=range(data.n_items))
    return encode_attributes(items.reset_index(drop=True), data.n_items, skip=tuple(data.text_fields), max_vocab=max_vocab)
