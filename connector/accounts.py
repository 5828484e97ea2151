"""State of a remote account (a CRM, or the PBX's command API) shared by every process,
kept in one database row: the global rate limit lives here."""
from __future__ import annotations

import time

from sqlalchemy import select
from sqlalchemy.orm import Session

from connector.db import Database, get_or_create
from connector.metrics import LIMITER_WAIT
from connector.models import CrmAccount


def account_row(session: Session, crm: str, *, lock: bool = False) -> CrmAccount:
    query = select(CrmAccount).where(CrmAccount.crm == crm)
    if lock:
        query = query.with_for_update()
    return get_or_create(session, query, lambda: CrmAccount(crm=crm, paused=False, next_request_at=0.0))


class SharedRateLimiter:
    """Spaces requests evenly across every process, through one row.

    A short transaction reserves the next slot; the caller then sleeps until it.
    Slots are 7 % wider than 1/rate for a limit counted in whole seconds: requests reach the CRM with up
    to ~75 ms of network jitter, and even spacing with no margin would let 8 land inside one second.
    A leaky bucket (Bitrix24's) absorbs jitter in its queue, so it is spaced at its drain rate
    (`headroom=1`).
    A 429's Retry-After pushes the slot for everyone (`hold`); a caller that woke up late for its slot
    pushes the next one, or takes a fresh one when another process reserved after it meanwhile.
    """

    HEADROOM = 0.93
    LATE = 0.01  # seconds past its slot that a caller counts as late

    def __init__(self, db: Database, crm: str, rate: float, *, headroom: float = HEADROOM, sleep=time.sleep,
                 clock=time.time):
        self.db, self.crm = db, crm
        self.interval = 1.0 / (rate * headroom)
        self.sleep, self.clock = sleep, clock

    def reserve(self) -> tuple[float, float]:
        """Take the next free slot; returns (slot, now)."""
        with self.db.transaction() as s:
            row = account_row(s, self.crm, lock=True)
            now = self.clock()
            slot = max(now, row.next_request_at or 0.0)
            row.next_request_at = slot + self.interval
        return slot, now

    def wait_turn(self) -> None:
        slot, now = self.reserve()
        LIMITER_WAIT.labels(self.crm).observe(max(0.0, slot - now))
        if slot <= now:
            return
        self.sleep(slot - now)
        if self.clock() - slot <= self.LATE:
            return
        # Woken late (a busy process). If another caller reserved a slot after ours meanwhile, it may be due
        # now, and going at once would reach the CRM closer to it than the limit allows: take a fresh slot,
        # after every reserved one. If nobody did, go now and keep the next request a slot away.
        with self.db.transaction() as s:
            row = account_row(s, self.crm, lock=True)
            now = self.clock()
            reserved_after_ours = (row.next_request_at or 0.0) > slot + self.interval + 1e-6
            fresh = max(now, row.next_request_at or 0.0) if reserved_after_ours else now
            row.next_request_at = max(row.next_request_at or 0.0, fresh + self.interval)
        if fresh > now:
            self.sleep(fresh - now)

    def hold(self, seconds: float) -> None:
        with self.db.transaction() as s:
            row = account_row(s, self.crm, lock=True)
            row.next_request_at = max(row.next_request_at or 0.0, self.clock() + seconds)
