"""End to end: synthetic world -> train -> evaluate every protocol -> report -> model directory."""

import json

from metarec.data.splits import PROTOCOLS
from metarec.demo import run_demo
from metarec.models.io import load_model


def test_demo_end_to_end(tmp_path):
    runs = run_demo(tmp_path, n_users=300, n_items=150, seed=2)
    assert set(runs) == set(PROTOCOLS)
    report = (tmp_path / "report.md").read_text()
    for protocol in PROTOCOLS:
        assert f"protocol `{protocol}`" in report
        res = json.loads((tmp_path / f"results-{protocol}.json").read_text())
        assert res["rows"], protocol
    assert (tmp_path / "synthetic-cold-user-support.png").stat().st_size > 1000
    # Collaborative models beat popularity for warm users of the synthetic world (it has taste).
    holdout = runs["holdout"]
    assert holdout.value("ease", "NDCG@10") > holdout.value("pop", "NDCG@10")
    # Baselines cannot score items they never saw: cold items are not recommended at all.
    assert runs["cold-item"].value("ease", "Recall@20") == 0.0
    model = load_model(tmp_path / "model")
    assert len(model.recommend(None, history=[str(model.item_ids[0])], n=3)) == 3
