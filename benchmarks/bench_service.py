"""Service load: recommend latency (p50/p99) and throughput at 1, 16 and 64 concurrent clients
on a 10k-item catalogue, and the event ingestion rate. Loopback only; every loop is bounded
in requests and seconds.

Run: ``python benchmarks/bench_service.py [--items 10000] [--model DIR]``. Without
``--model`` it trains the model ``metarec train`` would pick for a synthetic world of that
size (the hybrid) and keeps it in ``--workdir`` for the next run. Server and clients share
this machine, so the client's own CPU time is part of what is measured; ``wrk`` (Debian
package) is used as the load generator when installed, else a Python client.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

KEY = {"X-API-Key": "bench"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_model(workdir: Path, n_items: int, n_users: int) -> Path:
    from metarec.cli import default_model
    from metarec.data.synthetic import WorldConfig, make_world
    from metarec.models import make_scorer
    from metarec.models.io import save_model

    path = workdir / f"model-{n_items}"
    if (path / "config.json").exists():
        return path
    data = make_world(WorldConfig(n_users=n_users, n_items=n_items, views_per_user=25, seed=1))
    name = default_model(data)
    t = time.perf_counter()
    scorer = make_scorer(name).fit(data)
    print(f"trained {name} on {data} in {time.perf_counter() - t:.0f}s")
    return save_model(scorer, data, path)


async def load(base: str, concurrency: int, total: int, seconds: float, users: list[str]) -> tuple[np.ndarray, float]:
    latencies: list[float] = []
    rng = np.random.default_rng(concurrency)
    deadline = time.perf_counter() + seconds
    sent = 0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal sent
        while sent < total and time.perf_counter() < deadline:
            sent += 1
            user = users[int(rng.integers(len(users)))]
            t = time.perf_counter()
            r = await client.get(f"/users/{user}/recommendations", params={"n": 10})
            latencies.append(time.perf_counter() - t)
            assert r.status_code == 200, r.text

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
    return np.array(latencies) * 1000, len(latencies) / elapsed


async def ingest(base: str, concurrency: int, seconds: float, items: list[str]) -> float:
    stored = 0
    deadline = time.perf_counter() + seconds
    rng = np.random.default_rng(0)

    async def worker(client: httpx.AsyncClient, w: int) -> None:
        nonlocal stored
        k = 0
        while time.perf_counter() < deadline and k < 10_000:
            batch = [{"user_id": f"load{w}-{k % 50}", "item_id": items[int(rng.integers(len(items)))], "type": "view"}
                     for _ in range(100)]  # fmt: skip
            r = await client.post("/events", json={"events": batch}, headers=KEY)
            assert r.status_code == 200, r.text
            stored += r.json()["accepted"]
            k += 1

    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(client, w) for w in range(concurrency)))
        return stored / (time.perf_counter() - t0)


WRK_SCRIPT = """
users = {%s}
counter = 0
request = function()
   counter = counter + 1
   return wrk.format("GET", "/users/" .. users[(counter %% #users) + 1] .. "/recommendations?n=10")
end
done = function(summary, latency, requests)
   io.write(string.format("RESULT %%d %%f %%f\\n", summary.requests, latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
"""


def run_wrk(wrk: str, base: str, clients: int, seconds: float, users: list[str]) -> tuple[int, float, float, float]:
    """``(requests, p50 ms, p99 ms, req/s)`` from wrk (a C load generator), users cycled."""
    rng = np.random.default_rng(clients)
    order = [users[i] for i in rng.permutation(len(users))]
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(WRK_SCRIPT % ", ".join(f'"{u}"' for u in order))
    out = subprocess.run([wrk, "-t1", f"-c{clients}", f"-d{seconds:.0f}s", "-s", f.name, base],
                         capture_output=True, text=True, timeout=seconds + 60).stdout  # fmt: skip
    os.unlink(f.name)
    line = next(x for x in out.splitlines() if x.startswith("RESULT"))
    _, n, p50, p99 = line.split()
    return int(n), float(p50), float(p99), int(n) / seconds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=10_000)
    ap.add_argument("--users", type=int, default=3_000)
    ap.add_argument("--model", help="a model directory to serve (default: train one)")
    ap.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "metarec-bench"))
    ap.add_argument("--requests", type=int, default=2000, help="per concurrency level (bounded)")
    ap.add_argument("--seconds", type=float, default=10.0, help="per concurrency level (bounded)")
    ap.add_argument("--workers", type=int, default=2, help="server worker processes (one per core)")
    ap.add_argument("--store", help="event store URL, e.g. postgresql://... (default: a fresh SQLite file)")
    args = ap.parse_args()
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    model = Path(args.model) if args.model else build_model(workdir, args.items, args.users)
    store_url = args.store
    if store_url is None:
        store = workdir / "bench-events.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{store}{suffix}").unlink(missing_ok=True)
        store_url = f"sqlite:///{store}"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "metarec.cli", "serve", "--model", str(model), "--store", store_url,
           "--port", str(port), "--api-key", "bench", "--workers", str(args.workers)]  # fmt: skip
    # The server's output goes to a file, shown if the run fails: a pipe nobody reads fills
    # up (64 KiB) and then blocks whichever server process writes to it next.
    server_log = workdir / "server.log"
    with open(server_log, "wb") as out:
        server = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{base}/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            raise RuntimeError("server did not start")
        ready = httpx.get(f"{base}/health/ready").json()
        from metarec.models.io import load_model

        m = load_model(model)
        users = [str(u) for u in m.user_ids[:2000]] + [f"unknown-{i}" for i in range(200)]
        items = [str(i) for i in m.item_ids]
        print(f"model {ready['model']}, {ready['items']} items, {len(m.user_ids)} known users; server and clients on one machine")
        asyncio.run(load(base, 4, 400, 10, users))  # warm-up (each worker builds its caches)
        wrk = shutil.which("wrk")
        print(f"server: {args.workers} worker(s); client: {'wrk (C)' if wrk else 'httpx (Python, same machine: it costs CPU too)'}")
        print(f"{'clients':>8}{'requests':>10}{'p50 ms':>9}{'p99 ms':>9}{'req/s':>9}")
        for c in (1, 16, 64):
            if wrk:
                n, p50, p99, rps = run_wrk(wrk, base, c, args.seconds, users)
            else:
                lat, rps = asyncio.run(load(base, c, args.requests, args.seconds, users))
                n, p50, p99 = len(lat), np.percentile(lat, 50), np.percentile(lat, 99)
            print(f"{c:>8}{n:>10}{p50:>9.1f}{p99:>9.1f}{rps:>9.0f}")
        rate = asyncio.run(ingest(base, 4, 10.0, items))
        kind = "SQLite WAL + full sync" if store_url.startswith("sqlite") else "PostgreSQL"
        print(f"event ingestion (4 clients, batches of 100, {kind}): {rate:,.0f} events/s")
    except BaseException:
        tail = server_log.read_text(errors="replace").splitlines()[-20:]
        print(f"server output ({server_log}), last lines:", *tail, sep="\n", file=sys.stderr)
        raise
    finally:
        os.kill(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()


if __name__ == "__main__":
    main()
