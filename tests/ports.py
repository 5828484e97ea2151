"""Ports for the servers a test starts as its own process.

Asking the kernel for a free port (bind to 0) and handing the number to a child races: until the child binds
it, the kernel may give the same ephemeral port to any other socket on the machine, another test worker's fake
or an outgoing connection among them, and the child then dies of "Address already in use". These ports come
from below the kernel's ephemeral range, which it never hands out by itself, and each test worker draws from
its own slice, so no two of our own servers ask for the same one."""
import itertools
import os
import socket

_FIRST, _SLICE = 20000, 1000  # 20000..29999: below Linux's default ephemeral range (32768..60999)


def _worker_index() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")  # set by pytest-xdist: gw0, gw1, ...
    return int(worker.removeprefix("gw") or 0) % 10


# The whole slice, from a point that differs between runs (a port just used may still be in TIME_WAIT).
_start = os.getpid() % _SLICE
_candidates = itertools.cycle(_FIRST + _worker_index() * _SLICE + (_start + n) % _SLICE for n in range(_SLICE))


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on now and that no other test worker will ask for."""
    for _ in range(_SLICE):
        port = next(_candidates)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue  # in use, or still in TIME_WAIT from an earlier test
            return port
    raise RuntimeError("no free port in this test worker's slice")
