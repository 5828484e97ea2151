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
                      wake: threading.Event | None = None, batch: int = 0, gather_seconds: float = 0.0) -> None:
    """Call `run_once` (which returns how much it did) until `stop` is set. One failed batch never
    kills the loop: its leases run out (or its transaction rolls back) and the work comes back.

    When idle it rests `idle_seconds`, or less when another thread sets `wake`. With `gather_seconds`,
    it lets work gather that long after a wake-up or a batch smaller than `batch`: one batch of fifty
    costs a few round trips, fifty batches of one cost fifty times that.
    """
    log.info("%s started", name)
    while not stop.is_set():
        try:
            done = run_once()
        except Exception:
            log.exception("%s: batch failed", name)
            done = 0
        if done == 0:
            woken = wake.wait(idle_seconds) if wake is not None else stop.wait(idle_seconds)
            if wake is not None:
                wake.clear()
            if woken and gather_seconds:
                stop.wait(gather_seconds)
        elif done < batch and gather_seconds:
            stop.wait(gather_seconds)
    log.info("%s stopped", name)
