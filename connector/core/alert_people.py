"""The alerts' people as the rules read them (`connector.core.alerting`): the routes and each person's channels,
two queries for every call of a batch, and who a call's alert goes to."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from connector.core.alerting import Channel, ChannelState, Person, Route, recipients
from connector.core.models import AlertChannel, AlertRoute, Operator, User


def routes(session: Session) -> list[Route]:
    return [Route(user_id, line or None, group or None) for user_id, line, group in session.execute(
        select(AlertRoute.user_id, AlertRoute.line_number, AlertRoute.operator_group).order_by(AlertRoute.id))]


def people(session: Session) -> dict[int, Person]:
    """Every enabled user with the channels they can be reached on: e-mail once they have an address, Telegram
    once they linked a chat; a channel's row, when there is one, says whether it is on, muted or refused."""
    rows = {(r.user_id, Channel(r.channel)): r for r in session.scalars(select(AlertChannel))}
    found = {}
    for user in session.scalars(select(User).where(User.disabled.is_(False))):
        channels = {}
        for channel in Channel:
            row = rows.get((user.id, channel))
            reachable = bool(user.email) if channel == Channel.EMAIL else bool(row is not None and row.address)
            if reachable:
                channels[channel] = ChannelState(row.enabled, row.muted_until, row.refused) if row else ChannelState()
        found[user.id] = Person(user.id, user.role, channels)
    return found


def call_recipients(session: Session, line: str | None, operator_extension: str | None) -> tuple[int, ...]:
    """The supervisors a call's alert goes to: by its line and its operator's groups (the PBX's directory)."""
    operator = session.get(Operator, operator_extension) if operator_extension else None
    groups = tuple(str(g) for g in (operator.groups if operator else []) or [])
    return recipients(routes(session), people(session), line, groups)



def address(session: Session, user_id: int, channel: Channel) -> str | None:
    """Where a person's channel sends: their e-mail address, or the Telegram chat they linked."""
    if channel == Channel.EMAIL:
        return session.scalar(select(User.email).where(User.id == user_id)) or None
    return session.scalar(select(AlertChannel.address).where(
        AlertChannel.user_id == user_id, AlertChannel.channel == channel.value)) or None


def refuse(session: Session, user_id: int, channel: Channel, reason: str) -> None:
    """The messenger refused a person's address (a chat that blocked the bot): the channel is off, and the
    console says why, until the person links it again."""
    row = session.get(AlertChannel, (user_id, channel.value), with_for_update=True)
    if row is None:
        row = AlertChannel(user_id=user_id, channel=channel.value, enabled=True)
        session.add(row)
    row.refused = reason[:255]
