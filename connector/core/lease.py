"""Rows claimed with a lease: the one queue mechanism of the outbox (delivery jobs), quality polling (PBX polls),
the statistics scan and the operator directory (their schedule rows).

A worker claims due rows in one short transaction, locking them (SKIP LOCKED on PostgreSQL, so workers never wait
for each other; SQLite has one writer at a time) and stamping `lease_owner` and `lease_until`; it then works
outside any transaction and settles each row only while it still holds it. A worker that dies leaves its lease to
run out, and the row is due again. The inbox needs no lease: it applies its events inside the claiming
transaction, so their row locks are enough (`locked` alone).
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import ColumnElement, Select, or_
from sqlalchemy.orm import Session


class Leased(Protocol):
    lease_owner: str | None
    lease_until: datetime | None



def free(model, now: datetime) -> ColumnElement[bool]:
    """Rows nobody holds: never leased, or their lease ran out."""
    return or_(model.lease_until.is_(None), model.lease_until < now)


def locked(query: Select, *, skip_locked: bool) -> Select:
    """`query` locking its rows until the transaction ends; with `skip_locked`, those another worker locked are
    left out (PostgreSQL) instead of waited for."""
    return query.with_for_update(**({"skip_locked": True} if skip_locked else {}))


def claim_locked(session: Session, query: Select, *, skip_locked: bool) -> list:
    """The rows of `query`, locked until the transaction ends; those another worker locked are skipped."""
    return list(session.scalars(locked(query, skip_locked=skip_locked)))


def claim(session: Session, query: Select, owner: str, now: datetime, seconds: float, *,
          skip_locked: bool) -> list:
    """Lock the due rows of `query` (which filters on `free(...)` and limits) and lease them to `owner`."""
    rows = claim_locked(session, query, skip_locked=skip_locked)
    for row in rows:
        row.lease_owner, row.lease_until = owner, now + timedelta(seconds=seconds)
    return rows


def holds(row: Leased | None, owner: str) -> bool:
    """Whether `owner` still holds the row: it was not settled or taken over after the lease ran out."""
    return row is not None and row.lease_owner == owner


def release(row: Leased) -> None:
    row.lease_owner = row.lease_until = None
