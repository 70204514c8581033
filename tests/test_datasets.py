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
