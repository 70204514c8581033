"""Real service processes for the tests: start `metarec serve` on a free loopback port."""

import socket
import subprocess
import sys
import time

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model_dir, store: str, port: int, key: str = "k", workers: int = 1, service: str | None = None) -> subprocess.Popen:
    """`metarec serve` as a subprocess, returned once /health/live answers (60 s at most)."""
    cmd = [sys.executable, "-m", "metarec.cli", "serve", "--model", str(model_dir), "--store", store,
           "--port", str(port), "--api-key", key, "--workers", str(workers)]  # fmt: skip
    if service:
        cmd += ["--service", service]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health/live", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
        if proc.poll() is not None:
            raise RuntimeError(proc.stderr.read().decode()[-2000:])
    proc.kill()
    raise RuntimeError("server did not start")


def listening_sockets(port: int) -> int:
    """Sockets listening on ``port`` on this machine (Linux: ``/proc/net/tcp``): one per
    worker of ``metarec serve --workers N``, one for all of them where they share it."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            count += state == "0A" and int(local.rsplit(":", 1)[1], 16) == port
    return count
