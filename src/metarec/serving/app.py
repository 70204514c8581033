"""The HTTP service: an app factory, no module-level state.

``create_app(model_dir, store_url, api_key)`` returns a FastAPI app whose state (model,
store, online histories, metrics) lives on ``app.state``. Writes and admin calls need the
``X-API-Key`` header; bodies over ``max_body_bytes`` get 413; validation errors 422; any
other failure a generic 500 without a trace. The OpenAPI schema is at ``/openapi.json`` and
``/docs``.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import math
import os
import secrets
import threading
import time
import uuid
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from metarec import __version__
from metarec.data.cleaning import MAX_TIMESTAMP, timestamp_too_late
from metarec.errors import MetarecError
from metarec.models.io import load_model
from metarec.serving.online import OnlineRecommender
from metarec.serving.store import Event, EventStore, open_store

log = logging.getLogger(__name__)

ID = Annotated[str, Field(min_length=1, max_length=256)]


# ----------------------------------------------------------------------------- schemas
class Body(BaseModel):
    """A request body: a field it does not have is a 422 naming it. Ignored, ``{"event":
    "buy"}`` (for ``type``) was stored as a ``view``, and a misspelt ``value`` as 1."""

    model_config = ConfigDict(extra="forbid")


class ItemIn(Body):
    text: str = Field(min_length=1, max_length=20_000, description="Title, description... encoded at once")
    attributes: dict[str, Any] = Field(default_factory=dict, description="e.g. category, brand, price")


class UserIn(Body):
    attributes: dict[str, Any] = Field(default_factory=dict)


class EventIn(Body):
    event_id: ID | None = Field(None, description="Idempotency key; a repeat is acknowledged, not stored twice")
    user_id: ID
    item_id: ID
    type: Annotated[str, Field(min_length=1, max_length=64)] = "view"
    value: float = Field(1.0, allow_inf_nan=False)
    timestamp: float | None = Field(None, ge=0, allow_inf_nan=False, description="Unix seconds; default: now")

    @field_validator("timestamp")
    @classmethod
    def _seconds(cls, v: float | None) -> float | None:
        if v is not None and v > MAX_TIMESTAMP:  # milliseconds, most often: refused as the readers refuse them
            raise ValueError(timestamp_too_late(v))
        return v


class EventsIn(Body):
    events: list[EventIn] = Field(min_length=1, max_length=10_000)


class SessionEventIn(Body):
    item_id: ID
    type: Annotated[str, Field(min_length=1, max_length=64)] = "view"


class SessionIn(Body):
    events: list[SessionEventIn] = Field(min_length=0, max_length=1_000)
    n: int = Field(10, ge=1, le=1000)
    category: str | None = None
    exclude: list[ID] = Field(default_factory=list, max_length=10_000)
    explore_new: float | None = Field(None, ge=0, le=1)


class ReloadIn(Body):
    model_dir: str = Field(min_length=1, max_length=4096)


class Scored(BaseModel):
    id: str
    score: float


class ItemsOut(BaseModel):
    items: list[Scored]


class EventsAck(BaseModel):
    accepted: int
    duplicates: int


# --------------------------------------------------------------------------- middleware
class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413, declared or streamed."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await _too_large(send, self.limit)
            return
        seen = 0

        async def limited_receive() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _BodyTooLarge()
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _BodyTooLarge:
            await _too_large(send, self.limit)


class _BodyTooLarge(Exception):
    pass


async def _too_large(send: Any, limit: int) -> None:
    body = json.dumps({"detail": f"request body over {limit} bytes"}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})


class Measure:
    """Count requests and time them per route (a plain ASGI middleware: cheap)."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t = time.perf_counter()
        status = 500

        async def send_status(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            # The route as the OpenAPI schema names it (``{user_id}``, not ``{user_id:path}``).
            name = getattr(scope.get("route"), "path_format", "unmatched")
            self.metrics.requests.labels(name, str(status)).inc()
            self.metrics.latency.labels(name).observe(time.perf_counter() - t)


# ----------------------------------------------------------------------------- metrics
class Metrics:
    """Prometheus metrics in a registry of this app's own."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("metarec_requests", "HTTP requests", ["route", "status"], registry=self.registry)
        self.latency = Histogram(
            "metarec_request_seconds", "Request latency", ["route"], registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
        )  # fmt: skip
        self.events = Counter("metarec_events", "Events stored", registry=self.registry)
        self.items = Gauge("metarec_items", "Items in the catalogue", registry=self.registry)


def _model_info(model_dir: Path) -> dict[str, Any]:
    cfg = (model_dir / "config.json").read_bytes()
    config = json.loads(cfg)
    return {"model": config["model"], "model_dir": str(model_dir), "config_hash": hashlib.sha256(cfg).hexdigest()[:16],
            "created": config.get("created"), "dataset": config.get("dataset")}  # fmt: skip


def _json_safe(value: Any) -> Any:
    """``value`` with every non-finite float written as text (``"inf"``), which JSON can carry."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def _items(recs: list[tuple[str, float]]) -> Response:
    """``{"items": [{"id", "score"}]}`` serialised directly: the hot path skips re-validating
    what it built itself (the schema is still ``ItemsOut`` in OpenAPI)."""
    body = json.dumps({"items": [{"id": i, "score": s} for i, s in recs]})
    return Response(body, media_type="application/json")


def _serving(model_dir: str | Path, store: EventStore) -> OnlineRecommender:
    """The model in ``model_dir``, the store replayed into it, once it has ranked one
    cold-start list: a directory that loads but cannot score (weights of another shape) is
    refused at start or reload, the served model kept, where it used to be swapped in and
    fail every request."""
    model_dir = Path(model_dir)
    online = OnlineRecommender(load_model(model_dir), store)
    try:
        online.recommend(None, n=1)
    except Exception as exc:
        raise MetarecError(f"{model_dir}: the model loads but cannot score ({type(exc).__name__}: {exc})") from None
    return online


def _require_items(state: OnlineRecommender, item_ids: list[str]) -> None:
    """A 422 naming the ids (up to ten) that are not live items of the service."""
    unknown = state.unknown_items(item_ids)
    if unknown:
        raise HTTPException(422, f"unknown item id(s): {', '.join(sorted(set(unknown))[:10])}")


def _require_values(state: OnlineRecommender, events: list[EventIn]) -> None:
    """A 422 naming the events (up to five) whose value lies outside the range the model's
    training data declared (a rating of 9 on MovieLens's 1 to 5): stored, it would weigh
    that pair at the next retrain as no training value could."""
    bounds = state.model.value_range
    if bounds is None:
        return
    lo, hi = bounds
    bad = [(k, e) for k, e in enumerate(events) if not lo <= e.value <= hi]
    if bad:
        named = "; ".join(f"events[{k}] (user {e.user_id!r}, item {e.item_id!r}): {e.value:g}" for k, e in bad[:5])
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise HTTPException(422, f"value outside the model's range {lo:g} to {hi:g}: {named}{more}; nothing was stored")


def _follow(app: FastAPI) -> None:
    """Serve the model that a ``POST /admin/reload`` on another worker of this service swapped
    in (the store records each reload): under ``metarec serve --workers N`` a reload reached
    only the worker that took it. One indexed read when there is nothing new."""
    served = app.state.store.served(app.state.service)
    if served is None or served[0] <= app.state.served_seq:
        return
    with app.state.swap_lock:
        if served[0] <= app.state.served_seq:  # another request of this worker got there first
            return
        seq, model_dir = served
        try:
            fresh = _serving(model_dir, app.state.store)
        except Exception as exc:  # it loaded on the worker that took the reload
            log.error("%s: reloaded by another worker, but it does not load here (%s); still serving %s",
                      model_dir, exc, app.state.info["model_dir"])  # fmt: skip
            app.state.served_seq = seq  # not tried again on every request
            return
        _swap(app, fresh, Path(model_dir), seq)


def _swap(app: FastAPI, online: OnlineRecommender, model_dir: Path, seq: int) -> None:
    app.state.online, app.state.info, app.state.served_seq = online, _model_info(model_dir), seq
    app.state.metrics.items.set(len(online.item_index))


# ------------------------------------------------------------------------ dependencies
def _online(request: Request) -> OnlineRecommender:
    _follow(request.app)
    return request.app.state.online


def _require_key(request: Request, x_api_key: Annotated[str | None, Header()] = None) -> None:
    if x_api_key is None:
        raise HTTPException(401, "missing X-API-Key header", headers={"WWW-Authenticate": "ApiKey"})
    if not secrets.compare_digest(x_api_key.encode(), request.app.state.api_key.encode()):
        raise HTTPException(403, "invalid API key")


Online = Annotated[OnlineRecommender, Depends(_online)]
Key = Depends(_require_key)


# --------------------------------------------------------------------------------- app
def create_app(
    model_dir: str | Path,
    store_url: str,
    api_key: str,
    max_body_bytes: int = 1 << 20,
    blas_threads: int | None = 1,
    service: str | None = None,
    explore_new: float = 0.0,
) -> FastAPI:
    """Build the service for a model directory and an event store.

    Args:
        api_key: required in ``X-API-Key`` for every write and admin call.
        max_body_bytes: larger request bodies get 413.
        blas_threads: limit BLAS threads in this process (idle OpenBLAS threads spin and
            compete with request threads; one per request is fastest on small machines).
        service: the id that the worker processes of one service share (``metarec serve
            --workers N`` makes one per start, or takes ``--service``'s, which replicas on one
            store can share; default: a new one, a service of its own). A ``POST
            /admin/reload`` is recorded in the store under it, and every worker of the
            service follows it at its next request; a worker that starts (or restarts) after
            a reload serves the reloaded model, not ``model_dir``.
        explore_new: the share of every first places of a list that items without training
            pairs hold, where a request does not give its own (0 to 1; 0: none).
    """
    if not api_key:
        raise MetarecError("the service needs an API key for writes (--api-key or METAREC_API_KEY)")
    if not 0 <= explore_new <= 1:
        raise MetarecError(f"explore_new: a share from 0 to 1, not {explore_new!r}")
    if blas_threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(blas_threads, "blas")
    model_dir = Path(model_dir)
    store = open_store(store_url)
    service = service or uuid.uuid4().hex
    served = store.served(service)
    online = None
    if served is not None:  # a worker (re)started after a reload: it serves what the others do
        try:
            online = _serving(served[1], store)
            model_dir = Path(served[1])
        except Exception as exc:
            log.error("%s, this service's latest reload, does not load here (%s); serving %s", served[1], exc, model_dir)
    app = FastAPI(title="metarec", version=__version__,
                  description="Recommendations for new users and new items, learning from every event.")  # fmt: skip
    app.state.store = store
    app.state.online = online or _serving(model_dir, store)
    app.state.info = _model_info(model_dir)
    app.state.metrics = Metrics()
    app.state.metrics.items.set(len(app.state.online.item_index))
    app.state.service, app.state.served_seq, app.state.swap_lock = service, served[0] if served else 0, threading.Lock()
    app.add_middleware(BodyLimit, limit=max_body_bytes)
    # The model's objects live as long as the process: keep the collector from walking them.
    gc.collect()
    gc.freeze()

    app.state.api_key = api_key
    app.state.explore_new = float(explore_new)

    app.add_middleware(Measure, metrics=app.state.metrics)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal error"}, status_code=500)  # never a trace

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's own handler echoes each bad input, and a JSON number too large for a float
        # (1e400) parses as inf, which JSON cannot carry back: that was a 500.
        return JSONResponse({"detail": _json_safe(jsonable_encoder(exc.errors()))}, status_code=422)

    @app.exception_handler(MetarecError)
    async def bad_input(request: Request, exc: MetarecError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    # ------------------------------------------------------------------- items
    # Ids are opaque strings and may hold "/" (a URL as an item id): the path converter
    # takes them whole (sent as %2F or as is). Before, such an id could be posted in an
    # event body but never reached by path (404). The routes with a suffix come first, so
    # /items/x/similar is the similar items of x.
    @app.put("/items/{item_id:path}", dependencies=[Key], status_code=200)
    def put_item(item_id: ID, body: ItemIn, state: Online) -> dict[str, Any]:
        """Create or update an item; it is encoded and recommendable when this returns."""
        created = state.put_item(item_id, body.text, body.attributes)
        app.state.metrics.items.set(len(state.item_index))
        return {"id": item_id, "created": created}

    @app.get("/items/{item_id:path}/similar", response_model=ItemsOut)
    async def similar(item_id: ID, state: Online, n: Annotated[int, Query(ge=1, le=1000)] = 10) -> dict[str, Any]:
        state.catch_up()
        if state.item(item_id) is None:
            raise HTTPException(404, f"unknown item {item_id!r}")
        return _items(state.similar(item_id, n))

    @app.get("/items/{item_id:path}")
    def get_item(item_id: ID, state: Online) -> dict[str, Any]:
        state.catch_up()
        item = state.item(item_id)
        if item is None:
            raise HTTPException(404, f"unknown item {item_id!r}")
        return item

    @app.delete("/items/{item_id:path}", dependencies=[Key])
    def delete_item(item_id: ID, state: Online) -> dict[str, Any]:
        """The item is never recommended again."""
        if not state.delete_item(item_id):
            raise HTTPException(404, f"unknown item {item_id!r}")
        return {"id": item_id, "deleted": True}

    # ------------------------------------------------------------------- users
    @app.put("/users/{user_id:path}", dependencies=[Key])
    def put_user(user_id: ID, body: UserIn, state: Online) -> dict[str, Any]:
        created = state.put_user(user_id, body.attributes)
        return {"id": user_id, "created": created}

    @app.get("/users/{user_id:path}/events")
    def user_events(user_id: ID, state: Online, n: Annotated[int, Query(ge=1, le=10_000)] = 100) -> dict[str, Any]:
        return {"events": [e.to_dict() for e in state.store.user_events(user_id, n)]}

    # Reads are short CPU work: run them on the event loop, one at a time, instead of
    # letting many threads fight over the GIL (which made the tail 5-10x worse).
    @app.get("/users/{user_id:path}/recommendations", response_model=ItemsOut)
    async def recommendations(
        user_id: ID,
        state: Online,
        n: Annotated[int, Query(ge=1, le=1000)] = 10,
        category: Annotated[str | None, Query(max_length=256)] = None,
        exclude: Annotated[list[str] | None, Query(max_length=10_000)] = None,
        exclude_seen: bool = True,
        explore_new: Annotated[float | None, Query(ge=0, le=1)] = None,
    ) -> dict[str, Any]:
        """Seen items are excluded by default; an unknown user gets the model's cold-start list.
        ``explore_new``: items without training pairs (posted since) hold at least this share
        of every first places of the list, where there are enough of them (default: the
        service's, ``metarec serve --explore-new``)."""
        state.catch_up()  # events and items other workers or replicas stored
        explore = app.state.explore_new if explore_new is None else explore_new
        return _items(state.recommend(user_id, n=n, category=category, exclude=exclude or (), exclude_seen=exclude_seen,
                                      explore=explore))  # fmt: skip

    # ------------------------------------------------------------------ events
    @app.post("/events", dependencies=[Key], response_model=EventsAck)
    def post_events(body: EventsIn, state: Online) -> dict[str, Any]:
        """Validated, stored in one transaction, acknowledged after commit; the users'
        next recommendations reflect them."""
        state.catch_up()
        _require_items(state, [e.item_id for e in body.events])
        _require_values(state, body.events)
        now = time.time()
        events = [
            Event(e.event_id or uuid.uuid4().hex, e.user_id, e.item_id, e.type, e.value,
                  e.timestamp if e.timestamp is not None else now)  # fmt: skip
            for e in body.events
        ]
        inserted, dups = state.store.add_events(events)
        state.catch_up()
        app.state.metrics.events.inc(inserted)
        return {"accepted": inserted, "duplicates": dups}

    @app.post("/sessions/recommendations", response_model=ItemsOut)
    async def session(body: SessionIn, state: Online) -> dict[str, Any]:
        """Anonymous: the session's events are in the body, nothing is stored."""
        state.catch_up()
        _require_items(state, [e.item_id for e in body.events])  # before, unknown ones were left out without a word
        hist = [state.item_index[e.item_id] for e in body.events]
        explore = app.state.explore_new if body.explore_new is None else body.explore_new
        return _items(state.recommend(None, n=body.n, history=hist, category=body.category, exclude=body.exclude,
                                      explore=explore))  # fmt: skip

    # ------------------------------------------------------------- operations
    @app.get("/health/live")
    def live() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/health/ready")
    def ready(request: Request) -> dict[str, Any]:
        _follow(app)  # report the model this worker serves from now on
        return {"status": "ready", "version": __version__, **request.app.state.info, "worker": os.getpid(),
                "items": len(request.app.state.online.item_index)}  # fmt: skip

    @app.get("/metrics")
    def metrics(request: Request) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/admin/reload", dependencies=[Key])
    def reload(body: ReloadIn, request: Request) -> dict[str, Any]:
        """Load another model directory, replay the store into it, then swap atomically:
        requests in flight finish on the old model, the next ones use the new. The other
        workers of this service swap it in at their next request."""
        new_dir = Path(body.model_dir)
        try:
            if not (new_dir / "config.json").is_file():
                raise HTTPException(422, f"{new_dir}: not a model directory")
            fresh = _serving(new_dir, store)
        except OSError as exc:  # an unreadable or impossible path is the caller's error
            raise HTTPException(422, f"cannot read model directory: {exc.strerror}") from None
        with app.state.swap_lock:
            _swap(app, fresh, new_dir, store.set_served(service, str(new_dir)))
        return app.state.info

    return app


def app_from_env() -> FastAPI:
    """The app configured from ``METAREC_MODEL``, ``METAREC_STORE``, ``METAREC_API_KEY``,
    ``METAREC_MAX_BODY``, ``METAREC_SERVICE`` and ``METAREC_EXPLORE_NEW``: the factory each worker process of ``metarec
    serve --workers N`` calls. Workers share the store and catch up with each other's writes,
    and with a reload that one of them took, on every call."""
    return create_app(
        os.environ["METAREC_MODEL"], os.environ["METAREC_STORE"], os.environ.get("METAREC_API_KEY", ""),
        max_body_bytes=int(os.environ.get("METAREC_MAX_BODY", 1 << 20)), service=os.environ.get("METAREC_SERVICE"),
        explore_new=float(os.environ.get("METAREC_EXPLORE_NEW", 0.0)),
    )  # fmt: skip
