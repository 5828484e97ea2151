"""Calls as rows for a spreadsheet: the same filters and role rules as the list, read page by page
(keyset), so an export of a huge date range never holds more than one page of calls."""
from __future__ import annotations

from typing import Iterator

from sqlalchemy.orm import Session

from connector.calls import CallFilter, Cursor, Sort, call_json, find_calls

PAGE = 500
COLUMNS = ("call_id", "started_at", "direction", "operator", "line_number", "customer_phone", "talk_seconds",
           "survey", "customer_score", "supervisor_score", "tag", "reviews", "crm_status", "crm_entity")


def call_rows(session: Session, flt: CallFilter, sort: Sort = Sort.NEWEST) -> Iterator[tuple]:
    """One row per call, in the list's order, with the columns of COLUMNS."""
    after: Cursor | None = None
    while True:
        page = find_calls(session, flt, per_page=PAGE, after=after, count=False, sort=sort)
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
        after = page.next_cursor
        session.expunge_all()  # the page is written out: keep memory flat
