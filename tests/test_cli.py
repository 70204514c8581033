"""The CLI as a user runs it: in-process through main(), and once as a real subprocess."""

import json
import subprocess
import sys

import pytest

from metarec.cli import main
from metarec.data.synthetic import WorldConfig, write_world


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory):
    return write_world(tmp_path_factory.mktemp("w"), WorldConfig(n_users=200, n_items=100, seed=1))


def run(argv, capsys):
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_inspect_reports_counts_events_and_drops(world_dir, capsys):
    code, out, _ = run(["data", "inspect", "--data", str(world_dir), "--format", "synthetic", "--json"], capsys)
    assert code == 0
    info = json.loads(out)
    assert set(info["events"]) == {"view", "cart", "purchase", "rating"}
    assert info["text fields"] == ["title", "description"]
    dropped = info["cleaning"][0]["dropped"]
    assert dropped["duplicate"]["count"] > 0 and dropped["bad timestamp"]["count"] > 0


def test_train_then_recommend(world_dir, tmp_path, capsys):
    model = tmp_path / "m"
    code, out, _ = run(["train", "--data", str(world_dir), "--format", "synthetic", "--model", "ials",
                        "--param", "factors=16", "--out", str(model)], capsys)  # fmt: skip
    assert code == 0 and (model / "weights.safetensors").exists() and (model / "config.json").exists()
    code, out, _ = run(["recommend", "--model", str(model), "--user", "u00003", "-n", "4", "--json"], capsys)
    recs = json.loads(out)["items"]
    assert code == 0 and len(recs) == 4
    # A new user with a history given on the command line.
    code, out, _ = run(["recommend", "--model", str(model), "--history", "i00001,i00002", "--json"], capsys)
    items = [r["id"] for r in json.loads(out)["items"]]
    assert code == 0 and len(items) == 10 and not {"i00001", "i00002"} & set(items)
    code, out, _ = run(["recommend", "--model", str(model), "--history", "i00001", "-n", "3"], capsys)
    assert code == 0 and "top 3 for a new user with history i00001" in out  # not "for user None"
    code, out, _ = run(["recommend", "--model", str(model), "--history", "", "-n", "3"], capsys)
    assert code == 0 and "top 3 for a new user with no history" in out  # before: "with history " and nothing
    code, out, _ = run(["recommend", "--model", str(model), "--user", "nobody", "-n", "3"], capsys)
    assert code == 0 and "top 3 for user nobody (not in training: a new user)" in out  # before: as if known
    code, out, _ = run(["recommend", "--model", str(model), "--user", "u00003", "-n", "3"], capsys)
    assert code == 0 and "top 3 for user u00003" in out and "not in training" not in out


def test_workers_for_a_model_that_does_not_train_with_torch_is_refused_before_the_data_is_read(tmp_path, capsys):
    code, out, err = run(["train", "--data", str(tmp_path / "absent.csv"), "--format", "csv", "--model", "ease",
                          "--workers", "2", "--out", str(tmp_path / "m")], capsys)  # fmt: skip
    assert code == 2 and "model 'ease' does not train with torch" in err and "Ray" not in out


def test_evaluate_writes_results_schema(world_dir, tmp_path, capsys):
    out_dir = tmp_path / "ev"
    code, _, _ = run(["evaluate", "--data", str(world_dir), "--format", "synthetic", "--protocol", "cold-user",
                      "--models", "pop,ease", "--seeds", "1,2", "--param", "ease.l2=123", "--out", str(out_dir)],
                     capsys)  # fmt: skip
    assert code == 0
    res = json.loads((out_dir / "results.json").read_text())
    # Each model's whole config as evaluated: the parameter given, and the defaults it did not set.
    from metarec.models.baselines.ease import EASEConfig

    assert res["configs"]["ease"]["l2"] == 123.0 and res["configs"]["ease"]["values"] == EASEConfig.values
    assert set(res["configs"]) == {"pop", "ease"}
    assert res["protocol"] == "cold-user" and res["dataset"] == "synthetic"
    row = res["rows"][0]
    assert set(row) >= {"model", "segment", "support", "metric", "value", "std", "users"}
    supports = {r["support"] for r in res["rows"] if r["metric"] == "NDCG@10"}
    assert supports <= {1, 3, 5, 10, 20} and 1 in supports
    assert all(r["std"] is not None for r in res["rows"])  # two seeds: a spread
    report = (out_dir / "report.md").read_text()
    assert "cold-user, support 1" in report and (out_dir / "synthetic-cold-user-support.png").exists()


def test_evaluate_versus_reports_paired_differences(world_dir, tmp_path, capsys):
    out_dir = tmp_path / "ev"
    code, out, _ = run(["evaluate", "--data", str(world_dir), "--format", "synthetic", "--protocol", "holdout",
                        "--models", "pop,ease", "--seed", "3", "--versus", "pop", "--out", str(out_dir)], capsys)  # fmt: skip
    assert code == 0
    res = json.loads((out_dir / "results.json").read_text())
    (p,) = [r for r in res["paired"] if r["metric"] == "NDCG@10" and r["segment"] == "warm"]
    ndcg = {r["model"]: r["value"] for r in res["rows"] if r["metric"] == "NDCG@10" and r["segment"] == "warm"}
    assert p["model"] == "ease" and p["versus"] == "pop" and p["se_seeds"] is None  # one seed
    assert abs(p["diff"] - (ndcg["ease"] - ndcg["pop"])) < 1e-9
    report = (out_dir / "report.md").read_text()
    assert "### Paired against pop" in report and f"| ease | warm | NDCG@10 | {p['diff']:+.4f} | {p['se_users']:.4f} |" in report
    assert "NDCG@10 against pop, user by user" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["data", "inspect", "--data", "{d}", "--format", "excel"], "error: unknown format 'excel'"),
        (["data", "inspect", "--data", "{d}/nope", "--format", "csv"], "no such file or directory"),
        (["evaluate", "--data", "{d}", "--format", "synthetic", "--protocol", "random", "--models", "pop"],
         "error: unknown protocol 'random'"),
        (["evaluate", "--data", "{d}", "--format", "synthetic", "--protocol", "holdout", "--models", "magic"],
         "error: unknown model 'magic'"),
        (["recommend", "--model", "{d}"], "not a metarec model directory"),
        # A repeat was averaged in as another seed; a cutoff of 0 was a traceback.
        (["evaluate", "--data", "{d}", "--format", "synthetic", "--protocol", "holdout", "--models", "pop,pop"],
         "error: models: pop given more than once"),
        (["evaluate", "--data", "{d}", "--format", "synthetic", "--protocol", "holdout", "--models", "pop", "--seeds", "1,1"],
         "error: seeds: 1 given more than once"),
        (["evaluate", "--data", "{d}", "--format", "synthetic", "--protocol", "holdout", "--models", "pop", "--cutoffs", "0"],
         "error: cutoffs: each must be at least 1, got [0]"),
        (["evaluate", "--data", "{d}", "--format", "synthetic", "--protocol", "holdout", "--models", "pop,ease", "--versus",
          "ials"], "error: versus: 'ials' is not one of the models evaluated (pop, ease)"),
        (["train", "--data", "{d}", "--format", "synthetic", "--model", "ials", "--param", "factors=-3", "--out", "{d}/m"],
         "error: ials: factors must be a finite number, at least 0, not -3"),
        (["train", "--data", "{d}", "--format", "synthetic", "--model", "ease", "--param", "l2=lots", "--out", "{d}/m"],
         "error: ease: l2 must be a number, not 'lots'"),
        (["train", "--data", "{d}", "--format", "synthetic", "--model", "ease", "--param", "lambda=3", "--out", "{d}/m"],
         "error: ease: unknown parameter(s) 'lambda'; parameters are encoder, template, vectors, cache_dir, device, "
         "allow_download, l2, values, tags, tag_weight, content, max_items"),
        # Settings are checked before the data is read (the path below does not exist): they were
        # found out after it, a minute into a large log, and a model without settings was said to
        # have these: "parameters are " and nothing.
        (["evaluate", "--data", "{d}/nope", "--format", "csv", "--protocol", "holdout", "--models", "pop", "--param",
          "pop.k=3"], "error: pop: unknown parameter(s) 'k'; it takes none"),
        (["evaluate", "--data", "{d}/nope", "--format", "csv", "--protocol", "holdout", "--models", "ensemble",
          "--param", "ensemble.members=ease,magic"], "error: ensemble member 'magic': choose from"),
        (["evaluate", "--data", "{d}/nope", "--format", "csv", "--protocol", "holdout", "--models", "ease,ensemble",
          "--param", "ensemble.ease.lambda=3"], "error: ease: unknown parameter(s) 'lambda'"),
        (["train", "--data", "{d}/nope", "--format", "csv", "--model", "ials", "--param", "factors=-3", "--out", "{d}/m"],
         "error: ials: factors must be a finite number, at least 0, not -3"),
        (["train", "--data", "{d}/nope", "--format", "csv", "--model", "magic", "--out", "{d}/m"],
         "error: unknown model 'magic'"),
    ],
)
def test_errors_are_one_line(argv, message, world_dir, capsys):
    code, out, err = run([a.replace("{d}", str(world_dir)) for a in argv], capsys)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize("argv, message", [
    (["serve", "--model", "m", "--port", "99999"], "argument --port: 99999 is not a port (0 to 65535)"),  # a traceback
    (["serve", "--model", "m", "--explore-new", "2"], "argument --explore-new: 2.0 is not a share from 0 to 1"),
    (["evaluate", "--data", "d", "--format", "csv", "--protocol", "holdout", "--models", "pop", "--explore-new", "x"],
     "argument --explore-new: 'x' is not a number"),
])
def test_values_out_of_range_are_refused_by_the_parser(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and message in err and "Traceback" not in err


def test_a_split_with_nothing_held_out_is_an_error_not_an_empty_report(tmp_path, capsys):
    log = tmp_path / "log.csv"
    log.write_text("user,item\n1,a\n1,b\n2,a\n2,c\n3,b\n3,c\n")  # two pairs a user: 75% keeps both
    out = tmp_path / "ev"
    code, _, err = run(["evaluate", "--data", str(log), "--format", "csv", "--protocol", "holdout",
                        "--models", "pop", "--out", str(out)], capsys)  # fmt: skip
    assert code == 2 and "protocol 'holdout' (seed 42) leaves no user a held-out item to find" in err
    assert "Traceback" not in err and not (out / "results.json").exists()


def test_a_log_with_another_separator_or_no_header_gets_a_hint_and_sep_reads_it(tmp_path, capsys):
    semi = tmp_path / "semi.csv"
    semi.write_text("user;item\nu1;i1\nu2;i2\n")
    code, _, err = run(["data", "inspect", "--data", str(semi), "--format", "csv"], capsys)
    assert code == 2 and "missing column 'user' (columns are: user;item); it looks ';'-separated (--sep ';')" in err
    code, out, _ = run(["data", "inspect", "--data", str(semi), "--format", "csv", "--sep", ";", "--json"], capsys)
    assert code == 0 and json.loads(out)["interactions"] == 2
    bare = tmp_path / "u.data"
    bare.write_text("196\t242\t3\t881250949\n186\t302\t3\t891717742\n")  # ML-100K's layout: tabs, no header
    code, _, err = run(["data", "inspect", "--data", str(bare), "--format", "csv"], capsys)
    assert code == 2 and "it looks tab-separated (--sep tab); its first row looks like data, not a header" in err


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_on_a_port_in_use_is_one_line_before_the_model_loads(workers, world_dir, tmp_path, capsys):
    import socket

    assert run(["train", "--data", str(world_dir), "--format", "synthetic", "--model", "pop", "--out", str(tmp_path / "m")], capsys)[0] == 0
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _, err = run(["serve", "--model", str(tmp_path / "m"), "--store", f"sqlite:///{tmp_path / 'e.db'}",
                            "--port", str(port), "--api-key", "k", "--workers", workers], capsys)  # fmt: skip
    assert code == 2 and err.strip() == f"error: cannot listen on 127.0.0.1:{port}: Address already in use"


@pytest.mark.parametrize("name", ["a b", "", "x" * 65, "shop/1"])
def test_a_service_name_is_letters_digits_dots_dashes(name, world_dir, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["serve", "--model", str(world_dir), "--service", name])
    assert exc.value.code == 2 and "argument --service" in capsys.readouterr().err


@pytest.mark.parametrize("value, message", [("0", "0 is below 1"), ("-5", "-5 is below 1"), ("x", "'x' is not a whole number")])
def test_a_count_below_one_is_refused_by_the_parser(value, message, world_dir, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["recommend", "--model", str(world_dir), "-n", value])
    assert exc.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "the file is empty"),
        ("user,rating\na,4\n", "missing column 'item'"),
        ("user,item,rating\na,x,4\nb,y,great\n", "row 3, column value ('rating'): 'great' is not a number"),
    ],
)
def test_bad_files_are_one_line_errors(content, message, tmp_path, capsys):
    f = tmp_path / "log.csv"
    f.write_text(content)
    code, _, err = run(["data", "inspect", "--data", str(f), "--format", "csv", "--columns", "value=rating"], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_value_range_drops_rows_outside_it_and_the_trained_model_keeps_it(world_dir, tmp_path, capsys):
    f = tmp_path / "log.csv"
    f.write_text("user,item,rating\na,x,4\nb,y,9\nb,x,1\na,y,5\n")
    base = ["--data", str(f), "--format", "csv", "--columns", "value=rating"]
    code, out, _ = run(["data", "inspect", *base, "--value-range", "1,5", "--json"], capsys)
    info = json.loads(out)
    assert code == 0 and info["interactions"] == 3 and info["value range"] == [1.0, 5.0]
    assert info["cleaning"][0]["dropped"] == {"value out of range": {"count": 1, "example_rows": [3]}}
    code, _, _ = run(["train", *base, "--value-range", "1,5", "--model", "pop", "--out", str(tmp_path / "m")], capsys)
    assert code == 0 and json.loads((tmp_path / "m" / "config.json").read_text())["value_range"] == [1.0, 5.0]
    code, _, err = run(["data", "inspect", "--data", str(world_dir), "--format", "synthetic", "--value-range", "1,5"], capsys)
    assert code == 2 and "--value-range/--time-unit apply to --format csv or parquet, not 'synthetic'" in err
    for bad in ("5,1", "1", "a,b", "1,inf"):
        with pytest.raises(SystemExit) as exc:
            main(["data", "inspect", *base, "--value-range", bad])
        assert exc.value.code == 2 and f"argument --value-range: '{bad}'" in capsys.readouterr().err


def test_console_script_runs(tmp_path):
    """The installed entry point, as a subprocess (what the README tells users to run)."""
    exe = [sys.executable, "-m", "metarec.cli"]
    r = subprocess.run([*exe, "data", "inspect", "--data", str(tmp_path), "--format", "taobao"],
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 2 and r.stderr.startswith("error:") and "UserBehavior.csv" in r.stderr


def test_model_params_bare_and_per_model():
    """``l2=300`` reaches every model run, ``ease.l2=300`` one, ``ensemble.ials.factors`` a member."""
    from metarec.cli import _model_params
    from metarec.errors import ConfigError

    assert _model_params(["epochs=3"], ["multitask", "singletask"]) == {"multitask": {"epochs": 3}, "singletask": {"epochs": 3}}
    got = _model_params(["ease.l2=300", "ensemble.ials.factors=8"], ["ease", "ensemble"])
    assert got == {"ease": {"l2": 300}, "ensemble": {"ials.factors": 8}}
    with pytest.raises(ConfigError, match="'ials' is not being run"):
        _model_params(["ials.factors=8"], ["ease"])


def test_an_output_that_cannot_take_the_results_is_refused_before_any_work(tmp_path, capsys):
    """Before, `evaluate --out FILE` (and `demo`) evaluated for minutes, then failed with
    "File exists" and the results were lost. The data here does not exist: the check comes
    first."""
    (tmp_path / "taken").write_text("mine")
    ev = ["evaluate", "--data", str(tmp_path / "nowhere"), "--format", "synthetic", "--protocol", "holdout", "--models", "pop"]
    code, _, err = run([*ev, "--out", str(tmp_path / "taken")], capsys)
    assert code == 2 and "taken: a file is there, and the results go into a directory" in err
    code, _, err = run([*ev, "--out", str(tmp_path / "taken" / "sub")], capsys)
    assert code == 2 and "cannot write the results there" in err
    code, _, err = run(["demo", "--out", str(tmp_path / "taken")], capsys)
    assert code == 2 and "a file is there" in err
    (tmp_path / "d" / "model").mkdir(parents=True)
    (tmp_path / "d" / "model" / "notes.txt").write_text("mine")
    code, _, err = run(["demo", "--out", str(tmp_path / "d")], capsys)
    assert code == 2 and "not a metarec model directory (it holds notes.txt)" in err
    assert not (tmp_path / "d" / "world").exists()  # nothing written
    assert (tmp_path / "taken").read_text() == "mine"


def test_an_output_that_holds_a_report_is_said_to_be_replaced_before_the_work(tmp_path, caplog):
    import logging

    from metarec.evaluation.report import check_report_out

    out = tmp_path / "eval"
    with caplog.at_level(logging.WARNING, logger="metarec.evaluation.report"):
        check_report_out(out)  # new: nothing to say
        assert not caplog.messages
        (out / "results.json").write_text('{"dataset": "d", "protocol": "holdout", "rows": []}')  # an earlier run's
        (out / "report.md").write_text("# metarec evaluate: d")
        check_report_out(out)
    assert caplog.messages == [f"{out} holds a report already (results.json, report.md): this run replaces it; "
                               "give another --out to keep both"]  # fmt: skip


@pytest.mark.parametrize("name, text", [("report.md", "# My notes"), ("results.json", '{"mine": 1}'),
                                        ("results-holdout.json", "not json")])
def test_a_file_of_a_reports_name_that_is_not_one_is_never_written_over(tmp_path, name, text, capsys):
    """A user's own report.md (or results.json) in --out was replaced, with a warning that a
    report was there; a results file of another name is left alone and does not stop a run."""
    out = tmp_path / "eval"
    out.mkdir()
    (out / name).write_text(text)
    (out / "results_final.json").write_text("theirs")
    code, _, err = run(["evaluate", "--data", str(tmp_path / "nope"), "--format", "csv", "--protocol", "holdout",
                        "--models", "pop", "--out", str(out)], capsys)  # fmt: skip
    assert code == 2 and f"{out / name}: not a metarec report's file, so it will not be overwritten" in err
    assert (out / name).read_text() == text and (out / "results_final.json").read_text() == "theirs"


def test_a_log_in_milliseconds_is_refused_with_a_hint_and_time_unit_reads_it(tmp_path, capsys):
    import pandas as pd

    from metarec.cli import TIME_UNIT_CHOICES
    from metarec.data.cleaning import TIME_UNITS

    assert TIME_UNIT_CHOICES == tuple(TIME_UNITS)
    f = tmp_path / "clicks.csv"
    f.write_text("user,item,ts\na,x,1733390000123\nb,y,1733390060000\na,y,1733390120000\n")
    base = ["--data", str(f), "--format", "csv", "--columns", "timestamp=ts"]
    code, _, err = run(["data", "inspect", *base], capsys)
    assert code == 2 and "row 2, column timestamp ('ts'): 1733390000123 is after the year 9999" in err
    assert "--time-unit ms" in err
    code, out, _ = run(["data", "inspect", *base, "--time-unit", "ms", "--json"], capsys)
    assert code == 0 and json.loads(out)["interactions"] == 3
    code, _, _ = run(["train", *base, "--time-unit", "ms", "--model", "pop", "--out", str(tmp_path / "m")], capsys)
    assert code == 0
    code, _, _ = run(["data", "clean", "--data", str(f), "--columns", "user=user,item=item,timestamp=ts",
                      "--time-unit", "ms", "--out", str(tmp_path / "c.parquet")], capsys)  # fmt: skip
    assert code == 0 and pd.read_parquet(tmp_path / "c.parquet")["timestamp"].max() == 1733390120.0
