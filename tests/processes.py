"""The connector's own processes, started as a deployment starts them, for tests that kill or restart them."""
from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

_numbers = itertools.count(1)


def process_env(**settings) -> dict:
    """A clean environment: nothing of the test runner's settings leaks into the process."""
    return {**{k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")},
            **{k: str(v) for k, v in settings.items()}}


def start_worker(env: dict, cwd) -> subprocess.Popen:
    """`connector worker`; its log goes to a file in `cwd` (a pipe nobody reads would fill and block it)."""
    with open(Path(cwd) / f"worker-{os.getpid()}-{next(_numbers)}.log", "w") as log_file:
        return subprocess.Popen([sys.executable, "-c", "import app; app.main()", "worker"], env=env, cwd=cwd,
                                stdout=subprocess.DEVNULL, stderr=log_file, text=True)


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    process.wait(timeout=15)


def workers_until_settled(env: dict, cwd, db, count: int = 1) -> None:
    """`count` worker processes deliver until no job is open, then stop."""
    from tests.ledger import wait_until_settled

    workers = [start_worker(env, cwd) for _ in range(count)]
    try:
        wait_until_settled(db)
    finally:
        for worker in workers:
            stop(worker)
