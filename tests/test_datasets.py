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
