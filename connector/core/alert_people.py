"""The alerts' people as the rules read them (`connector.core.alerting`): the routes and each person's channels,
two queries for every call of a batch, and who a call's alert goes to; and the changes people make to them (an
admin's routes, a person's own address, channels and mute), audited."""
from __future__ import annotations

import re
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from connector.core.alerting import ROUTABLE_ROLES, Channel, ChannelState, Person, Route, recipients
from connector.core.models import AlertChannel, AlertRoute, Operator, SettingsAudit, User
from connector.core.users import USER_SCOPE
from connector.core.validation import text_problem

ROUTES_SCOPE = "alert_routes"  # the audit's scope of the routes
# An address as people type it: something, @, a domain with a dot; no spaces, at most 254 (RFC 5321 §4.5.3.1.3).
EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s.]+(\.[^@\s.]+)+")
GROUP = re.compile(r"[0-9A-Za-z_-]{1,64}")  # the PBX's operator group id, as its directory lists it
LINE = re.compile(r"[^\x00-\x1f\x7f]{1,32}")


class AlertPeopleError(ValueError):
    """A change to the alerts' people was refused; the message says why, in one line."""


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
    channel_row(session, user_id, channel, lock=True).refused = reason[:255]


# --- changes ------------------------------------------------------------------------------------

def _user(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None or user.disabled:
        raise AlertPeopleError("no such user")
    return user


def _audit(session: Session, scope: str, actor: str, before: dict, after: dict) -> None:
    if before != after:
        session.add(SettingsAudit(scope=scope, actor=actor, before=before, after=after))


def set_email(session: Session, user_id: int, email: str, *, actor: str) -> None:
    """A person's alert address ('' removes it: no e-mail alerts)."""
    email = (email or "").strip()
    # text_problem: a NUL is refused by PostgreSQL (a 500 before), a control character never belongs in a header.
    if email and (len(email) > 254 or not EMAIL.fullmatch(email) or text_problem(email)):
        raise AlertPeopleError("an e-mail address such as name@example.ru")
    user = _user(session, user_id)
    _audit(session, USER_SCOPE + user.username, actor, {"email": user.email or ""}, {"email": email})
    user.email = email or None


def channel_row(session: Session, user_id: int, channel: Channel, *, lock: bool = False) -> AlertChannel:
    row = session.get(AlertChannel, (user_id, channel.value), with_for_update=lock or None)
    if row is None:
        row = AlertChannel(user_id=user_id, channel=channel.value, enabled=True)
        session.add(row)
    return row


def set_channel(session: Session, user_id: int, channel: Channel, *, enabled: bool,
                muted_until: datetime | None) -> None:
    """A person turns a channel on or off, or mutes it until a time (None: not muted)."""
    _user(session, user_id)
    row = channel_row(session, user_id, channel, lock=True)
    row.enabled, row.muted_until = enabled, muted_until


def unlink(session: Session, user_id: int, channel: Channel) -> None:
    """Forget a person's linked chat (they link again to get alerts there)."""
    row = channel_row(session, user_id, channel, lock=True)
    row.address = row.refused = row.link_code_hash = row.link_code_until = None


def add_route(session: Session, user_id: int, line: str, group: str, *, actor: str) -> AlertRoute:
    """An admin routes a line's (and/or an operator group's) alerts to a supervisor or an admin; both empty: all."""
    line, group = (line or "").strip(), (group or "").strip()
    user = _user(session, user_id)
    if user.role not in ROUTABLE_ROLES:
        raise AlertPeopleError("alerts go to supervisors and admins only: an operator never hears of others' calls")
    if line and (not LINE.fullmatch(line) or text_problem(line)):
        raise AlertPeopleError("a line is the PBX number, at most 32 characters")
    if group and not GROUP.fullmatch(group):
        raise AlertPeopleError("an operator group is the PBX's group id: letters, digits, - and _")
    existing = session.scalars(select(AlertRoute).where(
        AlertRoute.user_id == user_id, AlertRoute.line_number == line, AlertRoute.operator_group == group)).first()
    if existing is not None:
        return existing
    route = AlertRoute(user_id=user_id, line_number=line, operator_group=group)
    session.add(route)
    _audit(session, ROUTES_SCOPE, actor, {}, {"user": user.username, "line": line, "group": group})
    return route


def remove_route(session: Session, route_id: int, *, actor: str) -> bool:
    route = session.get(AlertRoute, route_id)
    if route is None:
        return False
    user = session.get(User, route.user_id)
    _audit(session, ROUTES_SCOPE, actor, {"user": user.username if user else str(route.user_id),
                                          "line": route.line_number, "group": route.operator_group}, {})
    session.delete(route)
    return True


def route_list(session: Session) -> list[tuple[AlertRoute, User]]:
    """Every route with its person, by person then line."""
    return list(session.execute(select(AlertRoute, User).join(User, User.id == AlertRoute.user_id)
                                .order_by(User.username, AlertRoute.line_number, AlertRoute.operator_group)).tuples())
