"""What people are told: operators of reviews of their calls, supervisors of new low scores."""
from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from connector.models import Call, Notification, NotificationKind, Role
from connector.users import Principal, users_to_notify


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


def notifications_for(session: Session, principal: Principal, limit: int = 100) -> list[Notification]:
    if principal.user_id is None:
        return []  # the bootstrap token is no person
    return list(session.scalars(select(Notification).where(Notification.user_id == principal.user_id)
                                .order_by(Notification.id.desc()).limit(limit)))


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
              call: Call | None = None) -> int:
    """Mark the caller's notifications read (these ids, those of one call, or all); returns how many changed."""
    if principal.user_id is None:
        return 0
    query = update(Notification).where(Notification.user_id == principal.user_id, Notification.read.is_(False))
    if ids is not None:
        query = query.where(Notification.id.in_(ids))
    if call is not None:
        query = query.where(Notification.call_id == call.id)
    return session.execute(query.values(read=True)).rowcount
