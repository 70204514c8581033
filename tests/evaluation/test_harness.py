"""The evaluation harness, end to end on a small synthetic world."""

import logging

from metarec.data.synthetic import WorldConfig, make_world
from metarec.evaluation import evaluate


def test_models_that_rank_none_of_the_candidates_are_said_once_not_left_to_read_as_zeros(caplog):
    data = make_world(WorldConfig(n_users=150, n_items=80, seed=3))
    with caplog.at_level(logging.WARNING, logger="metarec.evaluation.harness"):
        r = evaluate(data, "cold-item", ["pop", "ease", "content-knn"], seeds=[1, 2],
                     params={"content-knn": {"encoder": "hashing-64"}})  # fmt: skip
    said = [m for m in caplog.messages if "cold-item candidate" in m]
    # one line for both models and both seeds; content-knn ranks them
    assert said == ["pop, ease: rank no cold-item candidate (items never seen in training, which they cannot score), "
                    "so cold-item rows are 0 by construction"]  # fmt: skip
    assert r.value("pop", "Recall@20") == 0.0 < r.value("content-knn", "Recall@20")


def test_paired_differences_are_the_difference_of_the_means_user_by_user(tmp_path):
    """With ``versus``, each model's per-seed mean difference is the difference of the two
    models' means (the same queries in the same order); a model against a copy of itself
    differs by exactly 0 on every user; the standard errors come from the per-user spread."""
    import numpy as np
    import pytest

    from metarec.data.splits import make_split
    from metarec.evaluation.harness import query_set_per_user
    from metarec.models import make_scorer

    data = make_world(WorldConfig(n_users=150, n_items=80, seed=3))
    r = evaluate(data, "holdout", ["pop", "ease", "itemknn"], seeds=[1, 2], versus="pop", cutoffs=(10,))
    rows = {(p["model"], p["metric"]): p for p in r.paired if p["segment"] == "warm"}
    assert {m for m, _ in rows} == {"ease", "itemknn"} and all(p["versus"] == "pop" for p in r.paired)
    for model in ("ease", "itemknn"):
        p = rows[(model, "NDCG@10")]
        assert p["diff"] == pytest.approx(r.value(model, "NDCG@10", "warm") - r.value("pop", "NDCG@10", "warm"), abs=1e-12)
        assert p["seeds"] == 2 and set(p["per_seed"]) == {1, 2} and p["se_seeds"] is not None
        assert 0 < p["better"] + p["worse"] <= 2 * 150 and p["se_users"] > 0
        assert p["seeds_above"] == sum(v > 0 for v in p["per_seed"].values())
    # The per-user values behind them: a model against itself is 0 on every user.
    split = make_split(data, "holdout", 1)
    qs = split.query_sets[0]
    ease = make_scorer("ease").fit(split.train)
    a, _ = query_set_per_user(ease, qs, (10,), 1)
    b, _ = query_set_per_user(ease, qs, (10,), 1)
    np.testing.assert_array_equal(a["NDCG@10"], b["NDCG@10"])
    assert len(a["NDCG@10"]) == int((qs.relevant.getnnz(axis=1) > 0).sum())
    d = a["NDCG@10"] - query_set_per_user(make_scorer("pop").fit(split.train), qs, (10,), 1)[0]["NDCG@10"]
    assert rows[("ease", "NDCG@10")]["per_seed"][1] == pytest.approx(d.mean(), abs=1e-12)
    # The report's table gives each seed's difference, in the order of the seeds, also once read back.
    from metarec.evaluation.harness import Results
    from metarec.evaluation.report import report_markdown

    p = rows[("ease", "NDCG@10")]
    cells = f"{p['seeds_above']} of 2 | {p['per_seed'][1]:+.4f} / {p['per_seed'][2]:+.4f} | {p['better']} / {p['worse']} |"
    assert cells in report_markdown(r)
    r.write(tmp_path / "results.json")
    assert cells in report_markdown(Results.read(tmp_path / "results.json"))


def test_versus_must_be_a_model_evaluated():
    import pytest

    from metarec.errors import ConfigError

    with pytest.raises(ConfigError, match="versus: 'ials' is not one of the models evaluated"):
        evaluate(make_world(WorldConfig(n_users=30, n_items=20, seed=1)), "holdout", ["pop", "ease"], versus="ials")


def test_an_ensemble_evaluated_beside_its_members_uses_those_members_and_ranks_as_one_fit_alone():
    """The models evaluated before an ensemble are its final members (offered, not trained
    again); the ensemble's figures are those of the same ensemble evaluated on its own."""
    data = make_world(WorldConfig(n_users=150, n_items=80, seed=3))
    beside = evaluate(data, "holdout", ["pop", "ease", "ensemble"], seeds=[1], cutoffs=(10,),
                      params={"ensemble": {"folds": 1}})  # fmt: skip
    alone = evaluate(data, "holdout", ["ensemble"], seeds=[1], cutoffs=(10,),
                     params={"ensemble": {"folds": 1, "members": "pop,ease"}})  # fmt: skip
    assert beside.details["ensemble"][0]["reused"] == ["pop", "ease"]
    assert alone.details["ensemble"][0]["reused"] == []
    assert beside.value("ensemble", "NDCG@10") == alone.value("ensemble", "NDCG@10")


def test_explore_new_lists_hold_the_share_and_only_add_new_items_to_a_list():
    """With ``explore_new`` every first p places of a list hold floor(p * share) items without
    training pairs, while any are left (the hybrid scores them all), and a new item the scores ranked into the top
    10 stays there: the cold-item segment can only gain hits."""
    import numpy as np

    from metarec.data.splits import make_split
    from metarec.evaluation.harness import query_set_per_user
    from metarec.models import make_scorer

    data = make_world(WorldConfig(n_users=150, n_items=80, seed=3))
    split = make_split(data, "temporal", 1)
    new = split.train.matrix().getnnz(axis=0) == 0
    assert 2 <= new.sum() < 40
    scorer = make_scorer("hybrid", encoder="hashing-64").fit(split.train)
    (qs,) = [q for q in split.query_sets if q.segment == "warm"]
    _, plain = query_set_per_user(scorer, qs, (5, 10), 1)
    _, shown = query_set_per_user(scorer, qs, (5, 10), 1, (new, 0.3))
    for row, plain_row in zip(shown, plain):
        for p in range(1, 11):
            assert new[row[:p]].sum() >= min(int(p * 0.3 + 1e-9), new.sum())
        assert set(plain_row[new[plain_row]]) <= set(row[new[row]])
    params = {"hybrid": {"encoder": "hashing-64"}}
    ease = make_scorer("ease").fit(split.train)  # scores no new item: its lists stay as they are
    np.testing.assert_array_equal(query_set_per_user(ease, qs, (10,), 1, (new, 0.3))[1],
                                  query_set_per_user(ease, qs, (10,), 1)[1])  # fmt: skip
    r0 = evaluate(data, "temporal", ["hybrid"], seeds=[1], params=params)
    r1 = evaluate(data, "temporal", ["hybrid"], seeds=[1], params=params, explore_new=0.3)
    assert r1.explore_new == 0.3 and r0.explore_new == 0.0
    assert r1.value("hybrid", "HitRate@10", "cold-item") >= r0.value("hybrid", "HitRate@10", "cold-item")
    assert r1.value("hybrid", "HitRate@10", "cold-item") > 0
