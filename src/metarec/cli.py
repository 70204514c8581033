"""The ``metarec`` command: thin sub-commands that parse arguments and call the library.

Errors a user can fix (bad data, unknown names) print one ``error:`` line and exit with
status 2; nothing prints a traceback unless ``--debug`` is given.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import sys
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from metarec import __version__
from metarec.errors import ConfigError, MetarecError

#: ``--time-unit``'s choices: the keys of ``metarec.data.cleaning.TIME_UNITS`` (not imported
#: here, so that ``metarec --help`` does not load pandas; a test keeps them equal).
TIME_UNIT_CHOICES = ("s", "ms", "us", "ns")

log = logging.getLogger("metarec")


# ------------------------------------------------------------------------------ helpers
def _console():
    from rich.console import Console

    return Console(stderr=False, highlight=False)


@contextmanager
def _progress(total: int, description: str) -> Iterator[Callable[[str], None]]:
    """A rich progress bar on stderr; yields a callback that advances it by one step."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=Console(stderr=True), transient=False,
    ) as bar:  # fmt: skip
        task = bar.add_task(description, total=total)

        def step(text: str) -> None:
            bar.update(task, advance=1, description=text)

        yield step


def _split_list(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def _ints(value: str, what: str) -> list[int]:
    try:
        return [int(v) for v in _split_list(value)]
    except ValueError:
        raise ConfigError(f"{what}: expected comma-separated integers, got {value!r}") from None


def _whole_number(text: str, low: int, high: int | None, outside: str) -> int:
    """``text`` as a whole number from ``low`` to ``high`` (``None``: no limit), or an
    argparse type error: ``outside`` says what a number out of range is."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < low or (high is not None and value > high):
        raise argparse.ArgumentTypeError(f"{value} {outside}")
    return value


def _positive_int(text: str) -> int:
    """An argparse type: a whole number, at least 1."""
    return _whole_number(text, 1, None, "is below 1")


def _port(text: str) -> int:
    """An argparse type: a TCP port, 0 (any free one) to 65535 (above was an OverflowError traceback)."""
    return _whole_number(text, 0, 65535, "is not a port (0 to 65535)")


def _share(text: str) -> float:
    """An argparse type: a number from 0 to 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value <= 1:  # (NaN fails too)
        raise argparse.ArgumentTypeError(f"{value} is not a share from 0 to 1")
    return value


def _add_data_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--data", required=True, help="data file or directory")
    g.add_argument("--format", required=True, help="movielens-100k, movielens, recbole, taobao, csv, parquet, synthetic")
    g.add_argument("--columns", help="csv/parquet column mapping, e.g. user=userId,item=movieId,value=rating,timestamp=ts")
    g.add_argument("--items", help="csv/parquet: item attribute file")
    g.add_argument("--item-columns", help="id column of --items, e.g. item=movieId")
    g.add_argument("--users", help="csv/parquet: user attribute file")
    g.add_argument("--user-columns", help="id column of --users, e.g. user=userId")
    g.add_argument("--text-fields", help="csv/parquet: item columns holding text")
    g.add_argument("--sep", type=_separator, help="csv: field separator of the log and attribute files "
                   "(default ','; 'tab' for tabs; .tsv and .tab files are read with tabs)")
    g.add_argument("--min-core", type=_positive_int, help="keep only the k-core (distinct user-item pairs)")
    g.add_argument("--value-range", type=_value_range, help="csv/parquet: the values' scale, low,high (e.g. 1,5): rows "
                   "outside are dropped and reported, and a trained model's service refuses events outside it")
    g.add_argument("--time-unit", choices=TIME_UNIT_CHOICES, help="csv/parquet: the unit of numeric timestamps "
                   "(default s; ms for milliseconds, as JavaScript and many logs write them)")


def _value_range(text: str) -> tuple[float, float]:
    """``--value-range``: two finite numbers, ``low,high``, low not above high."""
    try:
        lo, hi = (float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected low,high, e.g. 1,5") from None
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
        raise argparse.ArgumentTypeError(f"{text!r}: expected two finite numbers, low not above high, e.g. 1,5")
    return lo, hi


def _duration(value: str) -> float:
    """``--every``: seconds, or a number with s, m, h or d; above 0."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([smhd]?)\s*", value.lower())
    if not m or float(m.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"{value!r}: a duration above 0, e.g. 3600, 90s, 15m, 1h or 1d")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def _service_name(value: str) -> str:
    """``serve --service``: 1 to 64 letters, digits, ``.``, ``_`` or ``-``."""
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", value):
        raise argparse.ArgumentTypeError(f"{value!r}: use 1 to 64 letters, digits, '.', '_' or '-'")
    return value


def _separator(value: str) -> str:
    """``--sep``: one character, or ``tab``."""
    sep = "\t" if value.lower() in ("tab", "\\t", "\t") else value
    if len(sep) != 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not one character (or 'tab')")
    return sep


def _load(args: argparse.Namespace):
    from metarec.data import load_dataset

    opts: dict[str, Any] = {"min_core": args.min_core}
    if args.format in ("csv", "parquet"):
        opts.update(columns=args.columns, items=args.items, item_columns=args.item_columns,
                    users=args.users, user_columns=args.user_columns,
                    text_fields=args.text_fields or ())  # fmt: skip
        if args.sep:
            opts["sep"] = args.sep
        if args.value_range:
            opts["value_range"] = args.value_range
        if args.time_unit:
            opts["time_unit"] = args.time_unit
    elif args.columns or args.items or args.users or args.sep or args.value_range or args.time_unit:
        raise ConfigError("--columns/--items/--users/--sep/--value-range/--time-unit apply to --format csv or parquet, "
                          f"not {args.format!r}")
    return load_dataset(args.data, args.format, **opts)


def _model_params(specs: Sequence[str] | None, models: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``["ease.l2=300"]`` -> ``{"ease": {"l2": 300}}``; a bare ``l2=300`` applies to every model;
    ``ensemble.ials.factors=128`` -> ``{"ensemble": {"ials.factors": 128}}`` (a member's parameter)."""
    from metarec.models.registry import parse_params

    out: dict[str, dict[str, Any]] = {m: {} for m in models}
    for spec in specs or []:
        key, _, value = spec.partition("=")
        model, dot, name = key.partition(".")
        targets = [model] if dot else list(models)
        name = name if dot else key
        for m in targets:
            if m not in out:
                raise ConfigError(f"--param {spec!r}: model {m!r} is not being run")
            out[m].update(parse_params([f"{name}={value}"]))
    return out


# ----------------------------------------------------------------------------- commands
def cmd_data_inspect(args: argparse.Namespace) -> int:
    data = _load(args)
    info = data.describe()
    info["cleaning"] = [r.to_dict() for r in data.reports]
    if args.json:
        print(json.dumps(info, indent=1, default=str))
        return 0
    from rich.table import Table

    con = _console()
    t = Table(title=f"{data.name} ({args.format})", show_header=False)
    for k, v in data.describe().items():
        t.add_row(k, json.dumps(v) if isinstance(v, (dict, list)) else f"{v:.6g}" if isinstance(v, float) else str(v))
    con.print(t)
    if data.text_fields:
        con.print("example item text:", repr(data.item_text()[0][:160]))
    for r in data.reports:
        for line in r.lines():
            con.print(line)
    return 0


def cmd_data_clean(args: argparse.Namespace) -> int:
    from metarec.data.large import clean_large

    report = clean_large(args.data, args.out, args.columns, value_range=args.value_range, min_core=args.min_core,
                         memory_limit=args.memory_limit, default_event=args.default_event,
                         time_unit=args.time_unit)  # fmt: skip
    print("\n".join(report.lines()))
    print(f"wrote {report.rows_out:,} rows to {args.out}")
    return 0


def cmd_data_synth(args: argparse.Namespace) -> int:
    from metarec.data.synthetic import WorldConfig, write_world

    out = write_world(args.out, WorldConfig(n_users=args.n_users, n_items=args.n_items, seed=args.seed))
    print(f"wrote a synthetic world to {out} (read it with --format synthetic)")
    return 0


def cmd_encode(args: argparse.Namespace) -> int:
    import time

    from metarec.encoders import ContentConfig, item_content
    from metarec.training import check_device

    check_device(args.device)  # before the data is read (with every text cached, it went unchecked)
    data = _load(args)
    config = ContentConfig(encoder=args.encoder, template=args.template, cache_dir=args.cache_dir,
                           device=args.device, allow_download=args.allow_download)  # fmt: skip
    t = time.perf_counter()
    vectors, has = item_content(data, config, progress=args.workers == 1, workers=args.workers)
    secs = time.perf_counter() - t
    print(f"{len(vectors)} items ({int(has.sum())} with text) -> {vectors.shape[1]}-d vectors with "
          f"{args.encoder} in {secs:.1f}s ({len(vectors) / max(secs, 1e-9):,.0f} items/s; cached for next time)")  # fmt: skip
    return 0


def default_model(data) -> str:
    """The project's best model for the data: the hybrid where items have text (and the
    'text' extra is installed) and the catalogue suits EASE, else EASE or iALS."""
    import importlib.util

    from metarec.models.content.hybrid import HybridConfig

    has_text = bool(data.text_fields)
    text_extra = bool(importlib.util.find_spec("sentence_transformers"))
    if has_text and text_extra and data.n_items <= HybridConfig.max_items:
        return "hybrid"
    return "ease" if data.n_items <= 30_000 else "ials"


def cmd_serve(args: argparse.Namespace) -> int:
    import os
    import uuid

    import uvicorn

    from metarec.serving.app import create_app
    from metarec.serving.store import redacted
    from metarec.serving.workers import free_address

    key = args.api_key or os.environ.get("METAREC_API_KEY")
    # A port in use: one line now, not after the model loads; --port 0: the port it will be.
    args.port = free_address(args.host, args.port)[1][1]
    print(f"serving {args.model} on http://{args.host}:{args.port} with {args.workers} worker(s) "
          f"(store {redacted(args.store)})", flush=True)  # fmt: skip
    if args.workers == 1:
        app = create_app(args.model, args.store, key or "", max_body_bytes=args.max_body, service=args.service,
                         explore_new=args.explore_new)  # fmt: skip
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
        return 0
    # Fail here with one clear line, not in N workers.
    from metarec.errors import DataError, MetarecError
    from metarec.serving.store import open_store

    if not key:
        raise MetarecError("the service needs an API key for writes (--api-key or METAREC_API_KEY)")
    if not (Path(args.model) / "config.json").exists():
        raise DataError(f"{args.model}: not a metarec model directory (no config.json)")
    open_store(args.store).close()
    # One service id per start (or --service's): the workers follow each other's reloads, and
    # a worker that restarts takes the latest one; the next `metarec serve` starts on its own
    # --model unless it names the same --service.
    os.environ.update(METAREC_MODEL=str(args.model), METAREC_STORE=args.store, METAREC_API_KEY=key or "",
                      METAREC_MAX_BODY=str(args.max_body), METAREC_SERVICE=args.service or uuid.uuid4().hex,
                      METAREC_EXPLORE_NEW=str(args.explore_new))  # fmt: skip
    from metarec.serving.workers import run_workers

    run_workers("metarec.serving.app:app_from_env", args.host, args.port, args.workers, log_level="warning")
    return 0


def cmd_retrain(args: argparse.Namespace) -> int:
    import os

    from metarec.serving.retrain import reload_service, retrain, retrain_every

    key = args.api_key or os.environ.get("METAREC_API_KEY") or ""
    if args.reload and not key:
        raise ConfigError("--reload needs the service's API key (--api-key or METAREC_API_KEY)")
    if args.every is None:
        if args.rounds is not None:
            raise ConfigError("--rounds applies with --every")
        path = retrain(args.store, args.model, args.out)
        if not args.reload:
            print(f"retrained model written to {path}; swap it in with POST /admin/reload")
            return 0
        info = reload_service(args.reload, path, key)
        print(f"retrained model written to {path}; {args.reload} now serves it ({info.get('model')})")
        return 0
    print(f"retraining {args.model} from {args.store} every {args.every:g} s into {args.out}"
          + (f", reloading {args.reload}" if args.reload else "") + " (Ctrl-C stops)", flush=True)  # fmt: skip
    failed = retrain_every(args.store, args.model, args.out, args.every, reload_url=args.reload, api_key=key,
                           keep=args.keep, rounds=args.rounds, report=lambda line: print(line, flush=True))  # fmt: skip
    return 1 if failed else 0


def cmd_train(args: argparse.Namespace) -> int:
    from metarec.models.io import check_model_out, save_model
    from metarec.models.registry import make_scorer, parse_params

    check_model_out(args.out)  # before the training, not after it
    params = parse_params(args.param)
    if args.model:  # its name and settings, before the data is read
        make_scorer(args.model, **params)
    if args.workers > 1 and args.model:
        from metarec.distributed import check_distributed

        check_distributed(args.model)
    data = _load(args)
    name = args.model or default_model(data)
    if args.workers > 1:
        from metarec.distributed import check_distributed, fit_distributed

        check_distributed(name)
        print(f"training {name} on {data.name} with {args.workers} Ray Train workers (torch DDP)", flush=True)
        scorer = fit_distributed(name, params, data, args.workers, threads=args.threads)
    else:
        scorer = make_scorer(name, **params)
        with _progress(1, f"training {name} on {data.name}") as step:
            scorer.fit(data)
            step(f"trained {name}")
    path = save_model(scorer, data, args.out)
    print(f"saved {scorer!r} to {path}")
    return 0


def cmd_recommend(args: argparse.Namespace) -> int:
    from metarec.models.io import load_model

    model = load_model(args.model)
    history = _split_list(args.history) if args.history is not None else None
    recs = model.recommend(args.user, history=history, n=args.n, exclude_seen=not args.include_seen,
                           explore_new=args.explore_new)  # fmt: skip
    if args.json:
        print(json.dumps({"user": args.user, "items": [{"id": i, "score": s} for i, s in recs]}))
        return 0
    from rich.table import Table

    index = {k: j for j, k in enumerate(model.item_ids)}
    title_col = next((c for c in ("title", "text", "name") if c in model.items.columns), None)
    known = args.user is not None and model.knows_user(args.user)
    who = f"user {args.user}" if known else f"user {args.user} (not in training: a new user)" if args.user else "a new user"
    given = "" if history is None else f" with history {', '.join(history)}" if history else " with no history"
    t = Table(title=f"top {args.n} for {who}{given}")
    t.add_column("rank")
    t.add_column("item")
    t.add_column("score")
    if title_col:
        t.add_column(title_col)
    for rank, (item, score) in enumerate(recs, 1):
        row = [str(rank), item, f"{score:.4g}"]  # iALS's scores on sparse data are ~1e-3
        if title_col:
            row.append(str(model.items[title_col].iloc[index[item]])[:70])
        t.add_row(*row)
    _console().print(t)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from metarec.evaluation import evaluate
    from metarec.evaluation.harness import check_models, check_run
    from metarec.evaluation.report import check_report_out, rich_tables, write_report
    from metarec.models.registry import MODELS

    models = _split_list(args.models)
    if not models:
        raise ConfigError("--models: give at least one model name")
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise ConfigError(f"unknown model {unknown[0]!r}; choose from: {', '.join(MODELS)}")
    from metarec.data.splits import PROTOCOLS

    if args.protocol not in PROTOCOLS:
        raise ConfigError(f"unknown protocol {args.protocol!r}; choose from: {', '.join(PROTOCOLS)}")
    seeds = _ints(args.seeds, "--seeds") if args.seeds else [args.seed]
    cutoffs = _ints(args.cutoffs, "--cutoffs")
    check_run(models, seeds, cutoffs, args.versus)  # before the data is read
    params = _model_params(args.param, models)
    check_models(models, params)
    check_report_out(args.out)
    data = _load(args)
    with _progress(len(seeds) * len(models), f"{args.protocol}") as step:
        results = evaluate(data, args.protocol, models, seeds=seeds, cutoffs=cutoffs, params=params, progress=step,
                           negatives=args.negatives, versus=args.versus, explore_new=args.explore_new)  # fmt: skip
    for table in rich_tables(results):
        _console().print(table)
    report = write_report(results, args.out, title=f"metarec evaluate: {data.name}")
    print(f"results: {Path(args.out) / 'results.json'}  report: {report}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from metarec.demo import run_demo

    run_demo(args.out, n_users=args.n_users, n_items=args.n_items, seed=args.seed, console=_console(),
             progress=_progress)  # fmt: skip
    return 0


# ------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="metarec", description="Recommendations for new users and new items.")
    p.add_argument("--version", action="version", version=f"metarec {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = p.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="inspect or generate data").add_subparsers(dest="data_command", required=True)
    ins = data.add_parser("inspect", help="counts, event types, fields and what cleaning drops")
    _add_data_args(ins)
    ins.add_argument("--json", action="store_true", help="print JSON")
    ins.set_defaults(func=cmd_data_inspect)
    cl = data.add_parser("clean", help="clean a log larger than memory (DuckDB, out of core) into Parquet")
    cl.add_argument("--data", required=True, help="CSV (with a header) or Parquet log")
    cl.add_argument("--columns", help="column mapping, e.g. user=user_id,item=item_id,event=behavior,timestamp=ts")
    cl.add_argument("--out", required=True, help="Parquet file to write")
    cl.add_argument("--value-range", type=_value_range, help="drop values outside low,high, e.g. 1,5")
    cl.add_argument("--min-core", type=_positive_int, help="keep only the k-core (distinct user-item pairs)")
    cl.add_argument("--time-unit", choices=TIME_UNIT_CHOICES, default="s",
                    help="the unit of numeric timestamps (default s; ms for milliseconds)")
    cl.add_argument("--default-event", default="interaction")
    cl.add_argument("--memory-limit", default="2GB", help="DuckDB's memory limit; it spills to disk beyond it")
    cl.set_defaults(func=cmd_data_clean)
    syn = data.add_parser("synth", help="write a synthetic world (events.csv, items.csv, users.csv)")
    syn.add_argument("--out", required=True)
    syn.add_argument("--n-users", type=_positive_int, default=1500)
    syn.add_argument("--n-items", type=_positive_int, default=800)
    syn.add_argument("--seed", type=int, default=0)
    syn.set_defaults(func=cmd_data_synth)

    enc = sub.add_parser("encode", help="encode item texts into the embedding cache")
    _add_data_args(enc)
    enc.add_argument("--encoder", default="all-MiniLM-L6-v2", help="model name, local directory, or hashing")
    enc.add_argument("--template", help="item text template, e.g. '{title}. {genres}'")
    enc.add_argument("--cache-dir", help="embedding cache (default $METAREC_CACHE or ~/.cache/metarec)")
    enc.add_argument("--device", default="cpu", help="cpu, cuda, mps or auto")
    enc.add_argument("--allow-download", action="store_true", help="let the encoder fetch a model by hub name")
    enc.add_argument("--workers", type=_positive_int, default=1, help="encode with N Ray Data actors (the distributed extra)")
    enc.set_defaults(func=cmd_encode)

    tr = sub.add_parser("train", help="train a model and save it as a directory")
    _add_data_args(tr)
    tr.add_argument("--model", help="model name (default: the best for the data, e.g. hybrid)")
    tr.add_argument("--param", action="append", help="model parameter name=value (repeatable)")
    tr.add_argument("--out", required=True, help="model directory to write")
    tr.add_argument("--workers", type=_positive_int, default=1,
                    help="train a neural model with N Ray Train workers, torch DDP (the distributed extra)")
    tr.add_argument("--threads", type=_positive_int, default=1, help="torch threads per worker with --workers")
    tr.set_defaults(func=cmd_train)

    rec = sub.add_parser("recommend", help="recommend for a user from a saved model")
    rec.add_argument("--model", required=True, help="model directory")
    rec.add_argument("--user", help="user id (unknown or omitted: a new user)")
    rec.add_argument("--history", help="comma-separated item ids (default: the user's training history)")
    rec.add_argument("-n", type=_positive_int, default=10, help="how many items (at least 1)")
    rec.add_argument("--include-seen", action="store_true", help="do not remove the history from the list")
    rec.add_argument("--explore-new", type=_share, default=0.0, metavar="SHARE",
                     help="items without training pairs hold at least this share of every first places, as the "
                          "service's explore_new gives them")  # fmt: skip
    rec.add_argument("--json", action="store_true")
    rec.set_defaults(func=cmd_recommend)

    sv = sub.add_parser("serve", help="serve a model over HTTP with a durable event store")
    sv.add_argument("--model", required=True, help="model directory")
    sv.add_argument("--store", default="sqlite:///metarec-events.db", help="sqlite:///path.db or postgresql://...")
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--port", type=_port, default=8000, help="0: any free port (default 8000)")
    sv.add_argument("--api-key", help="key for writes (default: $METAREC_API_KEY)")
    sv.add_argument("--max-body", type=_positive_int, default=1 << 20, help="largest request body in bytes")
    sv.add_argument("--explore-new", type=_share, default=0.0, metavar="SHARE",
                    help="items without training pairs (posted since) hold at least this share of every first "
                         "places of a list, where a request gives no explore_new of its own (default 0)")  # fmt: skip
    sv.add_argument("--workers", type=_positive_int, default=1, help="worker processes sharing the store (one per core)")
    sv.add_argument("--service", type=_service_name,
                    help="a name that replicas on one store share: a POST /admin/reload to any of them reaches all, and "
                         "one that starts later starts on the latest reload, not on --model (default: a name of its own)")
    sv.set_defaults(func=cmd_serve)

    rt = sub.add_parser("retrain", help="train the served model again on its data plus the store's events")
    rt.add_argument("--store", required=True)
    rt.add_argument("--model", required=True, help="the model directory being served")
    rt.add_argument("--out", required=True, help="new model directory (with --every: the directory that holds one per round)")
    rt.add_argument("--every", type=_duration, help="retrain on a schedule: seconds, or 90s, 15m, 1h, 1d")
    rt.add_argument("--reload", metavar="URL", help="the service to swap each new model into (POST URL/admin/reload)")
    rt.add_argument("--api-key", help="the service's key for --reload (default: $METAREC_API_KEY)")
    rt.add_argument("--keep", type=_positive_int, default=3, help="with --every: newest model directories kept")
    rt.add_argument("--rounds", type=_positive_int, help="with --every: stop after N rounds (default: until Ctrl-C)")
    rt.set_defaults(func=cmd_retrain)

    ev = sub.add_parser("evaluate", help="evaluate models under a protocol; writes results.json and a report")
    _add_data_args(ev)
    ev.add_argument("--protocol", required=True, help="holdout, temporal, leave-last, cold-user, cold-item, melu")
    ev.add_argument("--models", required=True, help="comma-separated model names")
    ev.add_argument("--seed", type=int, default=42)
    ev.add_argument("--seeds", help="comma-separated seeds; values are means over them")
    ev.add_argument("--cutoffs", default="5,10,20")
    ev.add_argument("--negatives", type=_positive_int, default=4,
                    help="task metrics (models that predict tasks): sampled negatives per held-out pair")  # fmt: skip
    ev.add_argument("--versus", metavar="MODEL",
                    help="one of --models: compare every other model with it user by user (paired differences "
                         "with standard errors, in the report and results.json)")  # fmt: skip
    ev.add_argument("--param", action="append", help="model.name=value, e.g. ease.l2=300 (repeatable)")
    ev.add_argument("--explore-new", type=_share, default=0.0, metavar="SHARE",
                    help="items without training pairs hold at least this share of every first places of each "
                         "list, as the service's explore_new gives them (whole-catalogue protocols)")  # fmt: skip
    ev.add_argument("--out", default="metarec-eval", help="output directory")
    ev.set_defaults(func=cmd_evaluate)

    demo = sub.add_parser("demo", help="synthetic world -> train -> evaluate every protocol -> report")
    demo.add_argument("--out", default="metarec-demo")
    demo.add_argument("--n-users", type=_positive_int, default=1500)
    demo.add_argument("--n-items", type=_positive_int, default=800)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=cmd_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except MetarecError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if args.debug:
            raise
        print(f"error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
