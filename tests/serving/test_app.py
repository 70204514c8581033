"""The service through real HTTP semantics (FastAPI's TestClient) on a small hybrid model."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient  # noqa: E402

from metarec.data import Queries  # noqa: E402
from metarec.data.synthetic import WorldConfig, make_world  # noqa: E402
from metarec.models import make_scorer  # noqa: E402
from metarec.models.io import save_model  # noqa: E402
from metarec.serving.app import create_app  # noqa: E402

KEY = {"X-API-Key": "test-key"}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    data = make_world(WorldConfig(n_users=200, n_items=120, seed=5))
    path = tmp_path_factory.mktemp("model") / "hybrid"
    save_model(make_scorer("hybrid", encoder="hashing-128").fit(data), data, path)
    return path


@pytest.fixture
def client(model_dir, tmp_path):
    app = create_app(model_dir, f"sqlite:///{tmp_path / 'events.db'}", "test-key", max_body_bytes=1 << 16)
    with TestClient(app) as c:
        yield c


def ids(response):
    assert response.status_code == 200, response.text
    return [x["id"] for x in response.json()["items"]]


def test_events_personalise_the_next_call_and_seen_items_go(client):
    before = ids(client.get("/users/stranger/recommendations?n=10"))
    assert len(before) == 10  # an unknown user gets a cold-start list
    clicked = ["i00003", "i00010", "i00042"]
    r = client.post("/events", json={"events": [{"user_id": "stranger", "item_id": i, "type": "purchase"} for i in clicked]}, headers=KEY)
    assert r.json() == {"accepted": 3, "duplicates": 0}
    after = ids(client.get("/users/stranger/recommendations?n=10"))
    assert after != before and not set(clicked) & set(after)
    events = client.get("/users/stranger/events?n=2").json()["events"]
    assert len(events) == 2 and events[0]["item_id"] == "i00042"  # newest first


def test_events_are_idempotent_by_event_id(client):
    body = {"events": [{"event_id": "e-1", "user_id": "u1", "item_id": "i00001"}]}
    assert client.post("/events", json=body, headers=KEY).json() == {"accepted": 1, "duplicates": 0}
    assert client.post("/events", json=body, headers=KEY).json() == {"accepted": 0, "duplicates": 1}


def test_new_item_is_similar_to_its_twin_and_recommendable_at_once(client):
    twin = client.get("/items/i00007").json()
    text = "Brand07 " + " ".join(str(v) for v in twin["attributes"].values() if isinstance(v, str))
    assert client.put("/items/fresh", json={"text": text, "attributes": {"category": "x"}}, headers=KEY).status_code == 200
    assert client.get("/items/fresh").status_code == 200
    # Anyone whose history is the fresh item's twin can be recommended the fresh item.
    session = client.post("/sessions/recommendations", json={"events": [{"item_id": "i00007"}], "n": 120})
    assert "fresh" in ids(session)
    assert client.delete("/items/fresh", headers=KEY).status_code == 200
    assert "fresh" not in ids(client.post("/sessions/recommendations", json={"events": [{"item_id": "i00007"}], "n": 200}))
    assert client.get("/items/fresh").status_code == 404


def test_explore_new_gives_items_posted_since_training_their_share_of_every_first_places(client, model_dir):
    data = make_world(WorldConfig(n_users=200, n_items=120, seed=5))  # the model's training data
    untrained = {str(data.item_ids[i]) for i in np.flatnonzero(data.matrix().getnnz(axis=0) == 0)}
    for j in range(3):
        assert client.put(f"/items/fresh{j}", json={"text": f"Brand0{j} new thing {j}"}, headers=KEY).status_code == 200
    new = untrained | {"fresh0", "fresh1", "fresh2"}
    plain = ids(client.get("/users/u00001/recommendations?n=10"))
    assert ids(client.get("/users/u00001/recommendations?n=10&explore_new=0")) == plain
    got = ids(client.get("/users/u00001/recommendations?n=10&explore_new=0.3"))
    assert len(got) == 10 and {"fresh0", "fresh1", "fresh2"} & set(got)
    for p in range(1, 11):  # places 4, 7 and 10 are owed to new items, unless some rank higher
        assert sum(i in new for i in got[:p]) >= int(p * 0.3 + 1e-9)
    known = [i for i in got if i not in new]
    assert known == [i for i in plain if i not in new][: len(known)]  # the rest in the model's order
    session = client.post("/sessions/recommendations", json={"events": [{"item_id": "i00007"}], "n": 4, "explore_new": 1})
    assert set(ids(session)) <= new and len(ids(session)) == 4
    bad = client.get("/users/u00001/recommendations?explore_new=1.5")
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "explore_new"]


def test_filters(client):
    got = ids(client.get("/users/u00001/recommendations", params={"n": 5, "exclude": ["i00001", "i00002"]}))
    assert not {"i00001", "i00002"} & set(got)
    cat = client.get("/items/i00000").json()["attributes"]["category"]
    for i in ids(client.get(f"/users/u00001/recommendations?n=5&category={cat}")):
        assert client.get(f"/items/{i}").json()["attributes"]["category"] == cat


def test_a_category_filter_follows_items_whose_category_changes_or_that_are_added(client):
    """The service keeps the items of each category asked for; a PUT must not leave it stale."""
    def in_category(c):
        return set(ids(client.get(f"/users/u00001/recommendations?n=1000&category={c}&exclude_seen=false")))

    cat = client.get("/items/i00000").json()["attributes"]["category"]
    before = in_category(cat)
    moved = sorted(before)[0]
    r = client.put(f"/items/{moved}", json={"text": "a moved thing", "attributes": {"category": "elsewhere"}}, headers=KEY)
    assert r.status_code == 200
    assert in_category(cat) == before - {moved} and in_category("elsewhere") == {moved}
    assert client.put("/items/fresh", json={"text": "new", "attributes": {"category": cat}}, headers=KEY).status_code == 200
    assert in_category(cat) == before - {moved} | {"fresh"}


@pytest.mark.parametrize(
    "method, path, body, headers, status",
    [
        ("post", "/events", {"events": [{"user_id": "a", "item_id": "i00001"}]}, {}, 401),
        ("post", "/events", {"events": [{"user_id": "a", "item_id": "i00001"}]}, {"X-API-Key": "wrong"}, 403),
        ("put", "/items/x", {"text": "t"}, {}, 401),
        ("delete", "/items/i00001", None, {}, 401),
        ("post", "/admin/reload", {"model_dir": "/nowhere"}, {}, 401),
        ("post", "/admin/reload", {"model_dir": "/nowhere"}, KEY, 422),
        ("post", "/admin/reload", {"model_dir": "0" * 4000}, KEY, 422),  # found by schemathesis: was a 500
        ("post", "/events", {"events": [{"user_id": "a"}]}, KEY, 422),
        ("post", "/events", {"events": []}, KEY, 422),
        ("post", "/events", {"events": [{"user_id": "a", "item_id": "no-such-item"}]}, KEY, 422),
        ("post", "/events", {"events": [{"user_id": "a", "item_id": "i00001", "value": "NaN"}]}, KEY, 422),
        ("post", "/sessions/recommendations", {"events": [{"item_id": "no-such-item"}]}, {}, 422),
        ("get", "/items/no-such-item", None, {}, 404),
        ("get", "/users/u1/recommendations?n=0", None, {}, 422),
    ],
)
def test_bad_requests_get_4xx(client, method, path, body, headers, status):
    kwargs = {"headers": headers} | ({"json": body} if body is not None else {})
    r = getattr(client, method)(path, **kwargs)
    assert r.status_code == status, r.text
    assert "Traceback" not in r.text


@pytest.mark.parametrize("field", ["value", "timestamp"])
def test_a_number_too_large_for_a_float_is_422_not_500(client, field):
    # JSON parses 1e400 as inf; FastAPI's own handler echoed it back and could not encode it.
    body = '{"events": [{"user_id": "a", "item_id": "i00001", "type": "rating", "%s": 1e400}]}' % field
    r = client.post("/events", content=body, headers=KEY | {"content-type": "application/json"})
    assert r.status_code == 422, r.text
    (err,) = r.json()["detail"]
    assert err["loc"] == ["body", "events", 0, field] and err["input"] == "inf"
    assert client.get("/users/a/events").json()["events"] == []


@pytest.mark.parametrize("price", [[1, 2], {"eur": 3}, "cheap"])
def test_an_item_attribute_that_does_not_fit_its_numeric_column_is_422_and_nothing_is_stored(client, price):
    # Before, the PUT was acknowledged and the next retrain failed on it.
    r = client.put("/items/odd", json={"text": "an odd thing", "attributes": {"price": price}}, headers=KEY)
    assert r.status_code == 422 and "item 'odd'" in r.text and "'price' must be a number" in r.text
    assert client.get("/items/odd").status_code == 404
    ok = client.put("/items/odd", json={"text": "an odd thing", "attributes": {"price": 3.5, "category": ["a", "B"]}}, headers=KEY)
    assert ok.status_code == 200 and client.get("/items/odd").json()["attributes"]["price"] == 3.5


def test_a_value_outside_the_training_datas_range_is_422_and_nothing_of_the_batch_is_stored(client, model_dir, tmp_path):
    # The synthetic world's values are read within 1 to 5, as MovieLens's ratings; before,
    # a rating of 9 was acknowledged and weighed that pair at the next retrain.
    bad = {"events": [{"user_id": "rater", "item_id": "i00001", "type": "rating", "value": 4},
                      {"user_id": "rater", "item_id": "i00002", "type": "rating", "value": 9},
                      {"user_id": "rater", "item_id": "i00003", "type": "rating", "value": 0.5}]}  # fmt: skip
    r = client.post("/events", json=bad, headers=KEY)
    assert r.status_code == 422, r.text
    assert "range 1 to 5" in r.text and "events[1] (user 'rater', item 'i00002'): 9" in r.text and "events[2]" in r.text
    assert "events[0]" not in r.text
    assert client.get("/users/rater/events").json()["events"] == []
    edges = {"events": [{"user_id": "rater", "item_id": "i00001", "value": 1}, {"user_id": "rater", "item_id": "i00002", "value": 5}]}
    assert client.post("/events", json=edges, headers=KEY).json() == {"accepted": 2, "duplicates": 0}
    # A model whose data declared no range takes any finite value.
    config = json.loads((model_dir / "config.json").read_text())
    assert config["value_range"] == [1.0, 5.0]
    free = tmp_path / "free"
    shutil.copytree(model_dir, free)
    (free / "config.json").write_text(json.dumps({**config, "value_range": None}))
    with TestClient(create_app(free, f"sqlite:///{tmp_path / 'free.db'}", "test-key")) as c:
        r = c.post("/events", json={"events": [{"user_id": "rater", "item_id": "i00002", "value": 9}]}, headers=KEY)
        assert r.json() == {"accepted": 1, "duplicates": 0}


def test_oversized_body_is_413_and_nothing_is_stored(client):
    big = {"events": [{"user_id": "big", "item_id": "i00001", "type": "x" * 60}] * 2000}
    assert client.post("/events", json=big, headers=KEY).status_code == 413
    assert client.get("/users/big/events").json()["events"] == []


def test_health_metrics_and_openapi(client, model_dir):
    assert client.get("/health/live").json() == {"status": "ok"}
    ready = client.get("/health/ready").json()
    assert ready["model"] == "hybrid" and len(ready["config_hash"]) == 16
    client.get("/users/x/recommendations")
    assert 'metarec_requests_total{route="/users/{user_id}/recommendations",status="200"}' in client.get("/metrics").text
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/events", "/items/{item_id}", "/users/{user_id}/recommendations", "/sessions/recommendations"} <= set(paths)


def test_state_survives_a_restart_and_a_hot_swap(model_dir, tmp_path):
    store = f"sqlite:///{tmp_path / 'events.db'}"
    with TestClient(create_app(model_dir, store, "test-key")) as c:
        c.post("/events", json={"events": [{"user_id": "v", "item_id": "i00005"}]}, headers=KEY)
        c.put("/items/later", json={"text": "Brand01 compact tent"}, headers=KEY)
        first = ids(c.get("/users/v/recommendations?n=5"))
    with TestClient(create_app(model_dir, store, "test-key")) as c:  # a restart replays the store
        assert ids(c.get("/users/v/recommendations?n=5")) == first
        assert c.get("/items/later").status_code == 200
        swapped = c.post("/admin/reload", json={"model_dir": str(model_dir)}, headers=KEY)
        assert swapped.status_code == 200 and swapped.json()["model"] == "hybrid"
        assert ids(c.get("/users/v/recommendations?n=5")) == first


def test_a_directory_that_loads_but_cannot_score_is_refused_and_the_served_model_kept(client, tmp_path):
    from safetensors.numpy import load_file, save_file

    from metarec.errors import MetarecError

    data = make_world(WorldConfig(n_users=50, n_items=40, seed=2))
    bad = save_model(make_scorer("ease").fit(data), data, tmp_path / "ease")
    arrays = load_file(str(bad / "weights.safetensors")) | {"weights": np.zeros((8, 4), np.float32)}  # a wrong shape
    save_file(arrays, str(bad / "weights.safetensors"))
    r = client.post("/admin/reload", json={"model_dir": str(bad)}, headers=KEY)
    assert r.status_code == 422 and "the model loads but cannot score" in r.text  # it was swapped in: 500s after
    assert client.get("/health/ready").json()["model"] == "hybrid" and ids(client.get("/users/u1/recommendations"))
    with pytest.raises(MetarecError, match="cannot score"):  # and at start
        create_app(bad, f"sqlite:///{tmp_path / 'other.db'}", "test-key")


def test_put_of_an_existing_item_with_a_new_text_re_encodes_it(client):
    """Item i00003 re-described with i00020's text climbs in i00020's similar list."""

    def rank_in_similar_of_20() -> int:
        return ids(client.get("/items/i00020/similar?n=200")).index("i00003")

    twin = client.get("/items/i00020").json()["attributes"]
    before = rank_in_similar_of_20()
    text = f"{twin['title']}. {twin['description']}"
    assert client.put("/items/i00003", json={"text": text}, headers=KEY).status_code == 200
    assert rank_in_similar_of_20() < before


def test_a_served_ensemble_recommends_a_posted_item_at_once(tmp_path):
    """An ensemble whose content member scores items from text takes PUT /items like the
    hybrid does (its collaborative member cannot score the item and leaves it to the hybrid),
    also after a restart that replays the store."""
    data = make_world(WorldConfig(n_users=200, n_items=120, seed=5))
    path = tmp_path / "ensemble"
    scorer = make_scorer("ensemble", members="ease,hybrid", folds=1, **{"hybrid.encoder": "hashing-128"})
    save_model(scorer.fit(data), data, path)
    store = f"sqlite:///{tmp_path / 'events.db'}"
    for restart in (False, True):
        with TestClient(create_app(path, store, "test-key")) as c:
            if not restart:
                twin = c.get("/items/i00007").json()
                text = "Brand07 " + " ".join(str(v) for v in twin["attributes"].values() if isinstance(v, str))
                assert c.put("/items/fresh", json={"text": text}, headers=KEY).status_code == 200
            session = c.post("/sessions/recommendations", json={"events": [{"item_id": "i00007"}], "n": 20})
            assert "fresh" in ids(session)


def test_a_served_ials_ranks_a_posted_item_by_its_text(tmp_path):
    """iALS trained with item text takes PUT /items: a new item's factors are those its text
    predicts, so an item posted with the text of the most popular item ranks above one posted
    with the text of the least popular (neither known to training: only the text differs),
    also after a restart that replays the store."""
    data = make_world(WorldConfig(n_users=200, n_items=120, seed=5))
    path = tmp_path / "ials"
    save_model(make_scorer("ials", encoder="hashing-128", cache_dir="none").fit(data), data, path)
    store = f"sqlite:///{tmp_path / 'events.db'}"
    counts = np.bincount(data.interactions["item"], minlength=data.n_items)
    top, bottom = int(counts.argmax()), int(counts.argmin())

    def text(i):
        return ". ".join(str(data.items[c].iloc[i]) for c in ("title", "description"))

    for restart in (False, True):
        with TestClient(create_app(path, store, "test-key")) as c:
            if not restart:
                for item_id, i in (("like-top", top), ("like-bottom", bottom)):
                    assert c.put(f"/items/{item_id}", json={"text": text(i)}, headers=KEY).status_code == 200
            session = c.post("/sessions/recommendations", json={"events": [{"item_id": data.item_ids[5]}], "n": 200})
            ranked = ids(session)
            assert ranked.index("like-top") < ranked.index("like-bottom")


@pytest.fixture(scope="module")
def network_dir(tmp_path_factory):
    """A multi-task network on a world whose users have attributes (one numeric)."""
    data = make_world(WorldConfig(n_users=200, n_items=120, seed=5))
    data.users["age"] = np.random.default_rng(0).integers(18, 70, data.n_users)
    path = tmp_path_factory.mktemp("model") / "multitask"
    save_model(make_scorer("multitask", encoder="hashing-64", epochs=3).fit(data), data, path)
    return path


def top10(model, users, history, refresh=None):
    q = Queries(users, history, refresh=refresh)
    top, _ = model.scorer.recommend(q, n=10)
    return [[str(model.item_ids[i]) for i in row if i >= 0] for row in top]


def test_a_new_users_attributes_count_from_the_first_request(network_dir, tmp_path):
    """``PUT /users`` for a user the model does not know: a network that reads user
    attributes ranks them from those attributes at once, as the model itself scores a user
    added with them (and after a restart, from the store); a non-number for a numeric
    attribute is a 422 naming it, and nothing is stored."""
    from metarec.models.io import load_model

    path = network_dir
    people = {"ann": {"gender": "F", "age_band": "55+", "region": "west", "age": 61},
              "bob": {"gender": "M", "age_band": "18-24", "region": "east", "age": "19", "unused": 1}}  # fmt: skip
    reference = load_model(path)
    want = {}
    for name, attrs in people.items():
        (u,) = reference.scorer.add_users(pd.DataFrame([attrs]))
        (want[name],) = top10(reference, [u], sp.csr_matrix((1, len(reference.item_ids))))
    assert want["ann"] != want["bob"]
    store = f"sqlite:///{tmp_path / 'events.db'}"
    with TestClient(create_app(path, store, "test-key")) as c:
        nobody = ids(c.get("/users/nobody/recommendations?n=10"))
        for name, attrs in people.items():
            r = c.put(f"/users/{name}", json={"attributes": attrs}, headers=KEY)
            assert r.json() == {"id": name, "created": True}
            assert ids(c.get(f"/users/{name}/recommendations?n=10")) == want[name]
        assert nobody not in (want["ann"], want["bob"])
        bad = c.put("/users/cid", json={"attributes": {"age": "old"}}, headers=KEY)
        assert bad.status_code == 422 and "attribute 'age' must be a number, got 'old'" in bad.json()["detail"]
        assert c.app.state.online.store.user("cid") is None
        assert ids(c.get("/users/cid/recommendations?n=10")) == nobody
    with TestClient(create_app(path, store, "test-key")) as c:  # a restart replays the users
        for name in people:
            assert ids(c.get(f"/users/{name}/recommendations?n=10")) == want[name]
        # A known user's attributes change too: bob takes ann's, and her list.
        assert c.put("/users/bob", json={"attributes": people["ann"]}, headers=KEY).json()["created"] is False
        assert ids(c.get("/users/bob/recommendations?n=10")) == want["ann"]
        # A PUT replaces the attributes an earlier one gave (as the store keeps them).
        (u,) = reference.scorer.add_users(pd.DataFrame([{"gender": "M"}]))
        (only_gender,) = top10(reference, [u], sp.csr_matrix((1, len(reference.item_ids))))
        assert only_gender != want["ann"]
        c.put("/users/bob", json={"attributes": {"gender": "M"}}, headers=KEY)
        assert ids(c.get("/users/bob/recommendations?n=10")) == only_gender


@pytest.mark.parametrize("kind", ["network", "ials"])
def test_a_trained_users_new_events_count(kind, network_dir, tmp_path):
    """A trained user's events since training count at once. The network keeps the user's
    id and attributes and reads the whole history; iALS, whose trained user factors do not
    read the history, folds the user in from it (``Queries.refresh``)."""
    from metarec.models.io import load_model

    path = network_dir
    if kind == "ials":
        world = make_world(WorldConfig(n_users=200, n_items=120, seed=5))
        path = tmp_path / "ials"
        save_model(make_scorer("ials").fit(world), world, path)
    model = load_model(path)
    u = int(np.flatnonzero(model.user_ids == "u00007")[0])
    before = top10(model, [u], model.history[[u]])[0]
    clicked = before[:3]
    hist = model.history[[u]].tolil()
    hist[0, [int(np.flatnonzero(model.item_ids == i)[0]) for i in clicked]] = 1
    hist = hist.tocsr()
    want = top10(model, [u], hist, refresh=[True])[0]
    as_new = top10(model, [-1], hist)[0]
    if kind == "ials":
        assert want == as_new  # folded in
    else:
        assert want != as_new  # its id and attributes count
    with TestClient(create_app(path, f"sqlite:///{tmp_path / 'events.db'}", "test-key")) as c:
        assert ids(c.get("/users/u00007/recommendations?n=10")) == before
        c.post("/events", json={"events": [{"user_id": "u00007", "item_id": i} for i in clicked]}, headers=KEY)
        assert ids(c.get("/users/u00007/recommendations?n=10")) == want


def test_a_user_the_model_knows_nothing_of_gets_what_is_popular_now(tmp_path):
    """EASE scores every item the same for a user with no history: the service ranks them by
    users per item, training and live, so live events lift an item for the next newcomer."""
    data = make_world(WorldConfig(n_users=150, n_items=60, seed=3))
    save_model(make_scorer("ease").fit(data), data, tmp_path / "ease")
    popularity = np.asarray(data.matrix().getnnz(axis=0))
    order = np.argsort(-popularity, kind="stable")
    app = create_app(tmp_path / "ease", f"sqlite:///{tmp_path / 'events.db'}", "test-key")
    with TestClient(app) as c:
        first = ids(c.get("/users/newcomer/recommendations?n=5"))
        got = [int(np.flatnonzero(data.item_ids == i)[0]) for i in first]
        np.testing.assert_array_equal(popularity[got], popularity[order[:5]])
        rare = str(data.item_ids[order[popularity[order] > 0][-1]])  # the least popular item EASE knows
        assert rare not in first
        events = [{"user_id": f"fan{j}", "item_id": rare} for j in range(popularity.max() + 1)]
        assert c.post("/events", json={"events": events}, headers=KEY).json()["accepted"] == len(events)
        assert ids(c.get("/users/another/recommendations?n=5"))[0] == rare


def test_the_service_default_of_explore_new_is_what_a_request_without_one_gets(model_dir, tmp_path):
    from metarec.errors import MetarecError

    with pytest.raises(MetarecError, match="explore_new: a share from 0 to 1, not 1.5"):
        create_app(model_dir, f"sqlite:///{tmp_path / 'bad.db'}", "test-key", explore_new=1.5)
    app = create_app(model_dir, f"sqlite:///{tmp_path / 'events.db'}", "test-key", explore_new=0.3)
    with TestClient(app) as c:
        for j in range(3):
            assert c.put(f"/items/fresh{j}", json={"text": f"Brand0{j} new thing {j}"}, headers=KEY).status_code == 200
        default = ids(c.get("/users/u00001/recommendations?n=10"))
        assert default == ids(c.get("/users/u00001/recommendations?n=10&explore_new=0.3"))
        assert default != ids(c.get("/users/u00001/recommendations?n=10&explore_new=0"))
        body = {"events": [{"item_id": "i00007"}], "n": 10}
        assert ids(c.post("/sessions/recommendations", json=body)) == ids(
            c.post("/sessions/recommendations", json={**body, "explore_new": 0.3}))


def test_explore_new_leaves_the_list_alone_where_the_model_cannot_score_new_items(tmp_path):
    """EASE scores no item without training pairs: no place can go to one, and the list is
    the model's (the first version filled the owed places from items the new-item ranking had
    marked unscorable, i.e. from the known ones out of order)."""
    data = make_world(WorldConfig(n_users=150, n_items=60, seed=3))
    items = data.interactions["item"].to_numpy()
    data = data.subset(items >= 6)  # items 0-5 stay in the catalogue without a pair
    save_model(make_scorer("ease").fit(data), data, tmp_path / "ease")
    with TestClient(create_app(tmp_path / "ease", f"sqlite:///{tmp_path / 'events.db'}", "test-key")) as c:
        for user in ("u00001", "u00002", "u00003", "someone-new"):
            plain = ids(c.get(f"/users/{user}/recommendations?n=20"))
            assert ids(c.get(f"/users/{user}/recommendations?n=20&explore_new=0.5")) == plain and len(plain) == 20


def test_a_new_item_put_to_a_model_that_cannot_score_text_is_422_naming_those_that_can(tmp_path):
    """EASE has no way to score an item without interactions: the PUT is refused with the
    models that can, nothing is stored, and an item EASE knows still takes a new text."""
    data = make_world(WorldConfig(n_users=80, n_items=40, seed=4))
    save_model(make_scorer("ease").fit(data), data, tmp_path / "ease")
    app = create_app(tmp_path / "ease", f"sqlite:///{tmp_path / 'events.db'}", "test-key")
    with TestClient(app) as c:
        r = c.put("/items/brand-new", json={"text": "a new thing"}, headers=KEY)
        assert r.status_code == 422
        assert "'ease' cannot score an item from its content; use hybrid, content-knn, or ials" in r.json()["detail"]
        assert c.get("/items/brand-new").status_code == 404
        known = str(data.item_ids[0])
        assert c.put(f"/items/{known}", json={"text": "retitled"}, headers=KEY).json() == {"id": known, "created": False}
    with TestClient(create_app(tmp_path / "ease", f"sqlite:///{tmp_path / 'events.db'}", "test-key")) as c:
        assert c.get("/items/brand-new").status_code == 404  # nothing of the refused PUT was stored


def test_a_reload_reaches_every_worker_of_the_service_and_a_restarted_one(model_dir, tmp_path):
    """Two apps with one service id and one store are two workers of ``metarec serve --workers
    2``: a reload that one takes, the other serves from its next request. Before, it kept the
    old model. A worker that starts after the reload serves the reloaded model; another service
    (a new start, or a replica) keeps its own --model."""
    data = make_world(WorldConfig(n_users=50, n_items=40, seed=2))
    other = save_model(make_scorer("ease").fit(data), data, tmp_path / "ease")
    store = f"sqlite:///{tmp_path / 'events.db'}"
    a, b = create_app(model_dir, store, "test-key", service="s"), create_app(model_dir, store, "test-key", service="s")
    with TestClient(a) as ca, TestClient(b) as cb, TestClient(create_app(model_dir, store, "test-key")) as cc:
        assert cb.get("/health/ready").json()["model"] == "hybrid"
        assert ca.post("/admin/reload", json={"model_dir": str(other)}, headers=KEY).json()["model"] == "ease"
        assert cb.get("/health/ready").json() | {"items": 0} == ca.get("/health/ready").json() | {"items": 0}
        assert cb.get("/health/ready").json()["model"] == "ease"
        assert set(ids(cb.get("/users/u00001/recommendations?n=40"))) <= {f"i{k:05d}" for k in range(40)}
        assert cc.get("/health/ready").json()["model"] == "hybrid"  # another service
        with TestClient(create_app(model_dir, store, "test-key", service="s")) as restarted:
            assert restarted.get("/health/ready").json()["model"] == "ease"
        # back again, from the other worker
        assert cb.post("/admin/reload", json={"model_dir": str(model_dir)}, headers=KEY).status_code == 200
        assert ca.get("/health/ready").json()["model"] == "hybrid"


def test_a_reloaded_model_that_will_not_load_on_another_worker_leaves_it_serving(model_dir, tmp_path, caplog):
    data = make_world(WorldConfig(n_users=50, n_items=40, seed=2))
    other = save_model(make_scorer("ease").fit(data), data, tmp_path / "ease")
    store = f"sqlite:///{tmp_path / 'events.db'}"
    a, b = create_app(model_dir, store, "test-key", service="s"), create_app(model_dir, store, "test-key", service="s")
    with TestClient(a) as ca, TestClient(b) as cb:
        assert ca.post("/admin/reload", json={"model_dir": str(other)}, headers=KEY).status_code == 200
        (other / "config.json").unlink()  # gone before the other worker's next request
        assert ids(cb.get("/users/u00001/recommendations?n=5"))
        assert cb.get("/health/ready").json()["model"] == "hybrid"
        assert "does not load here" in caplog.text
        with TestClient(create_app(model_dir, store, "test-key", service="s")) as restarted:  # nor at start
            assert restarted.get("/health/ready").json()["model"] == "hybrid"


@pytest.mark.parametrize("body, field", [
    ({"events": [{"user_id": "typo", "item_id": "i00001", "event": "purchase"}]}, ["body", "events", 0, "event"]),
    ({"events": [{"user_id": "typo", "item_id": "i00001", "type": "rating", "valeu": 5}]}, ["body", "events", 0, "valeu"]),
    ({"events": [{"user_id": "typo", "item_id": "i00001"}], "n": 3}, ["body", "n"]),
])  # fmt: skip
def test_a_field_the_body_does_not_have_is_422_naming_it_and_nothing_is_stored(client, body, field):
    # Before, unknown fields were dropped: {"event": "purchase"} was stored as a "view".
    r = client.post("/events", json=body, headers=KEY)
    assert r.status_code == 422, r.text
    assert [e["loc"] for e in r.json()["detail"] if e["type"] == "extra_forbidden"] == [field]
    assert client.get("/users/typo/events").json()["events"] == []


def test_a_misspelt_session_or_item_field_is_422(client):
    r = client.post("/sessions/recommendations", json={"events": [{"item_id": "i00001"}], "count": 3})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "count"]
    r = client.put("/items/new1", json={"text": "a new thing", "attributes": {}, "category": "x"}, headers=KEY)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "category"]
    assert client.get("/items/new1").status_code == 404


def test_ids_holding_a_slash_are_reached_by_path(client):
    """An id is an opaque string: a URL as an item id, ``team/ann`` as a user. Before, such a
    user could post events (the id is in the body) but their recommendations and events were
    a 404, and such an item could not be put, read or deleted."""
    from urllib.parse import quote

    item, user = "https://shop.example/p/42", "team/ann"
    enc_item, enc_user = quote(item, safe=""), quote(user, safe="")
    r = client.put(f"/items/{enc_item}", json={"text": "a wooden toy train for children"}, headers=KEY)
    assert r.status_code == 200 and r.json() == {"id": item, "created": True}
    assert client.get(f"/items/{enc_item}").json()["id"] == item
    assert item not in ids(client.get(f"/items/{enc_item}/similar?n=5"))  # the similar items of it
    r = client.post("/events", json={"events": [{"user_id": user, "item_id": item}]}, headers=KEY)
    assert r.json()["accepted"] == 1
    (event,) = client.get(f"/users/{enc_user}/events").json()["events"]
    assert (event["user_id"], event["item_id"]) == (user, item)
    for path in (f"/users/{enc_user}/recommendations?n=5", f"/users/{user}/recommendations?n=5"):
        got = ids(client.get(path))
        assert len(got) == 5 and item not in got  # seen, so excluded
    assert client.put(f"/users/{enc_user}", json={"attributes": {"age": 30}}, headers=KEY).json()["id"] == user
    assert client.delete(f"/items/{enc_item}", headers=KEY).json() == {"id": item, "deleted": True}
    assert client.get(f"/items/{enc_item}").status_code == 404
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/items/{item_id}", "/items/{item_id}/similar", "/users/{user_id}/recommendations"} <= set(paths)


def test_a_timestamp_in_milliseconds_is_422_naming_it_and_nothing_is_stored(client):
    """``Date.now()`` gives milliseconds; read as seconds the event would sit tens of thousands
    of years ahead of every other. Refused as the readers refuse it."""
    events = [{"user_id": "ms", "item_id": "i00001", "timestamp": 1733390000},
              {"user_id": "ms", "item_id": "i00002", "timestamp": 1733390000123}]  # fmt: skip
    r = client.post("/events", json={"events": events}, headers=KEY)
    assert r.status_code == 422, r.text
    (err,) = r.json()["detail"]
    assert err["loc"] == ["body", "events", 1, "timestamp"] and "milliseconds?" in err["msg"]
    assert client.get("/users/ms/events").json()["events"] == []
    events[1]["timestamp"] = 253402300799  # the last second of the year 9999 is still seconds
    assert client.post("/events", json={"events": events}, headers=KEY).json()["accepted"] == 2
