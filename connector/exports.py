"""Calls as rows for a spreadsheet: the same filters and role rules as the list, read page by page
(keyset), so an export of a huge date range never holds more than one page of calls.

Each page is its own short read (`Database.reading`): no transaction, connection or lock is held while
rows are written out or sent to a slow client. So an export never holds up the webhook, never keeps
SQLite's WAL from being checkpointed (one read open for the whole export would, for as long as the client
takes to download it) and never holds back PostgreSQL's vacuum. The keyset makes the pages add up to the
list as it stands: each call once, as it was when its page was read. Only a call whose place in the order
moves while the export runs (its summary moves it from when it was first seen to when it started; a new
score, under a score order) can cross the cursor, and so be missed or listed twice."""
from __future__ import annotations

import csv
import io
import threading
import time
from typing import Iterator

from connector import xlsx
from connector.calls import CallFilter, CallPage, Cursor, Sort, call_json, find_calls
from connector.cells import csv_row
from connector.db import Database

PAGE = 500
PACE = 1.0  # an export rests this many times as long as it worked: at most half of the interpreter
COLUMNS = ("call_id", "started_at", "direction", "operator", "line_number", "customer_phone", "talk_seconds",
           "survey", "customer_score", "supervisor_score", "tag", "reviews", "crm_status", "crm_entity")


# Building a page's calls is pure Python (the ORM), and the webhook's threads share the interpreter with it:
# exports running at once take turns page by page, so they never hold more than one thread's share.
_PAGES = threading.Lock()


def _page(db: Database, flt: CallFilter, after: Cursor | None, sort: Sort) -> CallPage:
    """One page in one short read. Its calls come out detached with all that `call_json` reads loaded."""
    with _PAGES, db.reading() as session:
        return find_calls(session, flt, per_page=PAGE, after=after, count=False, sort=sort)


def call_rows(db: Database, flt: CallFilter, sort: Sort = Sort.NEWEST, *, pace: float | None = None) -> Iterator[tuple]:
    """One row per call, in the list's order, with the columns of COLUMNS; one short read per page.
    `pace` (PACE unless given): how long it rests after each page, as a multiple of the CPU time its thread
    spent on the page; 0 in a child process of its own (`connector.offload`), which shares no interpreter."""
    pace = PACE if pace is None else pace
    after: Cursor | None = None
    worked = time.thread_time()
    while True:
        # An export is background work beside the webhook in one interpreter (the GIL): after each page it
        # rests `pace` times as long as its thread worked (CPU time, writing the rows out included).
        if pace:
            time.sleep((time.thread_time() - worked) * pace)
        worked = time.thread_time()
        page = _page(db, flt, after, sort)  # the read is over: rows go out with nothing held
        for call in page.calls:
            c = call_json(call)
            crm = c["crm"]
            yield (c["call_id"], c["started_at"], c["direction"], c["operator"], c["line_number"],
                   c["customer_phone"], c["talk_seconds"], c["survey"], c["customer_score"], c["supervisor_score"],
                   c["decision"]["tag"],
                   "; ".join(f"{r['by']}: {r['score']}" + (f" ({r['comment']})" if r["comment"] else "")
                             for r in c["reviews"]),
                   crm["status"], f"{crm['entity_type']}/{crm['entity_id']}" if crm["entity_id"] else None)
        if page.next_cursor is None:
            return
        after = page.next_cursor  # the page's calls are dropped with it: memory stays flat


FORMATS = {"csv": "text/csv", "xlsx": xlsx.MIME}  # what an export can be written as: its media type


def export_file(db: Database, fmt: str, flt: CallFilter, sort: Sort = Sort.NEWEST, *,
                pace: float | None = None) -> Iterator[bytes]:
    """The export's file, chunk by chunk as its pages are read (CSV: UTF-8; XLSX: `connector.xlsx`), header
    row first; every cell through the rules of `connector.cells`."""
    rows = call_rows(db, flt, sort, pace=pace)
    if fmt == "xlsx":
        yield from xlsx.stream([("calls", _with_header(rows))])
        return
    if fmt != "csv":
        raise ValueError(f"no such export format: {fmt}")
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow(csv_row(row))  # no control characters, no formulas
        if out.tell() > 64_000:
            yield out.getvalue().encode()
            out.seek(0)
            out.truncate()
    yield out.getvalue().encode()


def _with_header(rows: Iterator[tuple]) -> Iterator[tuple]:
    yield COLUMNS
    yield from rows
