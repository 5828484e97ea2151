"""Calls as rows for a spreadsheet: the same filters and role rules as the list, read page by page
(keyset), so an export of a huge date range never holds more than one page of calls.

Each page is its own short read (`Database.reading`): no transaction, connection or lock is held while
rows are written out or sent to a slow client. So an export never holds up the webhook, never keeps
SQLite's WAL from being checkpointed (one read open for the whole export would, for as long as the client
takes to download it) and never holds back PostgreSQL's vacuum. The keyset makes the pages add up to the
list as it stands: each call once, as it was when its page was read. Only a call whose place in the order
moves while the export runs (its summary moves it from when it was first seen to when it started; a new
score, under a score order) can cross the cursor, and so be missed or listed twice.

The file is written for the person who asked (`Layout`): the columns named in their language, times in the
console's time zone (date cells in XLSX, text such as 26.11.2026 14:05 in CSV), the direction, the survey
and the CRM status as the console names them; the CSV with a byte-order mark and `;` between fields, which
is what Excel set up for Russian expects (one with `,` puts every row into one column and garbles the
Cyrillic). The web face fills the layout in; the export itself knows no language."""
from __future__ import annotations

import csv
import io
import threading
import time
from dataclasses import dataclass, field
from datetime import timezone
from enum import Enum
from typing import Iterator, Mapping
from zoneinfo import ZoneInfo

from connector.console import xlsx
from connector.console.cells import csv_row
from connector.core.calls import CallFilter, CallPage, Cursor, Sort, call_json, find_calls
from connector.core.db import Database

PAGE = 500
PACE = 1.0  # an export rests this many times as long as it worked: at most half of the interpreter
COLUMNS = ("call_id", "started_at", "direction", "operator", "line_number", "customer_phone", "talk_seconds",
           "survey", "customer_score", "supervisor_score", "tag", "reviews", "crm_status", "crm_entity")
STARTED_AT, CRM_STATUS = COLUMNS.index("started_at"), COLUMNS.index("crm_status")
DIRECTION, SURVEY = COLUMNS.index("direction"), COLUMNS.index("survey")
# How wide each column is, in characters, for what it usually holds (the widths are set before any row is
# read): a column is as wide as this or its header, whichever is wider.
TYPICAL_WIDTHS = {"call_id": 22, "started_at": 17, "direction": 10, "operator": 10, "line_number": 14,
                  "customer_phone": 15, "talk_seconds": 8, "survey": 10, "customer_score": 8,
                  "supervisor_score": 8, "tag": 14, "reviews": 40, "crm_status": 16, "crm_entity": 16}


class Separator(Enum):
    """Between a CSV's fields: `;` for Excel set up for Russian (and most of Europe), `,` for other tools."""
    SEMICOLON = ";"
    COMMA = ","


@dataclass(frozen=True)
class Layout:
    """How an export is written for its reader. The defaults are the machine form: the columns' keys, UTC
    in ISO 8601, codes as stored, commas. `headers`: one per COLUMNS; `statuses`, `directions`, `surveys`: a
    CRM status's, a call direction's, a survey state's label (a code without one stays as stored); `zone`: an
    IANA time zone; `csv_time`: a strftime format; `xlsx_time`: an Excel number format; `sheet`: the XLSX
    sheet's name."""
    headers: tuple[str, ...] = COLUMNS
    statuses: Mapping[str, str] = field(default_factory=dict)
    directions: Mapping[str, str] = field(default_factory=dict)
    surveys: Mapping[str, str] = field(default_factory=dict)
    zone: str = "UTC"
    csv_time: str = "%Y-%m-%dT%H:%M:%SZ"
    xlsx_time: str = "yyyy-mm-dd hh:mm:ss"
    separator: Separator = Separator.COMMA
    bom: bool = False
    sheet: str = "calls"

    def __post_init__(self):
        if len(self.headers) != len(COLUMNS):
            raise ValueError(f"an export has {len(COLUMNS)} columns, not {len(self.headers)}")

    def widths(self) -> list[float]:
        return [max(TYPICAL_WIDTHS[c], len(h)) + 2 for c, h in zip(COLUMNS, self.headers)]


# Building a page's calls is pure Python (the ORM), and the webhook's threads share the interpreter with it:
# exports running at once take turns page by page, so they never hold more than one thread's share.
_PAGES = threading.Lock()


def _page(db: Database, flt: CallFilter, after: Cursor | None, sort: Sort) -> CallPage:
    """One page in one short read. Its calls come out detached with all that `call_json` reads loaded."""
    with _PAGES, db.reading() as session:
        return find_calls(session, flt, per_page=PAGE, after=after, count=False, sort=sort)


def call_rows(db: Database, flt: CallFilter, sort: Sort = Sort.NEWEST, *, pace: float | None = None) -> Iterator[tuple]:
    """One row per call, in the list's order, with the columns of COLUMNS (started_at: a datetime in UTC);
    one short read per page.
    `pace` (PACE unless given): how long it rests after each page, as a multiple of the CPU time its thread
    spent on the page; 0 in a child process of its own (`connector.console.offload`), which shares no interpreter."""
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
            yield (c["call_id"], call.created_at, c["direction"], c["operator"], c["line_number"],
                   c["customer_phone"], c["talk_seconds"], c["survey"], c["customer_score"], c["supervisor_score"],
                   c["decision"]["tag"],
                   "; ".join(f"{r['by']}: {r['score']}" + (f" ({r['comment']})" if r["comment"] else "")
                             for r in c["reviews"]),
                   crm["status"], f"{crm['entity_type']}/{crm['entity_id']}" if crm["entity_id"] else None)
        if page.next_cursor is None:
            return
        after = page.next_cursor  # the page's calls are dropped with it: memory stays flat


FORMATS = {"csv": "text/csv", "xlsx": xlsx.MIME}  # what an export can be written as: its media type


def export_file(db: Database, fmt: str, flt: CallFilter, sort: Sort = Sort.NEWEST, layout: Layout = Layout(), *,
                pace: float | None = None) -> Iterator[bytes]:
    """The export's file, chunk by chunk as its pages are read (CSV: UTF-8; XLSX: `connector.console.xlsx`), header
    row first, written as `layout` says; every cell through the rules of `connector.console.cells`."""
    rows = _laid_out(call_rows(db, flt, sort, pace=pace), layout)
    if fmt == "xlsx":
        yield from xlsx.stream([xlsx.Sheet(layout.sheet, _with_header(layout.headers, rows), layout.widths(),
                                           header=True)], date_format=layout.xlsx_time)
        return
    if fmt != "csv":
        raise ValueError(f"no such export format: {fmt}")
    out = io.StringIO()
    if layout.bom:
        out.write("\ufeff")  # how Excel knows the file is UTF-8
    writer = csv.writer(out, delimiter=layout.separator.value)
    writer.writerow(csv_row(layout.headers))
    for row in rows:
        if row[STARTED_AT] is not None:
            row[STARTED_AT] = row[STARTED_AT].strftime(layout.csv_time)
        writer.writerow(csv_row(row))  # no control characters, no formulas
        if out.tell() > 64_000:
            yield out.getvalue().encode()
            out.seek(0)
            out.truncate()
    yield out.getvalue().encode()


def _laid_out(rows: Iterator[tuple], layout: Layout) -> Iterator[list]:
    """The rows with the start as the wall-clock time in the layout's zone, to the second, and the direction,
    the survey and the CRM status named as the layout says."""
    zone = ZoneInfo(layout.zone)
    for row in rows:
        row = list(row)
        moment = row[STARTED_AT]
        if moment is not None:
            if moment.tzinfo is None:  # SQLite gives back what was stored in UTC without its offset
                moment = moment.replace(tzinfo=timezone.utc)
            row[STARTED_AT] = moment.astimezone(zone).replace(tzinfo=None, microsecond=0)
        for column, names in ((CRM_STATUS, layout.statuses), (DIRECTION, layout.directions),
                              (SURVEY, layout.surveys)):
            row[column] = names.get(row[column], row[column])
        yield row


def _with_header(header: tuple[str, ...], rows: Iterator) -> Iterator:
    yield header
    yield from rows
