"""The bars of the foundation issue, on the real data sets under $METAREC_DATA (skipped without)."""

import pytest

from metarec.data import load_dataset
from metarec.evaluation import evaluate
from tests.conftest import shared_dataset

pytestmark = pytest.mark.dataset


def test_movielens_100k_holdout_bands():
    data = load_dataset(shared_dataset("ml-100k"), "movielens-100k")
    r = evaluate(data, "holdout", ["pop", "ease"], seeds=[42])
    assert 0.47 <= r.value("ease", "NDCG@10") <= 0.51
    assert 0.22 <= r.value("pop", "NDCG@10") <= 0.28


def test_movielens_100k_cold_user_all_supports():
    data = load_dataset(shared_dataset("ml-100k"), "movielens-100k")
    r = evaluate(data, "cold-user", ["pop"], seeds=[42])
    users = {row["support"]: row["users"] for row in r.rows if row["metric"] == "NDCG@10"}
    assert sorted(users) == [1, 3, 5, 10, 20]
    assert all(n > 100 for n in users.values())
    assert users[1] >= users[20]


def test_inspect_amazon_scientific_and_taobao():
    amazon = load_dataset(shared_dataset("amazon-scientific"), "recbole")
    assert (amazon.n_users, amazon.n_items, amazon.n_interactions) == (2928, 1585, 19712)
    assert amazon.text_fields == ("text",) and all(amazon.item_text()[:5])
    taobao = load_dataset(shared_dataset("taobao-userbehavior-timeslice"), "taobao")
    assert taobao.n_interactions == 110300
    assert taobao.describe()["events"] == {"buy": 2493, "cart": 6063, "fav": 3383, "pv": 98361}


def _cold_item_ratio(name: str, fmt: str) -> float:
    pytest.importorskip("sentence_transformers")
    data = load_dataset(shared_dataset(name), fmt)
    r = evaluate(data, "cold-item", ["pop", "content-knn", "hybrid"], seeds=[42])
    best = max(r.value("pop", "Recall@20"), r.value("content-knn", "Recall@20"))
    return r.value("hybrid", "Recall@20") / best


def test_amazon_cold_item_hybrid_beats_content_knn():
    """Issue 3's bar: hybrid Recall@20 >= 1.12 x the better of pop and content-kNN."""
    assert _cold_item_ratio("amazon-scientific", "recbole") >= 1.12


def test_movielens_cold_item_hybrid_beats_content_knn():
    """Issue 3's bar on ml-100k (text from title, year and genres): >= 2.1 x."""
    assert _cold_item_ratio("ml-100k", "movielens-100k") >= 2.1


def test_service_bars_on_movielens(tmp_path):
    """Issue 4's functional bars with the model `metarec train` picks for ml-100k."""
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from metarec.cli import main
    from metarec.serving.app import create_app

    assert main(["train", "--data", str(shared_dataset("ml-100k")), "--format", "movielens-100k", "--out", str(tmp_path / "m")]) == 0
    key = {"X-API-Key": "k"}
    with TestClient(create_app(tmp_path / "m", f"sqlite:///{tmp_path / 'e.db'}", "k")) as c:
        assert c.get("/health/ready").json()["model"] == "hybrid"
        r = c.put("/items/toy-twin", json={"text": "Toy Story (1995) Animation Children's Comedy"}, headers=key)
        assert r.status_code == 200
        similar = [x["id"] for x in c.get("/items/toy-twin/similar?n=10").json()["items"]]
        assert "1" in similar  # Toy Story itself
        before = [x["id"] for x in c.get("/users/newcomer/recommendations?n=10").json()["items"]]
        events = [{"user_id": "newcomer", "item_id": i, "type": "rating", "value": 5} for i in ("172", "174", "181")]
        assert c.post("/events", json={"events": events}, headers=key).status_code == 200
        after = [x["id"] for x in c.get("/users/newcomer/recommendations?n=10").json()["items"]]
        assert after != before and not {"172", "174", "181"} & set(after)
        assert c.post("/events", json={"events": events}).status_code == 401
        assert c.post("/events", json={"events": [{"user_id": "x"}]}, headers=key).status_code == 422
        assert c.post("/events", content=b"x" * (20 << 20), headers={**key, "content-type": "application/json"}).status_code == 413
