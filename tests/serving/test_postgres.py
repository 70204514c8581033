"""The PostgreSQL store against a real server ($METAREC_PG_URL; .ci/run starts one), and two
service replicas sharing it."""

import pytest

psycopg = pytest.importorskip("psycopg")

from fastapi.testclient import TestClient  # noqa: E402

from metarec.data.synthetic import WorldConfig, make_world  # noqa: E402
from metarec.models import make_scorer  # noqa: E402
from metarec.models.io import save_model  # noqa: E402
from metarec.serving.app import create_app  # noqa: E402
from metarec.serving.store import Event, open_store  # noqa: E402

KEY = {"X-API-Key": "k"}


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


def test_replicas_of_one_named_service_follow_a_reload_through_postgres(pg_url, tmp_path):
    """`metarec serve --service shop` on two machines: the reload is recorded in PostgreSQL."""
    import uuid

    data = make_world(WorldConfig(n_users=60, n_items=40, seed=4))
    save_model(make_scorer("ease").fit(data), data, tmp_path / "ease")
    save_model(make_scorer("pop").fit(data), data, tmp_path / "pop")
    name = f"shop-{uuid.uuid4().hex[:8]}"  # the server outlives the test: a name of this run

    def replica(**kw):
        return TestClient(create_app(tmp_path / "ease", pg_url, "k", **kw))

    with replica(service=name) as a, replica(service=name) as b, replica() as other:
        r = a.post("/admin/reload", json={"model_dir": str(tmp_path / "pop")}, headers=KEY)
        assert r.status_code == 200 and b.get("/health/ready").json()["model"] == "pop"
        assert other.get("/health/ready").json()["model"] == "ease"
        with replica(service=name) as later:
            assert later.get("/health/ready").json()["model"] == "pop"


def test_a_replica_killed_mid_traffic_loses_no_acknowledged_event(pg_url, tmp_path):
    """Two `metarec serve` processes on one PostgreSQL store, traffic into both; replica A is
    SIGKILLed mid-traffic. Every event either replica acknowledged is in the store, replica B
    serves them, and B's next recommendation reflects the clicks A took."""
    import signal
    import threading
    import time

    import httpx

    from tests.serving.servers import free_port, start_server

    data = make_world(WorldConfig(n_users=100, n_items=60, seed=9))
    save_model(make_scorer("ease").fit(data), data, tmp_path / "m")
    ports = free_port(), free_port()
    a, b = (start_server(tmp_path / "m", pg_url, p) for p in ports)
    try:
        before = [x["id"] for x in httpx.get(f"http://127.0.0.1:{ports[1]}/users/solo/recommendations?n=10").json()["items"]]
        acked: set[str] = set()
        lock = threading.Lock()
        stop = threading.Event()

        def ingest(port: int, tag: str) -> None:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=KEY, timeout=5) as c:
                for k in range(2000):
                    if stop.is_set():
                        return
                    batch = [{"event_id": f"{tag}-{k}-{j}", "user_id": f"u{j % 7}", "item_id": f"i{(k + j) % 60:05d}"}
                             for j in range(5)]  # fmt: skip
                    try:
                        r = c.post("/events", json={"events": batch})
                    except httpx.HTTPError:
                        return  # the replica is gone: what it did not acknowledge may be lost
                    if r.status_code == 200:
                        with lock:
                            acked.update(e["event_id"] for e in batch)

        # The clicks of a new user, through A only, acknowledged before the kill.
        clicked = ["i00004", "i00017", "i00033"]
        r = httpx.post(f"http://127.0.0.1:{ports[0]}/events", headers=KEY,
                       json={"events": [{"user_id": "solo", "item_id": i} for i in clicked]})  # fmt: skip
        assert r.status_code == 200
        threads = [threading.Thread(target=ingest, args=(ports[0], f"a{t}")) for t in range(2)]
        threads.append(threading.Thread(target=ingest, args=(ports[1], "b")))
        for t in threads:
            t.start()
        time.sleep(1.5)
        a.send_signal(signal.SIGKILL)
        a.wait(timeout=10)
        time.sleep(0.5)  # B keeps taking traffic after A is gone
        stop.set()
        for t in threads:
            t.join(timeout=10)
        assert sum(e.startswith("a") for e in acked) > 50 and sum(e.startswith("b") for e in acked) > 50
        stored = set()
        for u in range(7):
            r = httpx.get(f"http://127.0.0.1:{ports[1]}/users/u{u}/events", params={"n": 10_000}, timeout=10)
            events = r.json()["events"]
            assert len(events) < 10_000  # all of them came back
            stored.update(e["event_id"] for e in events)
        assert acked <= stored, f"{len(acked - stored)} acknowledged events lost"
        after = [x["id"] for x in httpx.get(f"http://127.0.0.1:{ports[1]}/users/solo/recommendations?n=10").json()["items"]]
        assert after != before and not set(clicked) & set(after)
    finally:
        for p in (a, b):
            p.kill()
            p.wait(timeout=10)


def test_reads_leave_no_transaction_open(pg_url):
    """A replica that only reads must not sit idle in a transaction (locks, vacuum)."""
    store = open_store(pg_url)
    try:
        store.add_events([Event("r1", "u", "i1", "view")])
        store.user_events("u")
        store.events_since(0)
        store.items()
        store.user("u")
        with psycopg.connect(pg_url, autocommit=True) as conn:
            states = [r[0] for r in conn.execute(
                "SELECT state FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")]  # fmt: skip
        assert "idle in transaction" not in states and states
    finally:
        store.close()
