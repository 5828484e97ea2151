"""Exports and reports built in child processes at a lower CPU priority, so that the PBX's callbacks never
wait for them.

A web process answers the PBX's callbacks in threads that share one interpreter (the GIL) and its CPU share
with whatever else the process does. An export of every call is seconds to minutes of Python (the ORM, the
file's cells) and a report over every call is seconds of the database's work; in the same process either
made callbacks queue for the interpreter, and with the machine busy intake fell behind the PBX's rate.
Here they are the work of child processes, kept between jobs (a report pays no start-up), each doing one job
at a time: an export streams the file back through the child's pipe as it is written, a report sends back
its figures. The children run `NICE` steps below the web process, so whenever the machine is short of CPU
the scheduler serves the callbacks first and an export or report only slows down. The web process only
copies bytes from a pipe, in threads (waitress) or greenlets (gunicorn's gevent workers, which patch
`subprocess`, so a long export no longer blocks a worker's other requests either).

The web process still decides everything that concerns the person asking: login, role and the filter (an
operator's own extensions in it), and how the file is written for them (`connector.console.exports.Layout`: their
language, the console's time zone), are settled before the child starts, and the child reads through the same
code (`connector.console.exports`, `connector.console.reports.figures`) in the same read-only transactions, one short read
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
import struct
import subprocess
import sys
import threading
import traceback
import weakref
from pathlib import Path
from typing import Iterator

from sqlalchemy.engine import make_url

from connector.console.exports import Layout
from connector.console.reports import PARTS, ReportFilter, figures
from connector.core.calls import CallFilter, Sort
from connector.core.db import Database
from connector.core.policy import Policy

log = logging.getLogger(__name__)

NICE = 10  # how many steps below the web process children run: about a tenth of its CPU share when both want it
KEEP_IDLE = 2  # children kept waiting for the next job; more are started when more jobs run at once
SOURCE_ROOT = str(Path(__file__).resolve().parents[2])  # where `connector` is imported from
# A child lowers its priority before anything is imported: the imports are work too.
CHILD = f"import os; os.nice({NICE})\nfrom connector.console.offload import child_main, idle_priority; idle_priority(); child_main()"

# The pipes carry frames: a kind, a length, that many bytes. To a child: a job (pickled). From it: file chunks,
# then the result (pickled), or an error (its text).
JOB, CHUNK, RESULT, ERROR = b"J", b"C", b"R", b"E"
HEADER = struct.Struct(">cI")


class ChildFailed(RuntimeError):
    """A child process could not do its job, or ended before it was done."""


class HeavyReads:
    """Exports and reports' figures for the web faces: in child processes, or in this one when `in_children`
    is false or the database cannot be opened from another process."""

    def __init__(self, db: Database, *, in_children: bool = True):
        database = make_url(db.url).database
        self.db = db
        self.in_children = in_children and not (db.engine.dialect.name == "sqlite"
                                                and database in (None, "", ":memory:"))
        self._idle: list[subprocess.Popen] = []
        self._lock = threading.Lock()
        # An app dropped without close() (a test's, a reloaded one) still ends its idle children, pipes closed.
        weakref.finalize(self, _end_all, self._idle)

    def export(self, fmt: str, flt: CallFilter, sort: Sort, layout: Layout = Layout()) -> Iterator[bytes]:
        """The export's file (`connector.console.exports.export_file`), chunk by chunk. The first chunk is ready when
        this returns, so a failure to start raises here, before anything is answered."""
        if not self.in_children:
            from connector.console.exports import export_file

            chunks = export_file(self.db, fmt, flt, sort, layout)
        else:
            chunks = self._run({"do": "export", "url": self.db.url, "fmt": fmt, "flt": flt, "sort": sort,
                                "layout": layout})
        first = next(chunks, b"")
        return _prepend(first, chunks)

    def figures(self, flt: ReportFilter, initial: Policy, parts: tuple[str, ...] = PARTS) -> dict:
        """`connector.console.reports.figures`, counted by a child process."""
        if not self.in_children:
            return figures(self.db, flt, initial, parts)
        answer: list = []
        for _ in self._run({"do": "figures", "url": self.db.url, "flt": flt, "initial": initial, "parts": parts},
                           answer):
            pass  # a report sends no chunks
        return answer[0]

    def close(self) -> None:
        """Ends the idle children (a busy one ends with its job)."""
        with self._lock:
            idle = self._idle[:]
            self._idle.clear()
        _end_all(idle)

    def _run(self, job: dict, answer: list | None = None) -> Iterator[bytes]:
        """Hands `job` to an idle child (or a new one) and yields the chunks it sends; its result goes into
        `answer`. A job given up half-way ends its child."""
        child = self._take()
        done = False
        try:
            _send(child.stdin, JOB, pickle.dumps(job))
            while True:
                kind, payload = _receive(child.stdout)
                if kind == CHUNK:
                    yield payload
                elif kind == RESULT:
                    if answer is not None:
                        answer.append(pickle.loads(payload))
                    done = True
                    return
                elif kind == ERROR:
                    done = True  # the child reported it and is ready for the next job
                    raise ChildFailed(payload.decode(errors="replace"))
                else:
                    raise ChildFailed(f"a child process said {kind!r}")
        except (OSError, EOFError) as exc:
            raise ChildFailed(f"the child process ended before its job was done ({exc or 'no answer'})") from None
        finally:
            if done:
                self._give(child)
            else:  # given up (a download abandoned) or broken: its work is of no use to anyone
                _end(child)

    def _take(self) -> subprocess.Popen:
        with self._lock:
            while self._idle:
                child = self._idle.pop()
                if child.poll() is None:
                    return child
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [SOURCE_ROOT, os.environ.get("PYTHONPATH")]))}
        # Its error output is this process's: a child's traceback lands in the server's log.
        return subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                env=env, close_fds=True)

    def _give(self, child: subprocess.Popen) -> None:
        with self._lock:
            if len(self._idle) < KEEP_IDLE:
                self._idle.append(child)
                return
        _end(child)


def _prepend(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    try:
        if first:
            yield first
        yield from rest
    finally:
        close = getattr(rest, "close", None)
        if close is not None:
            close()  # a client that went away ends the child (or the in-process export) at once


def _end_all(children: list[subprocess.Popen]) -> None:
    for child in list(children):
        _end(child)
    children.clear()


def _end(child: subprocess.Popen) -> None:
    for pipe in (child.stdin, child.stdout):
        try:
            pipe.close()
        except OSError:
            pass
    if child.poll() is None:
        child.kill()
    child.wait()


def _send(pipe, kind: bytes, payload: bytes) -> None:
    pipe.write(HEADER.pack(kind, len(payload)) + payload)
    pipe.flush()


def _receive(pipe) -> tuple[bytes, bytes]:
    kind, length = HEADER.unpack(_exactly(pipe, HEADER.size))
    return kind, _exactly(pipe, length)


def _exactly(pipe, size: int) -> bytes:
    parts, missing = [], size
    while missing:
        part = pipe.read(missing)
        if not part:
            raise EOFError("the pipe closed")
        parts.append(part)
        missing -= len(part)
    return b"".join(parts)


# --- the child ------------------------------------------------------------------------------------------------

def idle_priority() -> None:
    """On Linux, a child also takes the idle scheduling class (it runs only on CPU nobody else wants, and
    yields the moment the web process or the database server wakes: the server serves the PBX's callbacks
    at its own priority, beyond any nice value of ours), and keeps off the first CPU, so that however many
    exports run, one CPU is always free of them for the callbacks' hops between processes. Elsewhere the
    nice value alone does it."""
    if hasattr(os, "sched_setscheduler") and hasattr(os, "SCHED_IDLE"):
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        except OSError:  # not allowed here (a container's policy): the nice value stays
            pass
    if hasattr(os, "sched_getaffinity"):
        allowed = sorted(os.sched_getaffinity(0))
        if len(allowed) > 1:
            os.sched_setaffinity(0, allowed[1:])


def child_main() -> None:
    """Jobs from standard input, one at a time, until it closes; frames to standard output, which nothing else
    may write to (print goes to standard error)."""
    from connector.console.exports import export_file

    jobs, out = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr
    databases: dict[str, Database] = {}  # one engine per database, kept between jobs
    while True:
        try:
            kind, payload = _receive(jobs)
        except EOFError:  # the web process is gone or done with this child
            return
        job = pickle.loads(payload)
        try:
            db = databases.get(job["url"])
            if db is None:
                db = databases[job["url"]] = Database(job["url"])
            if job["do"] == "export":
                # pace 0: no interpreter is shared with the webhook here; the priority does the yielding
                for chunk in export_file(db, job["fmt"], job["flt"], job["sort"], job["layout"], pace=0):
                    _send(out, CHUNK, chunk)
                result = None
            else:
                result = figures(db, job["flt"], job["initial"], job["parts"])
        except BrokenPipeError:  # the web process stopped reading: it ends this child
            return
        except Exception as exc:
            traceback.print_exc()  # into the server's log, in full
            _send(out, ERROR, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".encode())
            continue
        _send(out, RESULT, pickle.dumps(result))
