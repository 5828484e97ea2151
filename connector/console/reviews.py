"""Supervisor reviews of calls; the call's operator is notified.

A review is a supervisor score (origin `review`) with its author: the newest supervisor score is the
call's `supervisor_score`, over the mean of the PBX form's marks; the customer's score is never touched.
Targets that take supervisor scores (the outbound webhook) get it; amoCRM's tag and text are the customer's.
"""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy.orm import Session

from connector.core.calls import REVIEW
from connector.core.models import Call, NotificationKind, Score
from connector.core.notifications import notify
from connector.core.policy import parse_score
from connector.core.runtime_settings import current_policies
from connector.core.users import Principal, users_to_notify
from connector.inbound.ingest import IngestContext, add_supervisor_score, refresh_crm



def add_review(session: Session, ctx: IngestContext, call: Call, author: Principal, score: int,
               comment: str | None) -> Score:
    """Raises ValueError (the reason) for a score outside the call's scale; then nothing is written."""
    policies = current_policies(session, ctx.initial_policy)
    policy = policies.for_line(call.line_number)
    parse_score(score, policy)
    row = add_supervisor_score(session, call, policy, score, origin=REVIEW, rated_at=datetime.now(timezone.utc),
                               comment=comment or None)
    row.author = author.username
    refresh_crm(session, ctx, call, policies)
    if call.operator_extension:
        notify(session, call, NotificationKind.REVIEW,
               users_to_notify(session, extension=call.operator_extension))
    return row
