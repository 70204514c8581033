"""User and item attributes as arrays a network reads: categorical codes and scaled numbers.

Columns are typed from the data: string/categorical columns (other than the item text
fields, which reach the network as content vectors) become categorical codes over their most
frequent values (code 0 = missing or rare); numeric columns become standardised numbers
(``log1p`` first when they are non-negative and heavy-tailed, as prices are; missing = 0).
Arrays are aligned to the data set's vocabularies, so a user never trained on (a cold user)
still has attributes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from metarec.data.dataset import Dataset


@dataclass
class Attributes:
    """One entity's attributes: ``codes`` ``(n, n_cat)`` int64 with ``sizes`` (vocabulary
    size per column, code 0 included), ``numbers`` ``(n, n_num)`` float32, and the column names."""

    codes: np.ndarray
    sizes: list[int]
    numbers: np.ndarray
    cat_columns: list[str]
    num_columns: list[str]

    def extend(self, n: int) -> Attributes:
        """``n`` more rows with no known attribute (new items)."""
        return Attributes(
            np.vstack([self.codes, np.zeros((n, self.codes.shape[1]), dtype=np.int64)]),
            self.sizes,
            np.vstack([self.numbers, np.zeros((n, self.numbers.shape[1]), dtype=np.float32)]),
            self.cat_columns,
            self.num_columns,
        )

    def state(self, prefix: str) -> dict[str, np.ndarray]:
        return {f"{prefix}.codes": self.codes, f"{prefix}.sizes": np.asarray(self.sizes, dtype=np.int64),
                f"{prefix}.numbers": self.numbers}  # fmt: skip

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray], prefix: str) -> Attributes:
        codes, numbers = np.asarray(state[f"{prefix}.codes"]), np.asarray(state[f"{prefix}.numbers"])
        return cls(codes, [int(s) for s in state[f"{prefix}.sizes"]], numbers, [""] * codes.shape[1], [""] * numbers.shape[1])


def encode_attributes(frame: pd.DataFrame, n: int, skip: tuple[str, ...] = (), max_vocab: int = 5000) -> Attributes:
    """Codes and numbers for the columns of ``frame`` (``n`` rows) except ``skip``.

    >>> a = encode_attributes(pd.DataFrame({"g": ["M", "F", None], "age": [20, 40, None]}), 3)
    >>> a.codes[:, 0].tolist(), a.sizes, a.numbers[:, 0].round(2).tolist()
    ([1, 2, 0], [3], [-1.0, 1.0, 0.0])
    """
    codes, sizes, numbers, cats, nums = [], [], [], [], []
    for col in frame.columns:
        if col in skip:
            continue
        s = frame[col]
        if pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
            x = pd.to_numeric(s, errors="coerce").astype(np.float64).to_numpy()
            ok = np.isfinite(x)
            if not ok.any() or np.nanstd(x[ok]) == 0:
                continue
            if x[ok].min() >= 0 and np.quantile(x[ok], 0.99) > 20 * max(np.median(x[ok]), 1e-9):
                x = np.log1p(np.where(ok, x, 0.0))
            mu, sd = x[ok].mean(), x[ok].std()
            numbers.append(np.where(ok, (x - mu) / sd, 0.0).astype(np.float32))
            nums.append(str(col))
        else:
            values = s.astype("string")
            top = values.value_counts().index[:max_vocab]
            if len(top) < 2:
                continue
            code = pd.Index(top).get_indexer(values.fillna("\0"))
            codes.append((code + 1).astype(np.int64))  # -1 (missing or rare) -> 0
            sizes.append(len(top) + 1)
            cats.append(str(col))
    return Attributes(
        np.stack(codes, axis=1) if codes else np.zeros((n, 0), dtype=np.int64),
        sizes,
        np.stack(numbers, axis=1) if numbers else np.zeros((n, 0), dtype=np.float32),
        cats,
        nums,
    )


def user_attributes(data: Dataset, max_vocab: int = 5000) -> Attributes:
    """The users' attributes (age, gender, occupation, ...), one row per user."""
    users = data.users if len(data.users) == data.n_users else pd.DataFrame(index=range(data.n_users))
    return encode_attributes(users.reset_index(drop=True), data.n_users, max_vocab=max_vocab)


def item_attributes(data: Dataset, max_vocab: int = 5000) -> Attributes:
    """The items' non-text attributes (category, brand, price, year, ...), one row per item."""
    items = data.items if len(data.items) == data.n_items else pd.DataFrame(index=range(data.n_items))
    return encode_attributes(items.reset_index(drop=True), data.n_items, skip=tuple(data.text_fields), max_vocab=max_vocab)
