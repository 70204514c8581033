"""``metarec serve --workers N``: uvicorn's worker processes, each with its own listening socket.

uvicorn's multi-worker mode binds one socket in the parent and hands it to every worker, so
all of them accept from one queue, and the kernel wakes them unevenly: with keep-alive
clients one worker can hold most connections while another idles (uvicorn PR #2472,
"socket-load-balance", not merged). Measured here (two workers, 16 new wrk connections after
a spell of one client, the 10k-item hybrid): all 16 on one worker in 3 draws of 12, at
277-342 requests per second against 510-616 for the others. On Linux each worker here binds
a socket of its own to the same address with ``SO_REUSEPORT``, and the kernel spreads new
connections over the sockets by a hash of each connection. uvicorn's supervisor (:class:`uvicorn.supervisors.Multiprocess`) still
starts, watches and restarts the workers; only the socket it hands them differs. Elsewhere
(``SO_REUSEPORT`` does not balance on macOS) the shared socket is kept.
"""

from __future__ import annotations

import os
import socket
import sys
from typing import Any

from metarec.errors import ConfigError

STARTUP_FAILURE = 3  # uvicorn's exit code for a worker that cannot start: its supervisor stops, not retries


def balances_connections() -> bool:
    """Whether this platform spreads connections over ``SO_REUSEPORT`` sockets (Linux)."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


class OwnSocket:
    """Stands in for the parent's socket in uvicorn's arguments to each worker. Workers are
    spawned, so their arguments are pickled; unpickled in a worker, this is a socket of that
    worker's own, bound to ``address`` with ``SO_REUSEPORT``."""

    def __init__(self, family: int, address: tuple[Any, ...]) -> None:
        self.family = family
        self.address = address

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return bind_reuse_port, (self.family, self.address)


def bind_reuse_port(family: int, address: tuple[Any, ...]) -> socket.socket:
    """A TCP socket bound to ``address`` with ``SO_REUSEPORT`` (uvicorn listens on it).

    A worker that cannot bind exits with uvicorn's start-up failure code, so the supervisor
    stops instead of restarting it for ever."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        print(f"error: worker {os.getpid()} cannot bind {address[0]}:{address[1]}: {exc.strerror}", file=sys.stderr, flush=True)
        os._exit(STARTUP_FAILURE)
    sock.set_inheritable(True)
    return sock


def free_address(host: str, port: int) -> tuple[int, tuple[Any, ...]]:
    """``(family, address)`` for the service's sockets, as uvicorn binds its one (IPv6 where
    ``host`` has a colon, else IPv4), checked with a plain bind first: a port in use is a
    ConfigError here (with ``SO_REUSEPORT`` alone a second service of this user on the same
    port would silently share its connections), and port 0 becomes one free port for every
    worker."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except socket.gaierror as exc:
            raise ConfigError(f"--host {host!r}: {exc.strerror}") from None
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
        bound = probe.getsockname()[1]
    return family, (host, bound)


def run_workers(app: str, host: str, port: int, workers: int, **options: Any) -> None:
    """Serve the app factory ``app`` (an import string) with ``workers`` processes, each on
    its own socket where the platform balances them (:func:`balances_connections`)."""
    import uvicorn

    family, address = free_address(host, port)
    if not balances_connections():
        uvicorn.run(app, factory=True, host=host, port=address[1], workers=workers, **options)
        return
    import inspect

    from uvicorn.supervisors import Multiprocess

    config = uvicorn.Config(app, factory=True, host=host, port=address[1], workers=workers, **options)
    sockets = [OwnSocket(family, address)]
    if "target" in inspect.signature(Multiprocess).parameters:  # uvicorn before 0.52 passes the server's run
        Multiprocess(config, target=uvicorn.Server(config=config).run, sockets=sockets).run()  # type: ignore[arg-type]
    else:
        Multiprocess(config, sockets=sockets).run()  # type: ignore[arg-type]
