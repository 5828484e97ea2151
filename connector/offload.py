"""Exports and reports built in child processes at a lower CPU priority, so that the PBX's callbacks never
wait for them.

A web process answers the PBX's callbacks in threads that share one interpreter (the GIL) and its CPU share
with whatever else the process does. An export of every call is seconds to minutes of Python (the ORM, the
file's cells) and a report over every call is seconds of the database's work; in the same process either
made callbacks queue for the interpreter, and with the machine busy intake fell behind the PBX's rate.
Here each export is a child process of its own that streams the file back through a pipe, and a report's
figures are counted by a small pool of child processes (kept, so a report pays no start-up); both run at
`NICE` steps below the web process, so whenever the machine is short of CPU the scheduler serves the
callbacks first and an export or report only slows down.

The web process still decides everything that concerns the person asking: login, role and the filter (an
operator's own extensions in it) are settled before the child starts, and the child reads through the same
code (`connector.exports`, `connector.reports.figures`) in the same read-only transactions, one short read
per export page, one snapshot per report. A failure before the first byte is an error answer; a failure
after it cuts the download short (the client sees an incomplete file, never a wrong one); a client that
goes away ends its child.

`HEAVY_READS_IN_CHILDREN=false` keeps all of it in the web process's threads (as before: an export rests as
long as it worked after each page); so does a SQLite database in memory, which no other process can open.
"""
from __future__ import annotations

import logging
import os
import pickle
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Iterator

from sqlalchemy.engine import make_url

from connector.calls import CallFilter, Sort
from connector.db import Database
from connector.reports import PARTS, ReportFilter, figures
from connector.threshold import Policy

log = logging.getLogger(__name__)

NICE = 10  # how many steps below the web process children run: about a tenth of its CPU share when both want it
REPORT_PROCESSES = 2  # reports counted at once; more wait for one of these
CHUNK = 64 * 1024
SOURCE_ROOT = str(Path(__file__).resolve().parent.parent)  # where `connector` is imported from


class ChildFailed(RuntimeError):
    """A child process ended without finishing its work; the message has the end of what it said."""


class HeavyReads:
    """Exports and reports' figures for the web faces: in child processes, or in this one when `in_children`
    is false or the database cannot be opened from another process."""

    def __init__(self, db: Database, *, in_children: bool = True):
        database = make_url(db.url).database
        self.db = db
        self.in_children = in_children and not (db.engine.dialect.name == "sqlite"
                                                and database in (None, "", ":memory:"))
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def export(self, fmt: str, flt: CallFilter, sort: Sort) -> Iterator[bytes]:
        """The export's file (`connector.exports.export_file`), chunk by chunk. The first chunk is ready when
        this returns, so a failure to start raises here, before anything is answered."""
        if not self.in_children:
            from connector.exports import export_file

            chunks = export_file(self.db, fmt, flt, sort)
        else:
            chunks = _child_export({"url": self.db.url, "fmt": fmt, "flt": flt, "sort": sort})
        first = next(chunks, b"")
        return _prepend(first, chunks)

    def figures(self, flt: ReportFilter, initial: Policy, parts: tuple[str, ...] = PARTS) -> dict:
        """`connector.reports.figures`, counted by a child process of the pool."""
        if not self.in_children:
            return figures(self.db, flt, initial, parts)
        pool = self._reports_pool()
        try:
            return pool.submit(_child_figures, self.db.url, flt, initial, parts).result()
        except BrokenProcessPool:  # a child died (killed, out of memory): the next report starts a new pool
            with self._lock:
                if self._pool is pool:
                    self._pool = None
            raise ChildFailed("the report's child process ended before it answered") from None

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def _reports_pool(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                import multiprocessing

                # spawn: a fresh interpreter, never a fork of this threaded one (its locks, its connections)
                self._pool = ProcessPoolExecutor(REPORT_PROCESSES, mp_context=multiprocessing.get_context("spawn"),
                                                 initializer=_lower_priority)
            return self._pool


def _prepend(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    try:
        if first:
            yield first
        yield from rest
    finally:
        close = getattr(rest, "close", None)
        if close is not None:
            close()  # a client that went away ends the child (or the in-process export) at once


def _lower_priority() -> None:
    try:
        os.nice(NICE)
    except OSError:  # not allowed here: run at the same priority rather than not at all
        pass


# --- exports: one child process each, the file's bytes on its standard output ---------------------------

def _child_export(job: dict) -> Iterator[bytes]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [SOURCE_ROOT, os.environ.get("PYTHONPATH")]))}
    errors = tempfile.TemporaryFile()  # a pipe nobody reads would stall a child that says much
    child = subprocess.Popen([sys.executable, "-c", EXPORT_CHILD], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=errors, env=env, close_fds=True)
    try:
        # The job (the database URL among it) goes through the pipe: never in the command line, which any
        # user of the machine can read.
        child.stdin.write(pickle.dumps(job))
        child.stdin.close()
        while chunk := child.stdout.read1(CHUNK):
            yield chunk
        if child.wait() != 0:
            errors.seek(0)
            said = errors.read().decode(errors="replace").strip().splitlines()
            log.error("export child process failed (exit %s): %s", child.returncode, "\n".join(said[-20:]))
            raise ChildFailed(said[-1] if said else f"exit {child.returncode}")
    finally:
        if child.poll() is None:  # the download was abandoned: the child has nothing left to do
            child.kill()
            child.wait()
        child.stdout.close()
        errors.close()


# Its priority is lowered before anything is imported: the imports are work too.
EXPORT_CHILD = f"import os; os.nice({NICE})\nfrom connector.offload import export_main; export_main()"


def export_main() -> None:
    """The child: reads the job from standard input, writes the file to standard output."""
    from connector.exports import export_file

    job = pickle.loads(sys.stdin.buffer.read())
    db = Database(job["url"])
    out = sys.stdout.buffer
    try:
        # pace 0: this process shares no interpreter with the webhook, and its priority does the yielding
        for chunk in export_file(db, job["fmt"], job["flt"], job["sort"], pace=0):
            out.write(chunk)
            out.flush()
    except BrokenPipeError:  # the web process stopped reading: the download was abandoned
        os._exit(1)
    finally:
        db.dispose()


# --- reports: a pool of child processes, kept --------------------------------------------------------------

_databases: dict[str, Database] = {}  # in a pool's child: one engine per database, kept between reports


def _child_figures(url: str, flt: ReportFilter, initial: Policy, parts: tuple[str, ...]) -> dict:
    db = _databases.get(url)
    if db is None:
        db = _databases[url] = Database(url)
    return figures(db, flt, initial, parts)

