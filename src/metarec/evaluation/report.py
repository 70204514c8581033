"""Human reports: Markdown tables per segment and support size, with plots.

``write_report(results, out_dir)`` writes ``results.json`` (the machine-readable schema),
``report.md`` and PNG plots: one bar chart per protocol (headline metric per model and
segment) and, for ``cold-user``, the headline metric against support size per model.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from metarec.data.splits import PROTOCOLS
from metarec.errors import ConfigError
from metarec.evaluation.harness import Results

log = logging.getLogger(__name__)

TABLE_METRICS = ("NDCG@10", "Recall@10", "Recall@20", "NDCG@20", "HitRate@10", "MRR@10", "MAP@10", "Coverage@10")


def results_frame(results: Results) -> pd.DataFrame:
    """Rows as a DataFrame (support as a nullable int)."""
    df = pd.DataFrame(results.rows)
    if len(df):
        df["support"] = df["support"].astype("Int64")
    return df


def _fmt(value: float, std: float | None) -> str:
    if std is None or pd.isna(std):
        return f"{value:.4f}"
    return f"{value:.4f} ± {std:.4f}"


def segment_title(segment: str, support: int | None) -> str:
    """``cold-user, support 5``, or the segment alone (the one label of every table)."""
    return segment if support is None else f"{segment}, support {support}"


def summary_tables(results: Results, metrics: Sequence[str] = TABLE_METRICS) -> list[tuple[str, pd.DataFrame]]:
    """One (title, table) per (segment, support): models as rows, metrics as columns.

    The ``pointwise`` segment (task metrics: ``AUC[buy]``, ``RMSE[rating]``, ...) shows all its metrics.
    """
    df = results_frame(results)
    if df.empty:
        return []
    out = []
    keys = df[["segment", "support"]].drop_duplicates()
    for seg, sup in keys.itertuples(index=False):
        part = df[(df["segment"] == seg) & ((df["support"] == sup) if pd.notna(sup) else df["support"].isna())]
        wanted = list(pd.unique(part["metric"])) if seg in ("pointwise", "melu") else list(metrics)
        part = part[part["metric"].isin(wanted)]
        if part.empty:
            continue
        cell = part.apply(lambda r: _fmt(r["value"], r["std"]), axis=1)
        table = part.assign(cell=cell).pivot(index="model", columns="metric", values="cell")
        table = table[[m for m in wanted if m in table.columns]]
        users = part.groupby("model")["users"].first()
        table.insert(0, "users", users)
        table = table.reindex(pd.unique(part["model"]))
        title = segment_title(seg, None if pd.isna(sup) else int(sup))
        out.append((title, table))
    return out


def rich_tables(results: Results, metrics: Sequence[str] = ("NDCG@10", "Recall@20", "HitRate@10", "Coverage@10")) -> list:
    """Rich tables of the headline metrics, one per (segment, support), for the terminal."""
    from rich.table import Table

    out = []
    for title, table in summary_tables(results, metrics):
        t = Table(title=f"{results.dataset} · {results.protocol} · {title}")
        t.add_column("model")
        for c in table.columns:
            t.add_column(str(c), justify="right")
        for model, row in table.iterrows():
            t.add_row(str(model), *(str(v) for v in row.to_numpy()))
        out.append(t)
    paired = [r for r in results.paired if r["metric"] == metrics[0]]
    if paired:
        t = Table(title=f"{results.dataset} · {results.protocol} · {metrics[0]} against {paired[0]['versus']}, user by user")
        several = len(results.seeds) > 1
        for c in ("model", "segment", "difference", "± users", *(["± seeds"] if several else []), "users above / below"):
            t.add_column(c, justify="left" if c in ("model", "segment") else "right")
        for r in paired:
            segment = segment_title(r["segment"], r["support"])
            seeds = ["" if r["se_seeds"] is None else f"{r['se_seeds']:.4f}"] if several else []
            t.add_row(r["model"], segment, f"{r['diff']:+.4f}", f"{r['se_users']:.4f}", *seeds, f"{r['better']} / {r['worse']}")
        out.append(t)
    return out


def _markdown(table: pd.DataFrame) -> str:
    cols = ["model", *map(str, table.columns)]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for model, row in table.iterrows():
        lines.append("| " + " | ".join([str(model), *(str(v) for v in row.to_numpy())]) + " |")
    return "\n".join(lines)


def plot_results(results: Results, out_dir: Path, metric: str = "NDCG@10") -> list[Path]:
    """Bar chart per segment and, for cold users, the support-size curve. Returns the files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df = results_frame(results)
    if df.empty:  # no rows (an old file: evaluation now refuses a split with no test user)
        return []
    df = df[df["metric"] == metric]
    if df.empty:
        return []
    files = []
    stem = f"{results.dataset}-{results.protocol}".replace("/", "_")
    curve = df[df["segment"] == "cold-user"].dropna(subset=["support"])
    if curve["support"].nunique() > 1:
        fig, ax = plt.subplots(figsize=(6, 4))
        for model, g in curve.groupby("model", sort=False):
            g = g.sort_values("support")
            ax.errorbar(g["support"].astype(int), g["value"], yerr=g["std"].fillna(0).to_numpy(),
                        marker="o", capsize=3, label=model)  # fmt: skip
        ax.set_xscale("log")
        ticks = sorted(curve["support"].astype(int).unique())
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.set_xlabel("support size (interactions given at query time)")
        ax.set_ylabel(metric)
        ax.set_title(f"{results.dataset}: cold users, {metric} vs support size")
        ax.legend()
        ax.grid(alpha=0.3)
        f = out_dir / f"{stem}-support.png"
        fig.tight_layout()
        fig.savefig(f, dpi=110)
        plt.close(fig)
        files.append(f)
    bars = df.copy()
    bars["group"] = bars.apply(
        lambda r: r["segment"] if pd.isna(r["support"]) else f"{r['segment']} n={int(r['support'])}", axis=1
    )
    pivot = bars.pivot_table(index="group", columns="model", values="value", sort=False)
    pivot = pivot[pd.unique(bars["model"])]
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(pivot) + 3), 4))
    pivot.plot.bar(ax=ax, rot=0)
    ax.set_ylabel(metric)
    ax.set_xlabel("")
    ax.set_title(f"{results.dataset}, {results.protocol}: {metric} by segment")
    ax.grid(axis="y", alpha=0.3)
    f = out_dir / f"{stem}-segments.png"
    fig.tight_layout()
    fig.savefig(f, dpi=110)
    plt.close(fig)
    files.append(f)
    return files


def _ensemble_markdown(model: str, entries: Sequence[dict]) -> list[str]:
    """An ensemble's weights per history-length segment, and the validation metric of each
    member and of the ensemble, per seed."""
    lines = []
    for e in entries:
        if "weights" not in e or "members" not in e:
            continue
        members = e["members"]
        lines += [f"### {model}: weights (seed {e.get('seed')})", "",
                  "| history length | validation users | " + " | ".join(members) + " |",
                  "|" + "---|" * (len(members) + 2)]  # fmt: skip
        for seg, users, w in zip(e["segments"], e["segment_users"], e["weights"]):
            lines.append(f"| {seg} | {users} | " + " | ".join(f"{x:.3f}" for x in w) + " |")
        val = e.get("validation") or {}
        if val:
            lines += ["", f"Validation {e.get('metric', '')} (carved from training): "
                      + ", ".join(f"{k} {v:.4f}" for k, v in val.items())]  # fmt: skip
        lines.append("")
    return lines


PAIRED_METRICS = ("NDCG@10", "Recall@20")


def _paired_markdown(results: Results, metrics: Sequence[str] = PAIRED_METRICS) -> list[str]:
    """Each model against ``versus``, user by user (``Results.paired``)."""
    rows = [r for r in results.paired if r["metric"] in metrics]
    if not rows:
        return []
    versus = rows[0]["versus"]
    several = len(results.seeds) > 1
    lines = [f"### Paired against {versus}", "",
             f"Each model's metric minus {versus}'s, user by user on the same queries, the mean over "
             + ("seeds of each seed's mean; ± the standard error over the users, and over the seeds "
                "(from the spread of the seed means)" if several else "users; ± its standard error over the users")
             + ". Users above / below: how many queries the model ranks better / worse"
             + ("; per seed: each seed's difference, in the order of the seeds" if several else "") + ".", "",
             "| model | segment | metric | difference | ± users |" + (" ± seeds | seeds above | per seed |" if several else "")
             + " users above / below |",
             "|---|---|---|---|---|" + ("---|---|---|" if several else "") + "---|"]  # fmt: skip
    for r in sorted(rows, key=lambda r: (r["segment"], r["support"] or 0, r["metric"], r["model"])):
        segment = segment_title(r["segment"], r["support"])
        cells = [r["model"], segment, r["metric"], f"{r['diff']:+.4f}", f"{r['se_users']:.4f}"]
        if several:
            per_seed = " / ".join(f"{r['per_seed'][s]:+.4f}" for s in results.seeds if s in r["per_seed"])
            cells += ["" if r["se_seeds"] is None else f"{r['se_seeds']:.4f}", f"{r['seeds_above']} of {r['seeds']}", per_seed]
        cells.append(f"{r['better']} / {r['worse']}")
        lines.append("| " + " | ".join(cells) + " |")
    return [*lines, ""]


def report_markdown(results: Results, plots: Sequence[Path] = ()) -> str:
    """The Markdown section of one evaluation run."""
    lines = [
        f"## {results.dataset} — protocol `{results.protocol}`",
        "",
        f"Seeds: {', '.join(map(str, results.seeds))}. Values are means over users "
        "(± standard deviation over seeds when there are several). Full-catalogue ranking, "
        "seen items removed, no sampled negatives.",
        "",
    ]
    for title, table in summary_tables(results):
        lines += [f"### {title}", "", _markdown(table), ""]
    lines += _paired_markdown(results)
    for model, entries in results.details.items():
        lines += _ensemble_markdown(model, entries)
    if results.timings:
        lines += ["### Time per seed (s)", "", "| model | fit | evaluate |", "|---|---|---|"]
        for model, t in results.timings.items():
            lines.append(f"| {model} | {t.get('fit_s', 0):.2f} | {t.get('evaluate_s', 0):.2f} |")
        lines.append("")
    for p in plots:
        lines += [f"![{p.stem}]({p.name})", ""]
    return "\n".join(lines)


def _ours(path: Path) -> bool:
    """Whether ``path`` is a file :func:`write_report` wrote: a report whose title names
    metarec (the CLI's and the demo's), or a results file with its keys."""
    try:
        if path.suffix == ".md":
            with open(path, encoding="utf-8", errors="replace") as f:
                return f.readline().startswith("# metarec")
        d = json.loads(path.read_text(encoding="utf-8"))
        return isinstance(d, dict) and {"dataset", "protocol", "rows"} <= set(d)
    except (OSError, ValueError):
        return False


def check_report_out(out_dir: str | Path) -> None:
    """ConfigError, before any work, where the report cannot go: ``out_dir`` is a file, or a
    directory that cannot be made or written. Before, an evaluation ran for minutes and then
    failed to write its results ("File exists"), and they were lost."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: a file is there, and the results go into a directory; give another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=out, prefix=".metarec-", delete=True)
        probe.close()
    except OSError as exc:
        raise ConfigError(f"{out}: cannot write the results there ({exc.strerror})") from None
    earlier = sorted(p.name for p in out.glob("results*.json")) + (["report.md"] if (out / "report.md").exists() else [])
    written = {"results.json", "report.md", *(f"results-{p}.json" for p in PROTOCOLS)}  # what a run may write
    results_ours = any(_ours(out / name) for name in earlier if name.endswith(".json"))
    for name in sorted(written & set(earlier)):  # an earlier run's are replaced; a file of the name that is not, not
        if not (_ours(out / name) or (name == "report.md" and results_ours)):
            raise ConfigError(f"{out / name}: not a metarec report's file, so it will not be overwritten; "
                              "give another --out")  # fmt: skip
    if earlier:  # said before the work, not found out after it
        log.warning("%s holds a report already (%s): this run replaces it; give another --out to keep both",
                    out, ", ".join(earlier))  # fmt: skip


def write_report(results: Sequence[Results] | Results, out_dir: str | Path, title: str = "metarec evaluation") -> Path:
    """Write ``results.json`` (one run) or ``results-<protocol>.json`` (several), plots and
    ``report.md`` into ``out_dir``; returns the report path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    runs = [results] if isinstance(results, Results) else list(results)
    sections = [f"# {title}", ""]
    for r in runs:
        name = "results.json" if len(runs) == 1 else f"results-{r.protocol}.json"
        r.write(out / name)
        sections.append(report_markdown(r, plot_results(r, out)))
    path = out / "report.md"
    path.write_text("\n".join(sections))
    return path
