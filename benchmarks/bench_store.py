"""Event ingestion into the store: ``add_events`` (one INSERT per batch of events) against one
INSERT per event (what it did before), both in one transaction per call, as the service's
``POST /events`` writes them.

Run: ``python benchmarks/bench_store.py [--events 20000] [--calls 1,10,100,1000]``. SQLite
always (a temporary file, WAL, ``synchronous=FULL``); PostgreSQL when ``$METAREC_PG_URL`` names
a server (its tables are dropped first: use a scratch database). ``--calls`` are the events
per call (per HTTP request). The table gives events per second for both and the ratio.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from metarec.serving.store import INSERT_EVENTS, ONE_ROW, Event, open_store


def one_per_event(store, events: list[Event]) -> None:
    """The baseline: one statement, and for PostgreSQL one round trip, per event."""
    sql = store._sql(INSERT_EVENTS.format(values=ONE_ROW))
    now = time.time()
    with store._lock:
        cur = store._conn.cursor()
        for e in events:
            cur.execute(sql, (e.event_id, e.user_id, e.item_id, e.type, float(e.value), float(e.timestamp), now))
        store._conn.commit()


def fresh(url: str):
    if url.startswith("postgresql"):
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DROP TABLE IF EXISTS events, items, users")
    return open_store(url)


def rate(url: str, n: int, per_call: int, batched: bool, tag: str) -> float:
    store = fresh(url)
    events = [Event(f"{tag}{i}", f"u{i % 997}", f"i{i % 5000}", "view", 1.0, float(i)) for i in range(n)]
    t = time.perf_counter()
    for s in range(0, n, per_call):
        chunk = events[s : s + per_call]
        store.add_events(chunk) if batched else one_per_event(store, chunk)
    seconds = time.perf_counter() - t
    assert sum(1 for _ in store.all_events()) == n
    store.close()
    return n / seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--calls", default="1,10,100,1000", help="events per call")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    backends = [("sqlite", f"sqlite:///{tmp / 'events.db'}")]
    if os.environ.get("METAREC_PG_URL"):
        backends.append(("postgresql", os.environ["METAREC_PG_URL"]))
    table = Table(title=f"event ingestion, {args.events:,} events")
    for col in ("store", "events per call", "batched (events/s)", "one per event (events/s)", "ratio"):
        table.add_column(col, justify="right")
    for name, url in backends:
        for per_call in (int(c) for c in args.calls.split(",")):
            n = min(args.events, per_call * 2000)  # one event per call: bounded by commits, not rows
            if name == "sqlite":
                (tmp / "events.db").unlink(missing_ok=True)
            new = rate(url, n, per_call, True, "b")
            if name == "sqlite":
                (tmp / "events.db").unlink(missing_ok=True)
            old = rate(url, n, per_call, False, "o")
            table.add_row(name, f"{per_call:,}", f"{new:,.0f}", f"{old:,.0f}", f"{new / old:.2f}×")
    Console().print(table)


if __name__ == "__main__":
    main()
