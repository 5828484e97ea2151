"""The one loop every background worker runs: do a batch, rest when there was nothing to do."""
from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from typing import Callable

from sqlalchemy.exc import OperationalError

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
    failures = 0
    while not stop.is_set():
        try:
            done = run_once()
        except Exception as exc:
            failures += 1
            _log_failure(name, exc, failures)
            stop.wait(failure_pause(failures))
            continue
        if failures:
            log.warning("%s: working again after %d failed attempt(s)", name, failures)
            failures = 0
        if done == 0:
            woken = wake.wait(idle_seconds) if wake is not None else stop.wait(idle_seconds)
            if wake is not None:
                wake.clear()
            if woken and gather_seconds:
                stop.wait(gather_seconds)
        elif done < batch and gather_seconds:
            stop.wait(gather_seconds)
    log.info("%s stopped", name)


def failure_pause(failures: int) -> float:
    """Rest after the n-th failure in a row: 0.5 s, 1 s, 2 s ... capped at 10 s. A database that is
    down is not hammered, and one that comes back is used again within seconds."""
    return min(0.5 * 2 ** (failures - 1), 10.0)


def _log_failure(name: str, exc: Exception, failures: int) -> None:
    """The database being down is said once, in one line, until it is back (the loop then says so);
    anything else is a bug and keeps its traceback."""
    if isinstance(exc, OperationalError):
        if failures == 1:
            lines = str(exc.orig or exc).strip().splitlines()
            log.warning("%s: database unavailable (%s); retrying", name, lines[0] if lines else "no answer")
        return
    log.exception("%s: batch failed", name)
