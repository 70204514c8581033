"""`metarec serve --workers N`'s sockets: one per worker, on one checked address."""

import pickle
import socket

import pytest

from metarec.errors import ConfigError
from metarec.serving.workers import OwnSocket, balances_connections, free_address

pytestmark = pytest.mark.skipif(not balances_connections(), reason="SO_REUSEPORT balances connections on Linux only")


def test_each_unpickled_stand_in_is_a_socket_of_its_own_on_the_same_port():
    family, address = free_address("127.0.0.1", 0)
    assert address[1] != 0  # port 0: one free port, the same for every worker
    stand_in = OwnSocket(family, address)
    a, b = pickle.loads(pickle.dumps(stand_in)), pickle.loads(pickle.dumps(stand_in))  # as each spawned worker gets it
    try:
        for s in (a, b):
            assert isinstance(s, socket.socket) and s.getsockname() == address
            assert s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
        a.listen()
        b.listen()
        with socket.create_connection(address, timeout=5):
            pass
    finally:
        a.close()
        b.close()


def test_a_port_in_use_is_refused_before_any_worker_starts():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{port}: Address already in use"):
            free_address("127.0.0.1", port)
    with pytest.raises(ConfigError, match="--host 'no-such-host.invalid'"):
        free_address("no-such-host.invalid", 8000)
