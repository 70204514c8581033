"""The PostgreSQL store against a real server ($METAREC_PG_URL; .ci/run starts one), and two
service replicas sharing it."""

import os

import pytest

psycopg = pytest.importorskip("psycopg")

from fastapi.testclient import TestClient  # noqa: E402

from metarec.data.synthetic import WorldConfig, make_world  # noqa: E402
from metarec.models import make_scorer  # noqa: E402
from metarec.models.io import save_model  # noqa: E402
from metarec.serving.app import create_app  # noqa: E402
from metarec.serving.store import Event, open_store  # noqa: E402

KEY = {"X-API-Key": "k"}


@pytest.fixture
def pg_url():
    url = os.environ.get("METAREC_PG_URL")
    if not url:
        pytest.skip("METAREC_PG_URL is not set (no PostgreSQL server here; .ci/run starts one)")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS events, items, users")
    return url


def test_postgres_store_is_idempotent_and_ordered(pg_url):
    store = open_store(pg_url)
    try:
        e = [Event(f"e{i}", "alice", f"i{i}", "view", 1.0, 100.0 + i) for i in range(3)]
        assert store.add_events(e) == (3, 0)
        assert store.add_events(e[:2]) == (0, 2)
        assert [x.event_id for x in store.user_events("alice")] == ["e2", "e1", "e0"]
        assert [x.event_id for x in store.events_since(1)] == ["e1", "e2"]
        store.upsert_item("x", "a red kettle", {"category": "kitchen"})
        store.delete_item("x")
        (item,) = store.items()
        assert item.deleted and item.text == "a red kettle"
        store.upsert_user("alice", {"age": 30})
        assert store.user("alice") == {"age": 30}
        # Parameterised SQL: a quote in an id is data, not syntax.
        store.add_events([Event("e'; DROP TABLE events; --", "o'brien", "i1", "view")])
        assert store.user_events("o'brien")[0].event_id.startswith("e'")
    finally:
        store.close()


def test_two_replicas_share_one_store(pg_url, tmp_path):
    data = make_world(WorldConfig(n_users=150, n_items=80, seed=4))
    save_model(make_scorer("hybrid", encoder="hashing-64").fit(data), data, tmp_path / "m")
    with TestClient(create_app(tmp_path / "m", pg_url, "k")) as a, TestClient(create_app(tmp_path / "m", pg_url, "k")) as b:
        before = [x["id"] for x in b.get("/users/zoe/recommendations?n=10").json()["items"]]
        clicked = ["i00004", "i00017", "i00033"]
        r = a.post("/events", json={"events": [{"user_id": "zoe", "item_id": i} for i in clicked]}, headers=KEY)
        assert r.status_code == 200
        after = [x["id"] for x in b.get("/users/zoe/recommendations?n=10").json()["items"]]
        assert after != before and not set(clicked) & set(after)  # B saw A's events at once
        assert a.put("/items/shared-new", json={"text": "Brand02 compact tent"}, headers=KEY).status_code == 200
        assert b.get("/items/shared-new").status_code == 200
        assert a.delete("/items/i00050", headers=KEY).status_code == 200
        assert b.get("/items/i00050").status_code == 404
