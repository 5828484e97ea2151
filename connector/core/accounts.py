"""State of a remote account (a target, or the PBX's command API) shared by every process, kept in one
database row: the global rate limit, the pause switch, and the key its stored secrets are encrypted with
(the OAuth refresh itself is `connector.delivery.oauth`). A kit keeps what only it knows about its account
in its own table, read and written through `own_row`."""
from __future__ import annotations

import base64
import hashlib
import logging
import time
from datetime import datetime, timezone
from typing import TypeVar

from cryptography.fernet import Fernet
from sqlalchemy import select
from sqlalchemy.orm import Session

from connector.core.db import Database, get_or_create
from connector.core.metrics import LIMITER_WAIT
from connector.core.models import Account

log = logging.getLogger(__name__)
M = TypeVar("M")


def account_row(session: Session, name: str, *, lock: bool = False) -> Account:
    query = select(Account).where(Account.name == name)
    if lock:
        query = query.with_for_update()
    return get_or_create(session, query, lambda: Account(name=name, paused=False, next_request_at=0.0))


def own_row(session: Session, model: type[M], name: str, *, lock: bool = False, **fresh) -> M:
    """A kit's own row about the account `name` (its table's key `account`), made with `fresh` on first use.

    Whoever locks both locks the account row first (`account_row`), then its own: one order, no deadlock.
    """
    query = select(model).where(model.account == name)
    if lock:
        query = query.with_for_update()
    return get_or_create(session, query, lambda: model(account=name, **fresh))


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

    def __init__(self, db: Database, account: str, rate: float, *, headroom: float = HEADROOM, sleep=time.sleep,
                 clock=time.time):
        self.db, self.account = db, account
        self.interval = 1.0 / (rate * headroom)
        self.sleep, self.clock = sleep, clock

    def reserve(self) -> tuple[float, float]:
        """Take the next free slot; returns (slot, now)."""
        with self.db.transaction() as s:
            row = account_row(s, self.account, lock=True)
            now = self.clock()
            slot = max(now, row.next_request_at or 0.0)
            row.next_request_at = slot + self.interval
        return slot, now

    def wait_turn(self) -> None:
        slot, now = self.reserve()
        LIMITER_WAIT.labels(self.account).observe(max(0.0, slot - now))
        if slot <= now:
            return
        self.sleep(slot - now)
        if self.clock() - slot <= self.LATE:
            return
        # Woken late (a busy process). If another caller reserved a slot after ours meanwhile, it may be due
        # now, and going at once would reach the CRM closer to it than the limit allows: take a fresh slot,
        # after every reserved one. If nobody did, go now and keep the next request a slot away.
        with self.db.transaction() as s:
            row = account_row(s, self.account, lock=True)
            now = self.clock()
            reserved_after_ours = (row.next_request_at or 0.0) > slot + self.interval + 1e-6
            fresh = max(now, row.next_request_at or 0.0) if reserved_after_ours else now
            row.next_request_at = max(row.next_request_at or 0.0, fresh + self.interval)
        if fresh > now:
            self.sleep(fresh - now)

    def hold(self, seconds: float) -> None:
        with self.db.transaction() as s:
            row = account_row(s, self.account, lock=True)
            row.next_request_at = max(row.next_request_at or 0.0, self.clock() + seconds)


def token_cipher(secret_key: str) -> Fernet:
    """Tokens at rest are encrypted with a key derived from SECRET_KEY."""
    digest = hashlib.sha256(b"connector token encryption\x00" + secret_key.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


# --- pause ------------------------------------------------------------------

def pause(db: Database, account: str, reason: str) -> None:
    with db.transaction() as s:
        row = account_row(s, account, lock=True)
        if not row.paused:
            log.error("%s deliveries PAUSED: %s", account, reason)
        row.paused, row.paused_reason, row.paused_at = True, reason[:255], datetime.now(timezone.utc)


def resume(db: Database, account: str) -> bool:
    with db.transaction() as s:
        row = account_row(s, account, lock=True)
        was_paused = row.paused
        row.paused, row.paused_reason, row.paused_at = False, None, None
    if was_paused:
        log.warning("%s deliveries resumed", account)
    return was_paused


def pause_state(db: Database, account: str) -> tuple[bool, str | None, datetime | None]:
    with db.reading() as s:
        row = account_row(s, account)
        return row.paused, row.paused_reason, row.paused_at
