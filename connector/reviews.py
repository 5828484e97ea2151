"""Supervisor reviews of calls; the call's operator is notified.

A review is a supervisor score (origin `review`) with its author: the newest supervisor score is the
call's `supervisor_score`, over the mean of the PBX form's marks; the customer's score is never touched.
"""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy.orm import Session

from connector.calls import REVIEW
from connector.ingest import add_supervisor_score
from connector.models import Call, NotificationKind, Score
from connector.notifications import notify
from connector.threshold import Policy, parse_score
from connector.users import Principal, users_to_notify



def add_review(session: Session, call: Call, author: Principal, policy: Policy, score: int,
               comment: str | None) -> Score:
    """Raises ValueError (the reason) for a score outside the scale; then nothing is written."""
    parse_score(score, policy)
    row = add_supervisor_score(session, call, policy, score, origin=REVIEW, rated_at=datetime.now(timezone.utc),
                               comment=comment or None)
    row.author = author.username
    if call.operator_extension:
        notify(session, call, NotificationKind.REVIEW,
               users_to_notify(session, extension=call.operator_extension))
    return row
