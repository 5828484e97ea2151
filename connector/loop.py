"""The one loop every background worker runs: do a batch, rest when there was nothing to do."""
from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from typing import Callable

log = logging.getLogger(__name__)


def worker_id() -> str:
    """Who holds a lease: host, process and a random tail (two loops of one process differ)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def run_until_stopped(name: str, run_once: Callable[[], int], stop: threading.Event, idle_seconds: float, *,
                      wake: threading.Event | None = None) -> None:
    """Call `run_once` (which returns how much it did) until `stop` is set. One failed batch never
    kills the loop: its leases run out (or its transaction rolls back) and the work comes back.
    When idle it rests `idle_seconds`, or less when another thread sets `wake`."""
    log.info("%s started", name)
    while not stop.is_set():
        try:
            busy = run_once()
        except Exception:
            log.exception("%s: batch failed", name)
            busy = 0
        if not busy:
            if wake is None:
                stop.wait(idle_seconds)
            else:
                wake.wait(idle_seconds)
                wake.clear()
    log.info("%s stopped", name)
