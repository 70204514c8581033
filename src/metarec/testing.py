"""Small data sets with known answers, shared by the tests and the docstring examples."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from metarec.data.dataset import Dataset, build_dataset


def tiny_dataset(
    histories: Sequence[Sequence[int]], n_items: int | None = None, titles: Sequence[str] | None = None
) -> Dataset:
    """A Dataset where user ``u`` (id ``"u<u>"``) interacted with the item indices in
    ``histories[u]`` (ids ``"i<i>"``), one event per pair, timestamps in listed order.

    >>> tiny_dataset([[0, 1], [1]]).matrix().toarray().tolist()
    [[1.0, 1.0], [0.0, 1.0]]
    """
    n_items = n_items or (max((max(h) for h in histories if len(h)), default=-1) + 1)
    rows = [(u, i, t) for u, h in enumerate(histories) for t, i in enumerate(h)]
    raw = pd.DataFrame(
        {
            "user": [f"u{u}" for u, _, _ in rows],
            "item": [f"i{i}" for _, i, _ in rows],
            "timestamp": [1_000_000 + 10 * t + u for u, _, t in rows],
        }
    )
    titles = list(titles) if titles is not None else [f"item {i}" for i in range(n_items)]
    items = pd.DataFrame({"title": titles}, index=[f"i{i}" for i in range(n_items)])
    users = pd.DataFrame({"group": ["x"] * len(histories)}, index=[f"u{u}" for u in range(len(histories))])
    return build_dataset(raw, source="tiny", items=items, users=users, name="tiny", text_fields=("title",))


def checkerboard(n_users: int = 40, n_items: int = 20, seed: int = 0) -> tuple[Dataset, np.ndarray]:
    """Two groups: users in group g interact only with items of block g, each missing one.

    Item titles name their block (``red kettle`` for block 0, ``blue tent`` for block 1), so
    content models have the same answer to find.

    Returns the data set and ``missing[u]``: the block item user ``u`` has not seen, which a
    collaborative scorer should rank first among the unseen items.
    """
    rng = np.random.default_rng(seed)
    half_u, half_i = n_users // 2, n_items // 2
    histories, missing = [], []
    for u in range(n_users):
        block = np.arange(half_i) if u < half_u else np.arange(half_i, n_items)
        miss = block[rng.integers(0, len(block))]
        histories.append([int(i) for i in block if i != miss])
        missing.append(int(miss))
    titles = [f"{'red kettle' if i < half_i else 'blue tent'} model {i}" for i in range(n_items)]
    return tiny_dataset(histories, n_items, titles), np.asarray(missing)
