"""The end-to-end demo: synthetic world -> train -> evaluate every protocol -> report.

Offline and small enough for two cores in well under two minutes. The CLI calls
:func:`run_demo`; tests call it with a smaller world.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from metarec.data.splits import PROTOCOLS
from metarec.data.synthetic import WorldConfig, make_world, write_world
from metarec.evaluation.harness import Results, evaluate
from metarec.evaluation.report import check_report_out, rich_tables, write_report
from metarec.models.io import check_model_out, load_model, save_model
from metarec.models.registry import make_scorer

DEMO_MODELS = ("pop", "itemknn", "ease", "ials", "bpr", "content-knn", "hybrid")
CONTENT_MODELS = ("content-knn", "hybrid", "two-tower")


def available_models(models: tuple[str, ...]) -> tuple[str, ...]:
    """``models`` less the content models when the 'text' extra is not installed."""
    import importlib.util

    if importlib.util.find_spec("sentence_transformers") and importlib.util.find_spec("torch"):
        return models
    return tuple(m for m in models if m not in CONTENT_MODELS)


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

    Writes ``out/world/`` (the synthetic CSVs), ``out/model/`` (a hybrid model directory,
    EASE without the 'text' extra),
    ``out/report.md`` with plots and one ``results-<protocol>.json`` per protocol.
    """
    out = Path(out)
    say = console.print if console is not None else (lambda *a, **k: None)
    wanted, models = models, available_models(models)
    if models != wanted:
        say("content models skipped: pip install 'metarec[text]' to add them")
    t0 = time.perf_counter()
    config = WorldConfig(n_users=n_users, n_items=n_items, seed=seed)
    check_report_out(out)  # where the model and the report go, before minutes of work
    check_model_out(out / "model")
    write_world(out / "world", config)
    cleaning = logging.getLogger("metarec.data.cleaning")
    level = cleaning.level
    cleaning.setLevel(logging.ERROR)  # the world's dirty rows are on purpose, and said below
    try:
        data = make_world(config)
    finally:
        cleaning.setLevel(level)
    say(f"[bold]synthetic world[/bold]: {data}")
    for line in data.reports[0].lines():
        say("  " + line)

    runs: dict[str, Results] = {}
    bar = progress(len(PROTOCOLS) * len(models), "evaluating") if progress else nullcontext(None)
    with bar as step:
        for protocol in PROTOCOLS:
            runs[protocol] = evaluate(data, protocol, models, seeds=[seed], progress=step)

    scorer = make_scorer("hybrid" if "hybrid" in models else "ease").fit(data)
    save_model(scorer, data, out / "model")
    model = load_model(out / "model")
    new_user_history = [str(data.item_ids[i]) for i in data.interactions["item"].iloc[:3]]
    recs = model.recommend(None, history=new_user_history, n=5)
    new_item = None
    if "hybrid" in models:  # a brand-new item, recommendable from its text at once
        # Its text is a new edition of an item the user clicked: it should rank high at once.
        twin = data.item_text()[int(data.item_index([new_user_history[0]])[0])]
        model.add_items(["new-item"], [f"{twin} New edition."])
        new_item = model.recommend(None, history=new_user_history, n=len(model.item_ids))
        explored = model.recommend(None, history=new_user_history, n=10, explore_new=0.1)
    report = write_report(list(runs.values()), out, title="metarec demo: a synthetic world")

    if console is not None:
        for r in runs.values():
            for table in rich_tables(r, metrics=("NDCG@10", "Recall@20")):
                console.print(table)
        say(f"a new user who clicked {new_user_history} gets: {[i for i, _ in recs]}")
        if new_item is not None:
            rank = [i for i, _ in new_item].index("new-item") + 1
            shown = [i for i, _ in explored]
            place = shown.index("new-item") + 1 if "new-item" in shown else None
            say(
                f"a brand-new item (text only: a new edition of {new_user_history[0]}) ranks {rank} "
                f"of {len(new_item)} for that user, without retraining"
                + (f"; with explore_new=0.1 (a place in ten kept for new items) it is shown at place {place} of 10"
                   if place else "; with explore_new=0.1 another new item takes the place kept for new items")
            )
        say(f"report: {report}  (model directory: {out / 'model'})")
        say(f"demo finished in {time.perf_counter() - t0:.1f}s")
    return runs
