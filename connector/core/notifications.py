"""What people are told: operators of reviews of their calls, supervisors of new low scores."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, joinedload

from connector.core.models import Call, Notification, NotificationKind, Role
from connector.core.users import Principal, users_to_notify


def notify(session: Session, call: Call, kind: NotificationKind, users) -> None:
    for user in users:
        session.add(Notification(user_id=user.id, call=call, kind=kind.value, read=False))


def notify_low_score(session: Session, call: Call) -> None:
    """Supervisors hear of a new low score (one the policy tags). They are looked up once per
    transaction: the inbox applies a whole batch of events in one."""
    if "supervisors" not in session.info:
        with session.no_autoflush:  # a flush now would split the batch's own flush in two
            session.info["supervisors"] = users_to_notify(session, role=Role.SUPERVISOR)
    notify(session, call, NotificationKind.LOW_SCORE, session.info["supervisors"])


@dataclass(frozen=True)
class NotificationPage:
    items: list[Notification]  # newest first, each with its call loaded
    older: int | None  # the `before` of the next page (older ones), None on the last
    total: int  # the caller's notifications (unread only, with `unread_only`)


def notification_page(session: Session, principal: Principal, *, before: int | None = None, per_page: int = 50,
                      unread_only: bool = False) -> NotificationPage:
    """One page of the caller's notifications, newest first, older than the id `before` (a keyset: a deep
    page costs what the first one does), with their calls in the same query."""
    if principal.user_id is None:
        return NotificationPage([], None, 0)
    mine = [Notification.user_id == principal.user_id]
    if unread_only:
        mine.append(Notification.read.is_(False))
    query = select(Notification).options(joinedload(Notification.call)).where(*mine)
    if before is not None:
        query = query.where(Notification.id < before)
    rows = list(session.scalars(query.order_by(Notification.id.desc()).limit(per_page + 1)))
    total = session.scalar(select(func.count()).select_from(Notification).where(*mine))
    more = len(rows) > per_page
    return NotificationPage(rows[:per_page], rows[per_page - 1].id if more else None, total)


def newest_notification(session: Session, principal: Principal) -> int | None:
    """The id of the caller's newest notification, None when they have none."""
    if principal.user_id is None:
        return None
    return session.scalar(select(func.max(Notification.id)).where(Notification.user_id == principal.user_id))


def unread_count(session: Session, principal: Principal, *, call: Call | None = None) -> int:
    """The caller's unread notifications (of one call, with `call`)."""
    if principal.user_id is None:
        return 0
    query = select(func.count()).select_from(Notification).where(
        Notification.user_id == principal.user_id, Notification.read.is_(False))
    if call is not None:
        query = query.where(Notification.call_id == call.id)
    return session.scalar(query)


def mark_read(session: Session, principal: Principal, ids: list[int] | None = None, *,
              call: Call | None = None, up_to: int | None = None) -> int:
    """Mark the caller's notifications read (these ids, those of one call, those up to the id `up_to`, or
    all); returns how many changed."""
    if principal.user_id is None:
        return 0
    query = update(Notification).where(Notification.user_id == principal.user_id, Notification.read.is_(False))
    if ids is not None:
        query = query.where(Notification.id.in_(ids))
    if up_to is not None:
        query = query.where(Notification.id <= up_to)
    if call is not None:
        query = query.where(Notification.call_id == call.id)
    return session.execute(query.values(read=True)).rowcount
