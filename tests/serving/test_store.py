"""Both event stores, one contract: batched inserts that count new and repeated ids, keep the
order given, and write all of a call or nothing. PostgreSQL runs where $METAREC_PG_URL names a
server (.ci/run starts one)."""

import pytest

from metarec.serving.store import Event, open_store


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    url = f"sqlite:///{tmp_path / 'events.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    s = open_store(url)
    yield s
    s.close()


def test_a_call_larger_than_a_batch_counts_new_and_repeated_ids_and_keeps_order(store):
    assert store.batch_rows < 1200  # the call below spans several INSERT statements
    store.add_events([Event(f"e{i}", "u0", "i0", "view", 1.0, float(i)) for i in range(10)])
    events = [Event(f"e{i}", f"u{i % 7}", f"i{i % 50}", "view", 1.0, float(i)) for i in range(1200)]
    events += [Event("e600", "u9", "i9", "view"), Event("e1100", "u9", "i9", "view")]  # repeated inside the call
    assert store.add_events(events) == (1190, 12)
    stored = list(store.all_events())
    assert [e.event_id for e in stored] == [f"e{i}" for i in range(1200)]
    assert stored[600].user_id == "u5"  # the first of a repeated id is the one kept
    assert [e.seq for e in stored] == sorted(e.seq for e in stored)


def test_a_call_that_fails_in_a_later_batch_writes_nothing(store):
    good = [Event(f"g{i}", "u", "i", "view") for i in range(store.batch_rows + 5)]
    bad = Event("bad", "u", None, "view")  # item_id NOT NULL
    with pytest.raises(Exception):  # noqa: B017 (sqlite3 and psycopg raise their own IntegrityError)
        store.add_events([*good, bad])
    assert list(store.all_events()) == []
    assert store.add_events(good[:3]) == (3, 0)  # the store still works after the rollback


def test_users_attributes_are_listed_as_last_put(store):
    assert store.users() == {}
    store.upsert_user("u2", {"age": 30, "gender": "F"})
    store.upsert_user("u1", {"age": 20})
    store.upsert_user("u2", {"age": 31})  # a second PUT replaces the attributes
    assert store.users() == {"u1": {"age": 20}, "u2": {"age": 31}}
    assert store.user("u2") == {"age": 31} and store.user("u3") is None
    # Changes since a time, oldest first (how a serving process catches up on PUT /users).
    changes = store.user_changes()
    assert [(u, a) for u, a, _ in changes] == [("u1", {"age": 20}), ("u2", {"age": 31})]
    assert store.user_changes(since=changes[0][2]) == changes[1:]
    assert store.user_changes(since=changes[-1][2]) == []


def test_the_served_model_is_the_services_latest_reload(store):
    assert store.served("a") is None
    first = store.set_served("a", "/models/v2")
    assert store.set_served("b", "/models/other") > first  # another service's reload
    last = store.set_served("a", "/models/v'3")  # a quote is data
    assert last > first and store.served("a") == (last, "/models/v'3")
    assert store.served("b")[1] == "/models/other"


def test_a_store_that_cannot_be_opened_is_an_error_naming_it_without_credentials(tmp_path):
    """Were sqlite3 and psycopg tracebacks; the file that is not a database is left as it was."""
    from metarec.errors import ConfigError

    csv = tmp_path / "events.csv"
    csv.write_text("user,item\n1,2\n")
    with pytest.raises(ConfigError, match=r"store .*events\.csv: cannot open it \(DatabaseError: file is not a database\)"):
        open_store(f"sqlite:///{csv}")
    assert csv.read_text() == "user,item\n1,2\n"
    with pytest.raises(ConfigError, match=r"store .*events\.csv/sub\.db: cannot open it"):
        open_store(f"sqlite:///{csv}/sub.db")
    pytest.importorskip("psycopg")
    with pytest.raises(ConfigError, match=r"store postgresql://…@127\.0\.0\.1:1/x: cannot open it") as e:
        open_store("postgresql://app:secret@127.0.0.1:1/x")
    assert "secret" not in str(e.value)
