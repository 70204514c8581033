"""Content encoding: throughput cold and from the cache, and one new item made scorable.

Run: ``python benchmarks/bench_encode.py [--data ../shared/datasets/amazon-scientific --format recbole]``
(defaults to the synthetic world). Prints items/s for a cold cache and a warm one, and the
latency of ``TrainedModel.add_items`` for a single item (encode + append + first scoring),
with BLAS's default threads and with one BLAS thread per request (idle OpenBLAS threads spin
and compete with torch's on two cores).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from contextlib import nullcontext

import numpy as np
from threadpoolctl import threadpool_limits

from metarec.data import Queries, load_dataset
from metarec.data.synthetic import WorldConfig, make_world
from metarec.encoders import ContentConfig, EmbeddingCache, encode_cached, make_encoder
from metarec.encoders.content import item_texts
from metarec.models import make_scorer
from metarec.models.io import load_model, save_model


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data")
    ap.add_argument("--format")
    ap.add_argument("--encoder", default="all-MiniLM-L6-v2")
    ap.add_argument("--model", default="hybrid", help="the content model that takes the new items")
    ap.add_argument("--repeats", type=int, default=200)
    args = ap.parse_args()
    data = load_dataset(args.data, args.format) if args.data else make_world(WorldConfig(n_users=500, n_items=2000))
    texts = item_texts(data, None)
    with tempfile.TemporaryDirectory() as tmp:
        cache = EmbeddingCache(tmp)
        enc = make_encoder(ContentConfig(encoder=args.encoder))
        enc.encode(["warm-up"])  # model load is not encoding
        t = time.perf_counter()
        encode_cached(enc, texts, cache)
        cold = time.perf_counter() - t
        t = time.perf_counter()
        encode_cached(enc, texts, cache)
        warm = time.perf_counter() - t
        print(f"{data.name}: {len(texts)} item texts, encoder {args.encoder}")
        print(f"{'pass':<22}{'seconds':>10}{'items/s':>12}")
        print(f"{'cold cache':<22}{cold:>10.2f}{len(texts) / cold:>12,.0f}")
        print(f"{'warm cache':<22}{warm:>10.3f}{len(texts) / warm:>12,.0f}   ({cold / warm:.0f}x faster)")

        scorer = make_scorer(args.model, encoder=args.encoder, cache_dir=tmp).fit(data)
        save_model(scorer, data, f"{tmp}/model")
        model = load_model(f"{tmp}/model")
        model.add_items(["warm-up-item"], ["warm-up"])
        for blas in ("default", "1"):
            lat = []
            for k in range(args.repeats):
                # A request: one new item, then one recommendation that includes it.
                with threadpool_limits(1, "blas") if blas == "1" else nullcontext():
                    t = time.perf_counter()
                    (idx,) = model.add_items([f"new-{blas}-{k}"], [f"a brand-new product number {k}: {texts[k % len(texts)]}"])
                    q = Queries.from_histories([-1], [[0, 1, 2]], len(model.item_ids))
                    s = model.scorer.score(q, np.array([idx]))
                    lat.append(time.perf_counter() - t)
                assert np.isfinite(s).all()
            ms = np.array(lat) * 1000
            print(f"new item -> scorable by {args.model} (encode + add + score), BLAS threads {blas}: "
                  f"p50 {np.percentile(ms, 50):.1f} ms, p99 {np.percentile(ms, 99):.1f} ms over {args.repeats}")


if __name__ == "__main__":
    main()
