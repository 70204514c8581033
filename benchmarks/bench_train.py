"""Training throughput and peak memory of the neural models, each in a fresh process.

Run: ``python benchmarks/bench_train.py --data ../shared/datasets/ml-100k --format movielens-100k``
(defaults to the synthetic world). For each configuration it trains on the whole data set for
a fixed number of epochs (no early stopping) and prints training examples per second
(pairs plus sampled negatives, per epoch, summed over the networks trained) and the process's
peak resident memory, which includes Python, torch and the data set (the first row, which
only loads the data, is the floor to compare against).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

CONFIGS = {
    "load data only": None,
    "multitask ple (default)": ("multitask", {}),
    "multitask mmoe": ("multitask", {"architecture": "mmoe"}),
    "multitask shared-bottom": ("multitask", {"architecture": "shared-bottom"}),
    "singletask (one net per task)": ("singletask", {}),
    "meta (pretrain + 2 meta epochs)": ("meta", {"meta_epochs": 2}),
}


def _child(data: str | None, fmt: str | None, model: str | None, params: dict, epochs: int) -> None:
    import torch

    from metarec.data import load_dataset
    from metarec.data.synthetic import WorldConfig, make_world
    from metarec.models import make_scorer

    torch.zeros(1)  # torch is loaded in every row, so the first row is the floor
    d = load_dataset(data, fmt) if data else make_world(WorldConfig(n_users=1000, n_items=2000))
    out = {"examples_per_s": float("nan"), "train_s": 0.0}
    if model:
        m = make_scorer(model, epochs=epochs, validation=0.0, **params)
        t = time.perf_counter()
        m.fit(d)
        total = time.perf_counter() - t
        epoch_s = sum(h["seconds"] for r in m.training_ for h in r.history if h.get("epoch", -1) >= 0)
        # examples: the networks' training pairs + negatives (meta-training time is in "fit s")
        pairs = len(d.pairs())
        examples = pairs * (1 + m.config.negatives) * epochs * len(m.nets_)
        out = {"examples_per_s": examples / epoch_s, "train_s": total, "nets": len(m.nets_)}
    out["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data")
    ap.add_argument("--format")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        model, params = json.loads(args.child)
        _child(args.data, args.format, model, params, args.epochs)
        return
    print(f"{'configuration':<32}{'examples/s':>12}{'fit s':>8}{'peak MiB':>10}")
    for label, spec in CONFIGS.items():
        model, params = spec if spec else (None, {})
        cmd = [sys.executable, __file__, "--epochs", str(args.epochs), "--child", json.dumps([model, params])]
        if args.data:
            cmd += ["--data", args.data, "--format", args.format]
        r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
        print(f"{label:<32}{r['examples_per_s']:>12,.0f}{r['train_s']:>8.1f}{r['peak_mib']:>10,.0f}")


if __name__ == "__main__":
    main()
