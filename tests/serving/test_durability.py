"""Durability: SIGKILL the server while it ingests; every acknowledged event is there after a
restart. Loopback only, bounded in count and time."""

import os
import signal
import threading
import time

import pandas as pd
import pytest

httpx = pytest.importorskip("httpx")

from metarec.data.dataset import build_dataset  # noqa: E402
from metarec.errors import ConfigError  # noqa: E402
from metarec.data.synthetic import WorldConfig, make_world  # noqa: E402
from metarec.models import make_scorer  # noqa: E402
from metarec.models.io import save_model  # noqa: E402
from metarec.serving.retrain import retrain  # noqa: E402
from metarec.serving.store import open_store  # noqa: E402
from metarec.serving.workers import balances_connections  # noqa: E402
from tests.serving.servers import free_port, listening_sockets, start_server  # noqa: E402

KEY = {"X-API-Key": "k"}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    data = make_world(WorldConfig(n_users=100, n_items=60, seed=9))
    path = tmp_path_factory.mktemp("m") / "ease"
    save_model(make_scorer("ease").fit(data), data, path)
    return path


def test_sigkill_during_ingestion_loses_no_acknowledged_event(model_dir, tmp_path):
    store = f"sqlite:///{tmp_path / 'events.db'}"
    acked: set[str] = set()
    for run in range(3):
        port = free_port()
        proc = start_server(model_dir, store, port)
        stop = threading.Event()

        def ingest(port: int = port, run: int = run, stop: threading.Event = stop) -> None:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=KEY, timeout=5) as c:
                k = 0
                while not stop.is_set() and k < 2000:
                    batch = [{"event_id": f"r{run}-{k}-{j}", "user_id": f"u{j % 7}", "item_id": f"i{(k + j) % 60:05d}"}
                             for j in range(5)]  # fmt: skip
                    k += 1
                    try:
                        r = c.post("/events", json={"events": batch})
                    except httpx.HTTPError:
                        return  # the server is gone: whatever was not acknowledged may be lost
                    if r.status_code == 200:
                        acked.update(e["event_id"] for e in batch)

        workers = [threading.Thread(target=ingest) for _ in range(2)]
        for w in workers:
            w.start()
        time.sleep(1.5)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        stop.set()
        for w in workers:
            w.join(timeout=10)
    assert len(acked) > 100
    port = free_port()
    proc = start_server(model_dir, store, port)
    try:
        stored = set()
        for u in range(7):
            r = httpx.get(f"http://127.0.0.1:{port}/users/u{u}/events", params={"n": 10_000}, timeout=10)
            stored.update(e["event_id"] for e in r.json()["events"])
        assert acked <= stored, f"{len(acked - stored)} acknowledged events lost"
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_retrain_from_the_store_learns_the_new_events(model_dir, tmp_path):
    from fastapi.testclient import TestClient

    from metarec.serving.app import create_app

    store = f"sqlite:///{tmp_path / 'events.db'}"
    with TestClient(create_app(model_dir, store, "k")) as c:
        def rank_of_2() -> int:
            body = {"events": [{"item_id": "i00001"}], "n": 60}
            recs = [x["id"] for x in c.post("/sessions/recommendations", json=body).json()["items"]]
            return recs.index("i00002")

        before = rank_of_2()
        events = [{"user_id": f"new{u}", "item_id": f"i{i:05d}"} for u in range(200) for i in (1, 2)]
        assert c.post("/events", json={"events": events}, headers=KEY).status_code == 200
        out = retrain(store, model_dir, tmp_path / "v2")
        assert c.post("/admin/reload", json={"model_dir": str(out)}, headers=KEY).status_code == 200
        # Two hundred new users took items 1 and 2 together: the retrained model knows it.
        assert rank_of_2() == 0 < before


def test_retraining_from_a_store_that_is_not_there_is_an_error_not_a_new_empty_store(model_dir, tmp_path):
    """A mistyped path made a new, empty store (directories too), and the model was retrained
    on its own data alone, as if the service had stored nothing."""
    from metarec.errors import DataError

    missing = tmp_path / "typo" / "events.db"
    with pytest.raises(DataError, match=r"store 'sqlite:///.*typo/events\.db': no such file"):
        retrain(f"sqlite:///{missing}", model_dir, tmp_path / "v2")
    assert not (tmp_path / "typo").exists() and not (tmp_path / "v2").exists()


def test_retraining_into_the_model_it_retrains_is_refused_and_the_model_is_left_as_it_was(model_dir, tmp_path):
    """`--out` naming `--model` wrote the new model over the served one: nothing to go back to."""
    before = {p.name: p.read_bytes() for p in model_dir.iterdir() if p.is_file()}
    store = f"sqlite:///{tmp_path / 'events.db'}"
    open_store(store).close()
    with pytest.raises(ConfigError, match="is the model being retrained; give another directory"):
        retrain(store, model_dir, model_dir / ".." / model_dir.name)
    assert {p.name: p.read_bytes() for p in model_dir.iterdir() if p.is_file()} == before


def test_hot_swap_under_load_fails_no_request(model_dir, tmp_path):
    """Readers keep getting 200 while the model is swapped again and again."""
    port = free_port()
    proc = start_server(model_dir, f"sqlite:///{tmp_path / 'swap.db'}", port)
    base = f"http://127.0.0.1:{port}"
    statuses: list[int] = []
    stop = threading.Event()

    def read(worker: int) -> None:
        with httpx.Client(base_url=base, timeout=10) as c:
            k = 0
            while not stop.is_set() and k < 5000:
                statuses.append(c.get(f"/users/u{(worker * 31 + k) % 50:05d}/recommendations").status_code)
                k += 1

    readers = [threading.Thread(target=read, args=(w,)) for w in range(3)]
    try:
        for r in readers:
            r.start()
        with httpx.Client(base_url=base, headers=KEY, timeout=30) as admin:
            for _ in range(5):
                assert admin.post("/admin/reload", json={"model_dir": str(model_dir)}).status_code == 200
    finally:
        stop.set()
        for r in readers:
            r.join(timeout=30)
        proc.kill()
        proc.wait(timeout=10)
    assert len(statuses) > 50 and set(statuses) == {200}


def test_retraining_data_keeps_the_tag_fields(tmp_path):
    """The model directory records the data's tag fields, so iALS retrained from the store
    draws items sharing a genre together as the first fit did."""
    from metarec.serving.retrain import dataset_from_store

    rows = [(f"u{u}", f"m{i}", 4.0) for u in range(12) for i in range(6) if (u + i) % 3]
    items = pd.DataFrame({"title": [f"film {i}" for i in range(6)], "genres": ["War, Drama", "War", "Drama"] * 2},
                         index=[f"m{i}" for i in range(6)])  # fmt: skip
    data = build_dataset(pd.DataFrame(rows, columns=["user", "item", "value"]), source="r.csv", items=items,
                         text_fields=("title",), tag_fields=("genres",))  # fmt: skip
    path = tmp_path / "ials"
    save_model(make_scorer("ials", factors=4, iterations=2).fit(data), data, path)
    open_store(f"sqlite:///{tmp_path / 'events.db'}").close()  # a service's store, with nothing stored yet
    again = dataset_from_store(f"sqlite:///{tmp_path / 'events.db'}", path)
    assert again.tag_fields == ("genres",)
    assert again.items.loc[again.item_index(["m0"])[0], "genres"] == "War, Drama"


def test_retraining_data_keeps_the_training_events_types_values_and_times(tmp_path):
    """Retraining sees the first fit's events as they were (a multi-task model's tasks and the
    rating weights depend on them), plus the store's; a directory saved before the events were
    kept falls back to its training pairs as ``train`` events."""
    from metarec.serving.retrain import dataset_from_store
    from metarec.serving.store import Event, open_store

    raw = pd.DataFrame({
        "user": ["a", "a", "b", "b", "c", "c"], "item": ["x", "y", "x", "z", "y", "z"],
        "event": ["rating", "view", "rating", "rating", "view", "rating"],
        "value": [5.0, 1.0, 2.0, 4.0, 1.0, 3.0], "timestamp": [10.0, 11.0, 12.0, 13.0, 14.0, 15.0],
    })  # fmt: skip
    data = build_dataset(raw, source="r.csv")
    path = tmp_path / "m"
    save_model(make_scorer("pop").fit(data), data, path)
    url = f"sqlite:///{tmp_path / 'events.db'}"
    store = open_store(url)
    store.add_events([Event(event_id="e1", user_id="d", item_id="x", type="rating", value=3.0, timestamp=20.0)])
    store.close()

    def events(ds):
        df = ds.interactions
        out = pd.DataFrame({"user": ds.user_ids[df["user"]], "item": ds.item_ids[df["item"]], "event": df["event"].astype(str),
                            "value": df["value"].astype(float), "timestamp": df["timestamp"]})  # fmt: skip
        return sorted(out.itertuples(index=False, name=None))

    again = dataset_from_store(url, path)
    assert events(again) == sorted([*raw.itertuples(index=False, name=None), ("d", "x", "rating", 3.0, 20.0)])
    assert set(again.event_types) == {"rating", "view"}
    (path / "events.safetensors").unlink()  # as a directory saved before the events were kept
    old = dataset_from_store(url, path)
    assert set(old.event_types) == {"train", "rating"} and len(old.interactions) == 7


def _retraining_data(tmp_path, data, events):
    """What retraining reads: a popularity model of ``data`` and a store holding ``events``."""
    from metarec.serving.retrain import dataset_from_store
    from metarec.serving.store import open_store

    path = tmp_path / "m"
    save_model(make_scorer("pop").fit(data), data, path)
    url = f"sqlite:///{tmp_path / 'events.db'}"
    store = open_store(url)
    store.add_events(events)
    store.close()
    return dataset_from_store(url, path)


def test_retraining_keeps_the_value_range_and_drops_a_stored_event_outside_it(tmp_path, caplog):
    """An event stored before the service refused values outside the training data's range
    is dropped and reported when retraining reads the store, and the new data keeps the range."""
    from metarec.serving.store import Event

    raw = pd.DataFrame({"user": ["a", "a", "b", "b"], "item": ["x", "y", "x", "z"], "value": [5.0, 1.0, 2.0, 4.0]})
    data = build_dataset(raw, source="r.csv", value_range=(1, 5))
    assert data.value_range == (1.0, 5.0)
    stored = [Event("e1", "c", "y", "rating", 9.0, 20.0), Event("e2", "c", "z", "rating", 3.0, 21.0)]
    with caplog.at_level("WARNING"):
        again = _retraining_data(tmp_path, data, stored)
    assert again.value_range == (1.0, 5.0) and len(again.interactions) == 5
    assert float(again.interactions["value"].max()) == 5.0
    assert "value out of range" in caplog.text
    free = build_dataset(raw.assign(value=[5.0, 1.0, 2.0, 40.0]), source="r.csv")
    assert free.value_range is None and float(free.interactions["value"].max()) == 40.0


def test_retraining_leaves_out_a_stored_event_in_milliseconds_and_names_it(tmp_path, caplog):
    """An event stored with a timestamp in milliseconds (before the service refused them) is
    left out of the retraining data with a warning naming its id; the others stay."""
    from metarec.serving.store import Event

    data = build_dataset(pd.DataFrame({"user": ["a", "b"], "item": ["x", "y"], "timestamp": [100.0, 200.0]}), source="r.csv")
    stored = [Event("ms-1", "c", "x", "view", 1.0, 1733390000123.0), Event("s-1", "c", "y", "view", 1.0, 300.0)]
    with caplog.at_level("WARNING"):
        again = _retraining_data(tmp_path, data, stored)
    assert sorted(again.interactions["timestamp"].tolist()) == [100.0, 200.0, 300.0]
    assert "1 events stored with a timestamp after the year 9999 (milliseconds?) left out: ms-1" in caplog.text
    assert "not trained on (interaction): view (1);" in caplog.text  # the event left out is not counted


def test_retraining_data_keeps_the_users_attributes_and_takes_the_stores(tmp_path):
    """The networks read the users' attributes: retraining keeps the first fit's, takes those
    given with ``PUT /users`` (over the model's, and for a new user), leaves a new user
    without any empty, and refuses a value that does not fit a numeric attribute."""
    from metarec.errors import DataError
    from metarec.serving.retrain import dataset_from_store
    from metarec.serving.store import Event, open_store

    raw = pd.DataFrame({"user": ["a", "a", "b", "c"], "item": ["x", "y", "x", "y"], "value": 1.0})
    users = pd.DataFrame({"age": [20, 30, 40], "gender": ["F", "M", "F"]}, index=["a", "b", "c"])
    data = build_dataset(raw, source="r.csv", users=users)
    path = tmp_path / "m"
    save_model(make_scorer("pop").fit(data), data, path)
    url = f"sqlite:///{tmp_path / 'events.db'}"
    store = open_store(url)
    store.add_events([Event(event_id=f"e{k}", user_id=u, item_id="x", type="interaction", value=1.0, timestamp=5.0)
                      for k, u in enumerate(["d", "e"])])  # fmt: skip
    store.upsert_user("b", {"age": 31, "zip": "02139"})  # an attribute the model never had is left out
    store.upsert_user("d", {"gender": "M", "age": "52"})
    store.upsert_user("f", {"age": 60})  # no events: not a user to train on
    store.close()

    again = dataset_from_store(url, path)
    got = again.users.set_index(pd.Index(again.user_ids))
    assert list(got.index) == ["a", "b", "c", "d", "e"] and list(got.columns) == ["age", "gender"]
    assert got.loc[["a", "b", "c", "d"], "age"].tolist() == [20, 31, 40, 52]
    assert got.loc[["a", "b", "c", "d"], "gender"].tolist() == ["F", "M", "F", "M"]
    assert got.loc["e"].isna().all()

    store = open_store(url)
    store.upsert_user("e", {"age": "old"})
    store.close()
    with pytest.raises(DataError, match=r"user 'e': attribute 'age' must be a number, got 'old'"):
        dataset_from_store(url, path)


def test_retraining_data_takes_the_stores_items_and_checks_their_numeric_attributes(tmp_path):
    """``PUT /items`` replaces an item: its text, its attributes for the model's columns
    (tags given as a list join as the readers give them), the rest empty; a new item joins,
    a deleted one leaves; a value that does not fit a numeric attribute is an error naming
    the item and the attribute, as for users."""
    from metarec.errors import DataError
    from metarec.serving.retrain import dataset_from_store
    from metarec.serving.store import Event, open_store

    raw = pd.DataFrame({"user": ["a", "a", "b"], "item": ["x", "y", "x"], "value": 1.0})
    items = pd.DataFrame({"title": ["kettle", "toaster", "lamp"], "price": [10, 20, 30], "genres": ["K", "K, E", "E"]},
                         index=["x", "y", "w"])  # fmt: skip
    data = build_dataset(raw, source="r.csv", items=items, text_fields=("title",), tag_fields=("genres",))
    path = tmp_path / "m"
    save_model(make_scorer("pop").fit(data), data, path)
    url = f"sqlite:///{tmp_path / 'events.db'}"
    store = open_store(url)
    store.upsert_item("y", "red toaster", {"price": "25.5", "colour": "red"})  # no genres given: none now
    store.upsert_item("z", "blue lamp", {"price": 5, "genres": ["E", "L"]})
    store.upsert_item("w", "lamp", {})
    store.delete_item("w")
    store.add_events([Event(event_id="e1", user_id="b", item_id="z", type="interaction", value=1.0, timestamp=5.0)])
    store.close()

    again = dataset_from_store(url, path)
    got = again.items.set_index(pd.Index(again.item_ids))
    assert sorted(got.index) == ["x", "y", "z"] and list(got.columns) == ["title", "price", "genres"]
    assert got.loc[["x", "y", "z"], "title"].tolist() == ["kettle", "red toaster", "blue lamp"]
    assert got.loc[["x", "y", "z"], "price"].tolist() == [10, 25.5, 5]
    assert got.loc["x", "genres"] == "K" and pd.isna(got.loc["y", "genres"]) and got.loc["z", "genres"] == "E, L"

    store = open_store(url)
    store.upsert_item("z", "blue lamp", {"price": "cheap"})
    store.close()
    with pytest.raises(DataError, match=r"item 'z': attribute 'price' must be a number, got 'cheap'"):
        dataset_from_store(url, path)


def test_retraining_data_leaves_out_a_deleted_items_events_without_a_warning(tmp_path, caplog):
    """A deleted item leaves the data with its training and stored events; they are not
    "unknown item" rows of bad input (which a warning reports), and a revived item keeps them."""
    from metarec.serving.retrain import dataset_from_store
    from metarec.serving.store import Event, open_store

    raw = pd.DataFrame({"user": ["a", "a", "b", "b"], "item": ["x", "y", "x", "w"], "value": 1.0})
    data = build_dataset(raw, source="r.csv")
    path = tmp_path / "m"
    save_model(make_scorer("pop").fit(data), data, path)
    url = f"sqlite:///{tmp_path / 'events.db'}"
    store = open_store(url)
    store.add_events([Event(event_id="e1", user_id="c", item_id="x", type="interaction", value=1.0, timestamp=5.0),
                      Event(event_id="e2", user_id="c", item_id="y", type="interaction", value=1.0, timestamp=6.0)])  # fmt: skip
    store.delete_item("x")
    store.delete_item("w")
    store.upsert_item("w", "back again", {})  # revived: keeps its events
    store.close()
    again = dataset_from_store(url, path)
    pairs = sorted(zip(again.user_ids[again.interactions["user"]], again.item_ids[again.interactions["item"]]))
    assert pairs == [("a", "y"), ("b", "w"), ("c", "y")] and "x" not in set(again.item_ids)
    assert "unknown item" not in caplog.text and not [r for r in caplog.records if r.levelname == "WARNING"]


def test_a_reload_reaches_every_worker_and_a_worker_restarted_after_it(model_dir, tmp_path):
    """`metarec serve --workers 2`: before, a reload reached only the worker that took it
    (measured: 10 of 12 requests after it answered by the new model, 2 by the old)."""
    data = make_world(WorldConfig(n_users=60, n_items=40, seed=4))
    other = save_model(make_scorer("pop").fit(data), data, tmp_path / "pop")
    port = free_port()
    proc = start_server(model_dir, f"sqlite:///{tmp_path / 'w.db'}", port, workers=2)
    base = f"http://127.0.0.1:{port}"

    def models_by_worker(until, tries: int = 400) -> dict[int, str]:
        """/health/ready on new connections, which the kernel deals out to the workers."""
        seen: dict[int, str] = {}
        for _ in range(tries):
            r = httpx.get(f"{base}/health/ready", timeout=30).json()
            seen[r["worker"]] = r["model"]
            if until(seen):
                return seen
            time.sleep(0.02)
        raise AssertionError(f"only these workers answered: {seen}")

    try:
        first = models_by_worker(lambda s: len(s) == 2)
        assert set(first.values()) == {"ease"}
        if balances_connections():  # each worker accepts on a socket of its own (see test_workers.py)
            assert listening_sockets(port) == 2
        r = httpx.post(f"{base}/admin/reload", json={"model_dir": str(other)}, headers=KEY, timeout=60)
        assert r.status_code == 200 and r.json()["model"] == "pop"
        after = models_by_worker(lambda s: len(s) == 2)
        assert after == {pid: "pop" for pid in first}
        os.kill(next(iter(first)), signal.SIGKILL)  # uvicorn starts another worker, on --model ease
        fresh = models_by_worker(lambda s: bool(set(s) - set(first)))
        assert {fresh[pid] for pid in set(fresh) - set(first)} == {"pop"}
        if balances_connections():  # the new worker bound one again
            assert listening_sockets(port) == 2
    finally:
        proc.terminate()  # the supervisor stops its workers
        proc.wait(timeout=30)


def test_replicas_named_as_one_service_follow_each_others_reloads(model_dir, tmp_path):
    """`metarec serve --service shop` twice on one store: a reload through either reaches the
    other, and a replica started after it starts on the reloaded model. Before, each replica
    had to be reloaded on its own. One started without the name keeps its --model."""
    data = make_world(WorldConfig(n_users=60, n_items=40, seed=4))
    other = save_model(make_scorer("pop").fit(data), data, tmp_path / "pop")
    store = f"sqlite:///{tmp_path / 'r.db'}"
    ports = [free_port() for _ in range(4)]
    procs = [start_server(model_dir, store, ports[0], service="shop"), start_server(model_dir, store, ports[1], service="shop")]

    def model(port: int) -> str:
        return httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=30).json()["model"]

    try:
        assert model(ports[1]) == "ease"
        r = httpx.post(f"http://127.0.0.1:{ports[0]}/admin/reload", json={"model_dir": str(other)}, headers=KEY, timeout=60)
        assert r.status_code == 200 and r.json()["model"] == "pop"
        assert model(ports[1]) == "pop"
        procs.append(start_server(model_dir, store, ports[2], service="shop"))  # a replica started later
        procs.append(start_server(model_dir, store, ports[3]))  # another service
        assert model(ports[2]) == "pop" and model(ports[3]) == "ease"
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=30)


def test_scheduled_retraining_swaps_each_round_into_the_service_and_keeps_the_newest(model_dir, tmp_path, capsys):
    """`metarec retrain --every --reload`: each round learns the events stored so far, the
    service serves the newest directory, older ones beyond --keep are gone; a service that
    does not answer fails its rounds (exit 1), and the loop goes on to the next."""
    import json

    from metarec.cli import main

    store = f"sqlite:///{tmp_path / 's.db'}"
    port = free_port()
    proc = start_server(model_dir, store, port)
    base = f"http://127.0.0.1:{port}"
    try:
        r = httpx.post(f"{base}/events", json={"events": [{"user_id": "late-comer", "item_id": "i00003"}]}, headers=KEY)
        assert r.status_code == 200
        argv = ["retrain", "--store", store, "--model", str(model_dir), "--out", str(tmp_path / "v"), "--every", "0.2",
                "--rounds", "2", "--keep", "1", "--reload", base, "--api-key", "k"]  # fmt: skip
        assert main(argv) == 0
        (kept,) = (tmp_path / "v").iterdir()
        ready = httpx.get(f"{base}/health/ready").json()
        assert ready["model_dir"] == str(kept.resolve()) and ready["model"] == "ease"
        assert "late-comer" in json.dumps(httpx.get(f"{base}/users/late-comer/events").json())
        assert json.loads((kept / "config.json").read_text())["n_users"] == json.loads((model_dir / "config.json").read_text())["n_users"] + 1
        out = capsys.readouterr().out
        assert out.count("now serves it (ease)") == 2
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    argv[argv.index(base)] = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    assert main(argv) == 1
    out = capsys.readouterr().out
    assert out.count("failed: ") == 2 and "no answer to the reload" in out


def test_the_retraining_schedule_keeps_its_interval_and_prunes_only_its_own_older_models(model_dir, tmp_path):
    from metarec.serving.retrain import retrain_every

    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "notes.txt").write_text("the user's own file")
    waits, lines = [], []
    open_store(f"sqlite:///{tmp_path / 's.db'}").close()  # a service's store, with nothing stored yet
    failed = retrain_every(f"sqlite:///{tmp_path / 's.db'}", model_dir, tmp_path / "v", 100.0, keep=2, rounds=3,
                           report=lines.append, sleep=waits.append)  # fmt: skip
    assert failed == 0 and len(lines) == 3
    assert [round(w) for w in waits] == [100, 200]  # from the first round's start: a fixed rate
    left = sorted(p.name for p in (tmp_path / "v").iterdir())
    assert len(left) == 3 and "notes.txt" in left  # the two newest rounds and the user's file
    assert all(p in "".join(lines) for p in left if p != "notes.txt")
    with pytest.raises(ConfigError, match="a file is there"):
        retrain_every("sqlite:///x.db", model_dir, tmp_path / "v" / "notes.txt", 1.0)


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_on_port_0_says_the_port_it_listens_on(model_dir, tmp_path, workers):
    """Before, `--port 0` printed port 0 (and with workers, each picked its own)."""
    import re
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "metarec.cli", "serve", "--model", str(model_dir), "--store", f"sqlite:///{tmp_path / 'e.db'}",
           "--port", "0", "--api-key", "k", "--workers", str(workers)]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        first = proc.stdout.readline()
        port = int(re.search(r"http://127\.0\.0\.1:(\d+) ", first).group(1))
        assert port != 0
        deadline = time.time() + 60
        while True:
            try:
                assert httpx.get(f"http://127.0.0.1:{port}/health/live", timeout=1).status_code == 200
                break
            except httpx.HTTPError:
                assert time.time() < deadline and proc.poll() is None
                time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_retraining_says_which_stored_event_types_the_model_was_not_trained_on(tmp_path, caplog):
    """POST /events takes any type (``view`` by default); at retraining a type the model never
    saw becomes one of its own (a new task of the networks), which is said, with counts."""
    from metarec.serving.retrain import dataset_from_store
    from metarec.serving.store import Event, open_store

    raw = pd.DataFrame({"user": ["a", "a", "b"], "item": ["x", "y", "x"], "event": "rating", "value": [5.0, 1.0, 2.0]})
    data = build_dataset(raw, source="r.csv")
    path = tmp_path / "m"
    save_model(make_scorer("pop").fit(data), data, path)
    url = f"sqlite:///{tmp_path / 'events.db'}"
    store = open_store(url)
    store.add_events([Event("e1", "c", "y", "rating", 3.0, 20.0)])
    store.close()
    with caplog.at_level("WARNING", logger="metarec.serving.retrain"):
        dataset_from_store(url, path)
    assert not caplog.messages  # only known types
    store = open_store(url)
    store.add_events([Event("e2", "c", "x", "view", 1.0, 21.0), Event("e3", "d", "x", "view", 1.0, 22.0),
                      Event("e4", "d", "y", "click", 1.0, 23.0)])  # fmt: skip
    store.close()
    with caplog.at_level("WARNING", logger="metarec.serving.retrain"):
        again = dataset_from_store(url, path)
    assert set(again.event_types) == {"rating", "view", "click"}
    assert len(caplog.messages) == 1
    assert "not trained on (rating): view (2), click (1)" in caplog.text
