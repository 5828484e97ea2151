"""The digests: what quiet hours or the hourly cap held, gathered into one message per person and channel once
their wait is over, and queued in the outbox as that channel's `digest` job.

Exactly once with any number of workers: the held alerts are taken under row locks (skipped by another worker
on PostgreSQL), move to `digested` in the transaction that queues the job, and the job's key names the first
alert it carries (`<call>:digest:<person>:<alert id>`), so a second digest of the same alerts cannot be queued.
A worker killed before the commit leaves them held for the next round; after it, the outbox sends the job.
"""
from __future__ import annotations

import logging
import threading
from datetime import datetime, timezone
from itertools import groupby

from sqlalchemy import select
from sqlalchemy.orm import Session

from connector.core.db import Database
from connector.core.loop import run_until_stopped
from connector.core.models import Alert, AlertStatus, Call
from connector.delivery import outbox
from connector.delivery.alerts.planning import DIGEST, queue_messages

log = logging.getLogger(__name__)
BATCH = 500


class DigestPlanner:
    def __init__(self, db: Database, *, poll_seconds: float = 5.0, clock=lambda: datetime.now(timezone.utc)):
        self.db, self.poll_seconds, self.clock = db, poll_seconds, clock

    def run(self, stop: threading.Event) -> None:
        run_until_stopped("alert digests", self.run_once, stop, self.poll_seconds)

    def run_once(self) -> int:
        """Queue the digests that are due; how many alerts they carry."""
        with self.db.transaction() as s:
            return gather(s, self.clock(), skip_locked=self.db.is_postgres)


def gather(session: Session, now: datetime, *, skip_locked: bool = False) -> int:
    due = session.execute(select(Alert.call_row).where(Alert.status == AlertStatus.HELD, Alert.held_until <= now)
                          .limit(BATCH)).scalars().all()
    if not due:
        return 0
    outbox.lock_calls(session, list(due))  # the outbox's lock order: the calls first
    held = (select(Alert).where(Alert.status == AlertStatus.HELD, Alert.held_until <= now,
                                Alert.call_row.in_(set(due)))
            .order_by(Alert.user_id, Alert.channel, Alert.id)
            .with_for_update(**({"skip_locked": True} if skip_locked else {})))
    alerts = list(session.scalars(held))
    calls = {c.id: c for c in session.scalars(select(Call).where(Call.id.in_({a.call_row for a in alerts})))}
    messages = []
    for (user_id, channel), group in groupby(alerts, key=lambda a: (a.user_id, a.channel)):
        group = list(group)
        first = calls[group[0].call_row]
        suffix = f"{user_id}:{group[0].id}"
        key = outbox.job_key(first.entry_id, DIGEST, suffix)
        for alert in group:
            alert.status, alert.job_key = AlertStatus.DIGESTED, key
        messages.append((first, channel, DIGEST, suffix))
        log.info("digest of %d alert(s) for user %s by %s queued", len(group), user_id, channel)
    if messages:
        queue_messages(session, messages)
    return len(alerts)


def held_for(session: Session, user_id: int) -> dict[str, tuple[int, datetime]]:
    """What waits for a person's digest, by channel: how many calls, and when the first digest goes."""
    from sqlalchemy import func

    rows = session.execute(select(Alert.channel, func.count(func.distinct(Alert.call_row)), func.min(Alert.held_until))
                           .where(Alert.user_id == user_id, Alert.status == AlertStatus.HELD)
                           .group_by(Alert.channel))
    return {channel: (count, until) for channel, count, until in rows}
