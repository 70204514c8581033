"""The end-to-end demo: synthetic world -> train -> evaluate every protocol -> report.

Offline and small enough for two cores in well under two minutes. The CLI calls
:func:`run_demo`; tests call it with a smaller world.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from metarec.data.splits import PROTOCOLS
from metarec.data.synthetic import WorldConfig, make_world, write_world
from metarec.evaluation.harness import Results, evaluate
from metarec.evaluation.report import rich_tables, write_report
from metarec.models.io import load_model, save_model
from metarec.models.registry import make_scorer

DEMO_MODELS = ("pop", "itemknn", "ease", "ials", "bpr")


def run_demo(
    out: str | Path,
    n_users: int = 1500,
    n_items: int = 800,
    seed: int = 0,
    models: tuple[str, ...] = DEMO_MODELS,
    console: Any = None,
    progress: Callable[[int, str], Any] | None = None,
) -> dict[str, Results]:
    """Run the demo into ``out`` and return the results per protocol.

    Writes ``out/world/`` (the synthetic CSVs), ``out/model/`` (an EASE model directory),
    ``out/report.md`` with plots and one ``results-<protocol>.json`` per protocol.
    """
    out = Path(out)
    say = console.print if console is not None else (lambda *a, **k: None)
    t0 = time.perf_counter()
    config = WorldConfig(n_users=n_users, n_items=n_items, seed=seed)
    write_world(out / "world", config)
    data = make_world(config)
    say(f"[bold]synthetic world[/bold]: {data}")
    for line in data.reports[0].lines():
        say("  " + line)

    runs: dict[str, Results] = {}
    bar = progress(len(PROTOCOLS) * len(models), "evaluating") if progress else nullcontext(None)
    with bar as step:
        for protocol in PROTOCOLS:
            runs[protocol] = evaluate(data, protocol, models, seeds=[seed], progress=step)

    scorer = make_scorer("ease").fit(data)
    save_model(scorer, data, out / "model")
    model = load_model(out / "model")
    new_user_history = [str(data.item_ids[i]) for i in data.interactions["item"].iloc[:3]]
    recs = model.recommend(None, history=new_user_history, n=5)
    report = write_report(list(runs.values()), out, title="metarec demo: a synthetic world")

    if console is not None:
        for r in runs.values():
            for table in rich_tables(r, metrics=("NDCG@10", "Recall@20")):
                console.print(table)
        say(f"a new user who clicked {new_user_history} gets: {[i for i, _ in recs]}")
        say(f"report: {report}  (model directory: {out / 'model'})")
        say(f"demo finished in {time.perf_counter() - t0:.1f}s")
    return runs
