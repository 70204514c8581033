"""Online state: a trained model plus everything the event store has seen since.

Each user's history is the training history plus every stored event, so an event changes
that user's next recommendation at once (the scorer folds the history in at request time).
Items PUT to the service are encoded and scorable at once (content models), and a model
with MetaEmb warms a new item's embedding up on its first events; deleted items are never
recommended. All of it is rebuilt from the store on start, so a restart (or a
second replica) serves the same state.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict, defaultdict
from collections.abc import Sequence
from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np
import pandas as pd

from metarec.data.queries import Queries
from metarec.errors import DataError
from metarec.models.io import TrainedModel
from metarec.ranking import top_k_explore
from metarec.serving.retrain import attribute_text, write_over
from metarec.serving.store import Event, EventStore

log = logging.getLogger(__name__)


class ReadWriteLock:
    """Many readers or one writer (writers are rare: new items, deletions)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if self._readers == 0:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            while self._readers:
                self._cond.wait()
            yield


def _category_text(items: pd.DataFrame) -> list[str]:
    for col in ("category", "genres", "categories"):
        if col in items.columns:
            return items[col].fillna("").astype(str).str.lower().tolist()
    return [""] * len(items)


class OnlineRecommender:
    """Recommendations from a :class:`TrainedModel` and the live event store."""

    def __init__(self, model: TrainedModel, store: EventStore) -> None:
        self.model = model
        self.store = store
        self.lock = ReadWriteLock()
        self.item_index: dict[str, int] = {str(k): i for i, k in enumerate(model.item_ids)}
        self.user_index: dict[str, int] = {str(k): i for i, k in enumerate(model.user_ids)}
        # The users' attributes as trained: a PUT replaces what was PUT before, over these.
        self.trained_users = model.users.copy()
        self.online: dict[str, set[int]] = defaultdict(set)
        self.deleted = np.zeros(len(model.item_ids), dtype=bool)
        # Users per item, training and live: breaks ties in a ranking, so a user a model has
        # nothing to say about (no history, under EASE or iALS) gets the popular items.
        self.popularity = model.popularity()
        self.trained = self.popularity > 0  # items with training pairs (the rest are new: ``explore``)
        self.categories = _category_text(model.items)
        self._category_masks: OrderedDict[str, np.ndarray] = OrderedDict()  # the last few filters asked for
        self.texts: dict[str, str] = {}
        self.put_attributes: dict[str, dict[str, Any]] = {}  # the last PUT /items of each item
        self.can_add_items = model.scorer.can_add_items
        self.last_seq = 0
        self.items_seen_until = -1.0
        self.users_seen_until = -1.0
        # Users of each never-trained item, for models that warm new items up on their events.
        self.cold_users: dict[int, set[str]] = defaultdict(set)
        self.warm_up_users = 256
        self.replay()

    # ------------------------------------------------------------- state
    def replay(self) -> None:
        """Apply every stored item change and event (start-up)."""
        self.catch_up()

    def catch_up(self) -> None:
        """Apply the item changes and events that any writer (this process, another worker,
        another replica) stored since we last looked. Cheap when there is nothing new."""
        for item in self.store.items(since=self.items_seen_until):
            if item.deleted:
                self.delete_item(item.item_id, persist=False)
            else:
                self.put_item(item.item_id, item.text, item.attributes, persist=False)
            self.items_seen_until = max(self.items_seen_until, item.updated)
        for user_id, attributes, updated in self.store.user_changes(since=self.users_seen_until):
            try:
                self.put_user(user_id, attributes, persist=False)
            except DataError as exc:  # stored before attributes were checked: served without them
                log.warning("user %r: attributes not applied: %s", user_id, exc)
            self.users_seen_until = max(self.users_seen_until, updated)
        while True:
            batch = self.store.events_since(self.last_seq)
            if not batch:
                return
            self.apply(batch)

    def apply(self, events: Sequence[Event]) -> None:
        scorer = self.model.scorer
        warming = getattr(scorer, "can_warm_up", False)
        touched: set[int] = set()
        with self.lock.write():
            for e in events:
                i = self.item_index.get(e.item_id)
                if i is not None:
                    if i not in self.online[e.user_id] and not self._trained_pair(e.user_id, i):
                        self.popularity[i] += 1
                    self.online[e.user_id].add(i)
                    if warming and not scorer.known_items_[i]:
                        self.cold_users[i].add(e.user_id)
                        touched.add(i)
                if e.seq is not None:
                    self.last_seq = max(self.last_seq, e.seq)
            for i in sorted(touched):  # a new item's first events warm its embedding up (MetaEmb)
                users = sorted(self.cold_users[i])[-self.warm_up_users :]
                # (each user as `recommend` scores them: their index, their history since)
                histories = [[j for j in self.history(u) if j != i] for u in users]
                idx = np.array([self.user_index.get(u, -1) for u in users])
                scorer.warm_up(i, Queries.from_histories(idx, histories, len(self.item_index), refresh=idx >= 0))

    def _trained_pair(self, user_id: str, i: int) -> bool:
        u = self.user_index.get(user_id)
        if u is None:
            return False
        h = self.model.history  # (a row slice of the CSR arrays: a scipy row copy costs 10x more)
        return bool((h.indices[h.indptr[u] : h.indptr[u + 1]] == i).any())

    def unknown_items(self, item_ids: Sequence[str]) -> list[str]:
        return [i for i in item_ids if i not in self.item_index or self.deleted[self.item_index[i]]]

    def put_item(self, item_id: str, text: str, attributes: dict[str, Any], persist: bool = True) -> bool:
        """Add (or revive) an item; returns whether it was new. Raises ConfigError when the
        model cannot score items from content and the item is not in its catalogue, and a
        DataError naming the item and attribute when a value does not fit one of the model's
        numeric item columns (``"year": [1, 2]``), as retraining would read it; nothing is
        stored then (before, the PUT was acknowledged and the next retrain failed on it)."""
        if persist:
            if item_id not in self.item_index:
                self.model.check_can_add_items()
            base = self.model.items.iloc[:0].reindex([0]).set_axis([item_id])
            given = {k: v for k, v in attributes.items() if k in base.columns}
            write_over(base, {item_id: given}, "item", f"PUT /items/{item_id}")
            self.store.upsert_item(item_id, text, attributes)
        category = (attribute_text(attributes.get("category", attributes.get("genres"))) or "").lower()
        with self.lock.write():
            self.put_attributes[item_id] = dict(attributes)
            if item_id in self.item_index:
                i = self.item_index[item_id]
                self.deleted[i] = False
                if category:
                    self.categories[i] = category
                    self._category_masks.clear()
                if self.can_add_items and text and self.texts.get(item_id) != text:
                    self.model.update_items([item_id], [text])  # a changed text counts at once
                self.texts[item_id] = text
                return False
            self.texts[item_id] = text
            if not self.can_add_items:
                return False
            (i,) = self.model.add_items([item_id], [text])
            self.item_index[item_id] = int(i)
            self.deleted = np.append(self.deleted, False)
            self.popularity = np.append(self.popularity, 0.0)
            self.trained = np.append(self.trained, False)
            self.categories.append(category)
            self._category_masks.clear()
            return True

    def put_user(self, user_id: str, attributes: dict[str, Any], persist: bool = True) -> bool:
        """Store a user's attributes and serve with them at once; returns whether the user is
        new to the model. A user the model does not know joins its vocabulary (never trained
        on), so models that read user attributes (the networks) score a new user from them,
        before any event; a known user's replace what an earlier PUT gave, over the model's
        (as the store keeps them, and as retraining reads them). Only the
        attributes the model was trained with count; a value that does not fit a numeric
        one (``"age": "old"``) is a DataError naming the user and the attribute, and nothing
        is stored then."""
        model = self.model
        u = self.user_index.get(user_id)
        trained = self.trained_users
        base = trained.iloc[[u]] if u is not None and u < len(trained) else trained.iloc[:0].reindex([0])
        base = base.set_axis([user_id])
        given = {k: v for k, v in attributes.items() if k in base.columns}
        row = write_over(base.copy(), {user_id: given}, "user", f"PUT /users/{user_id}")
        if persist:
            self.store.upsert_user(user_id, attributes)
        with self.lock.write():
            if u is not None:
                model.update_users(np.array([u]), row)
                return False
            (i,) = model.add_users([user_id], row)
            self.user_index[user_id] = int(i)
            return True

    def delete_item(self, item_id: str, persist: bool = True) -> bool:
        if persist:
            self.store.delete_item(item_id)
        with self.lock.write():
            i = self.item_index.get(item_id)
            if i is None:
                return False
            self.deleted[i] = True
            return True

    def item(self, item_id: str) -> dict[str, Any] | None:
        i = self.item_index.get(item_id)
        if i is None or self.deleted[i]:
            return None
        row = self.model.items.iloc[i] if i < len(self.model.items) else pd.Series(dtype=object)
        attrs = {k: (None if pd.isna(v) else v) for k, v in row.items()}
        put = self.put_attributes.get(item_id)
        if put is not None:  # a PUT replaces the item, as retraining reads it: its text, its attributes
            text_fields = set(self.model.config.get("text_fields") or [])
            attrs = {k: (v if k in text_fields else None) for k, v in attrs.items()} | put
        return {"id": item_id, "text": self.texts.get(item_id), "attributes": attrs}

    # ----------------------------------------------------------- scoring
    def history(self, user_id: str | None) -> list[int]:
        if user_id is None:
            return []
        hist = set(self.online.get(user_id, ()))
        u = self.user_index.get(user_id)
        if u is not None:
            hist.update(self.model.history[u].indices.tolist())
        return sorted(hist)

    def recommend(
        self,
        user_id: str | None,
        n: int = 10,
        history: Sequence[int] | None = None,
        category: str | None = None,
        exclude: Sequence[str] = (),
        exclude_seen: bool = True,
        exclude_items: Sequence[int] = (),
        explore: float = 0.0,
    ) -> list[tuple[str, float]]:
        """Top ``n`` ``(item_id, score)``; unscorable, deleted and excluded items never appear.
        ``explore``: the share of every first places that items without training pairs hold
        at least, where there are enough of them (:func:`metarec.ranking.explore_new`)."""
        with self.lock.read():
            hist = list(self.history(user_id) if history is None else history)
            n_items = len(self.item_index)
            # The user keeps their index (id, attributes); a trained user with events since
            # training is marked, so that models with a trained per-user state that ignores
            # the history (factor models) fold them in from the full history instead.
            u = self.user_index.get(user_id, -1) if user_id is not None and history is None else -1
            q = Queries.from_histories([u], [hist], n_items, refresh=[u >= 0 and bool(self.online.get(user_id))])
            scores = self.model.scorer.score(q)[0]
            blocked = self.deleted.copy()
            if exclude_seen:
                blocked[hist] = True
            blocked[list(exclude_items)] = True
            for item_id in exclude:
                i = self.item_index.get(item_id)
                if i is not None:
                    blocked[i] = True
            if category:
                blocked |= ~self._in_category(category.lower())
            scores = np.where(blocked, np.nan, scores)
            order = top_k_explore(scores[None, :], n, ~self.trained, explore, self.popularity)[0]
            order = order[order >= 0]
            ids = self.model.item_ids
            return [(str(ids[i]), float(scores[i])) for i in order if np.isfinite(scores[i])]

    def _in_category(self, category: str) -> np.ndarray:
        """Which items' category text holds ``category``; the last 32 filters are kept (a
        Python scan of every item's text made a filtered 10k-item request 3.3 ms instead of
        2.4), and forgotten when an item's category changes. Called under the read lock."""
        mask = self._category_masks.get(category)
        if mask is None or len(mask) != len(self.categories):
            mask = np.fromiter((category in t for t in self.categories), dtype=bool, count=len(self.categories))
            self._category_masks[category] = mask
            while len(self._category_masks) > 32:
                self._category_masks.popitem(last=False)
        return mask

    def similar(self, item_id: str, n: int = 10) -> list[tuple[str, float]]:
        """Items a user who interacted with ``item_id`` alone would get next."""
        i = self.item_index[item_id]
        return self.recommend(None, n=n, history=[i])
