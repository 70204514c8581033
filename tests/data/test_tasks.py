"""Event types -> tasks: the one mapping, on known answers."""

import pandas as pd
import pytest

from metarec.data import build_dataset
from metarec.data.tasks import Task, default_tasks, parse_tasks, resolve_tasks, task_labels
from metarec.errors import ConfigError


def events_dataset(rows):
    raw = pd.DataFrame(rows, columns=["user", "item", "event", "value", "timestamp"])
    return build_dataset(raw, source="t.csv")


@pytest.fixture
def ratings():
    return events_dataset([("a", "x", "rating", 5, 1), ("a", "y", "rating", 2, 2), ("b", "x", "rating", 4, 3), ("b", "z", "rating", 3, 4)])


def test_default_tasks_for_ratings_and_for_behaviours(ratings):
    assert [(t.name, t.kind, t.min_value) for t in default_tasks(ratings)] == [
        ("rated", "binary", None), ("liked", "binary", 4.0), ("rating", "regression", None),
    ]  # fmt: skip
    shop = events_dataset([("a", "x", "pv", 1, 1), ("a", "x", "buy", 1, 2), ("b", "y", "cart", 1, 3)])
    assert [t.name for t in default_tasks(shop)] == ["buy", "cart", "pv"]
    two = events_dataset([("a", "x", "stars", 5, 1), ("a", "y", "stars", 2, 2), ("b", "x", "stars", 3, 3),
                          ("a", "x", "score", 1, 4), ("b", "y", "score", 4, 5), ("b", "z", "score", 5, 6)])  # fmt: skip
    assert [t.name for t in default_tasks(two)] == ["score_rated", "score_liked", "score", "stars_rated", "stars_liked", "stars"]


def test_labels_known_answer(ratings):
    inter = ratings.interactions
    liked = task_labels(inter, Task("liked", "binary", ("rating",), 4.0))
    pairs = {(ratings.user_ids[u], ratings.item_ids[i]) for u, i in zip(liked["user"], liked["item"])}
    assert pairs == {("a", "x"), ("b", "x")}
    rating = task_labels(inter, Task("rating", "regression", ("rating",)))
    assert sorted(rating["label"].tolist()) == [2.0, 3.0, 4.0, 5.0]


def test_spec_parsing_and_errors(ratings):
    tasks = parse_tasks("click=pv, cart=cart|fav, buy=buy")
    assert tasks[1] == Task("cart", "binary", ("cart", "fav"))
    with pytest.raises(ConfigError, match="expected name=event"):
        parse_tasks("buy is buy")
    with pytest.raises(ConfigError, match="duplicate"):
        parse_tasks("a=x,a=y")
    with pytest.raises(ConfigError, match="regression task takes no threshold"):
        parse_tasks("r~rating>=4")
    with pytest.raises(ConfigError, match="event type 'buy' is not in the data"):
        resolve_tasks(ratings, "buy=buy")
    assert [t.name for t in resolve_tasks(ratings, "liked=rating>=4")] == ["liked"]
