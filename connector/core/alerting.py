"""Who hears of a call that needs a person, by which channel, and when: the alerts' rules as pure functions
(issue #20). The delivery of each alert (e-mail, Telegram) is an effect like any other; these only decide.

- A **trigger** is what calls for a person: a customer score below the threshold in force (the score carries a
  tag), a supervisor score below its own setting, or a divergence (the customer's and the supervisor's scores
  far apart).
- **Routing** sends it to the supervisors (and admins) whose routes match the call: a route names a line, an
  operator group, both or neither (everything). An operator is never routed anything: an alert names another
  person's call.
- Each person picks their **channels** and may mute one until a time; a channel the messenger refused (a chat
  that blocked the bot) is off until the person links it again.
- **Quiet hours** (local, possibly over midnight) and a **cap per hour** hold alerts back; what is held goes out
  as one digest when they end.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo


class Trigger(enum.StrEnum):
    LOW_SCORE = "low_score"  # a customer score below the threshold in force
    SUPERVISOR_LOW = "supervisor_low"  # a supervisor score below its own setting
    DIVERGENCE = "divergence"  # the customer's and the supervisor's scores far apart


class Channel(enum.StrEnum):
    EMAIL = "email"
    TELEGRAM = "telegram"


ROUTABLE_ROLES = ("admin", "supervisor")  # connector.core.models.Role values that may receive alerts


@dataclass(frozen=True)
class Route:
    """One supervisor's interest: the calls of `line` (None: any) whose operator is in `group` (None: any)."""

    user_id: int
    line: str | None = None
    group: str | None = None

    def matches(self, line: str | None, groups: tuple[str, ...]) -> bool:
        return (self.line is None or self.line == line) and (self.group is None or self.group in groups)


@dataclass(frozen=True)
class ChannelState:
    enabled: bool = True
    muted_until: datetime | None = None
    refused: str | None = None  # why the messenger refused it (a chat that blocked the bot); off until relinked

    def open(self, now: datetime) -> bool:
        return self.enabled and self.refused is None and (self.muted_until is None or self.muted_until <= now)


@dataclass(frozen=True)
class Person:
    user_id: int
    role: str
    channels: dict = field(default_factory=dict)  # Channel -> ChannelState; a channel not set up is absent


@dataclass(frozen=True)
class Thresholds:
    supervisor_below: int | None = None  # a supervisor score below this triggers; None: never
    divergence: int | None = None  # |customer - supervisor| at least this triggers; None: never


def triggers(*, customer_tagged: bool, customer_score: int | None, supervisor_score: int | None,
             thresholds: Thresholds) -> tuple[Trigger, ...]:
    """What a call's scores in force call for, in a fixed order."""
    found = []
    if customer_tagged:
        found.append(Trigger.LOW_SCORE)
    if supervisor_score is not None and thresholds.supervisor_below is not None \
            and supervisor_score < thresholds.supervisor_below:
        found.append(Trigger.SUPERVISOR_LOW)
    if None not in (customer_score, supervisor_score, thresholds.divergence) \
            and abs(customer_score - supervisor_score) >= thresholds.divergence:
        found.append(Trigger.DIVERGENCE)
    return tuple(found)


def recipients(routes: list[Route], people: dict[int, Person], line: str | None,
               groups: tuple[str, ...]) -> tuple[int, ...]:
    """The users a call's alert goes to: a matching route, and a role that may receive alerts."""
    chosen = {r.user_id for r in routes if r.matches(line, groups)}
    return tuple(sorted(u for u in chosen if u in people and people[u].role in ROUTABLE_ROLES))


def open_channels(person: Person, now: datetime) -> tuple[Channel, ...]:
    return tuple(c for c in Channel if c in person.channels and person.channels[c].open(now))


@dataclass(frozen=True)
class QuietHours:
    """Local hours alerts wait through, [start, end); start > end runs over midnight (22 -> 8); equal: none."""

    start: int = 0
    end: int = 0

    def holds(self, moment: datetime, zone: ZoneInfo) -> bool:
        hour = moment.astimezone(zone).hour
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= hour < self.end
        return hour >= self.start or hour < self.end

    def ends(self, moment: datetime, zone: ZoneInfo) -> datetime:
        """When the quiet hours holding `moment` end (the moment itself when none hold)."""
        if not self.holds(moment, zone):
            return moment
        local = moment.astimezone(zone)
        day = local.date() if local.hour < self.end else local.date() + timedelta(days=1)
        return datetime.combine(day, time(self.end), zone)


def held_by_cap(sent_last_hour: int, cap: int) -> bool:
    """Whether one more alert to a person this hour is over the cap (0: no cap): it then joins the digest."""
    return cap > 0 and sent_last_hour >= cap
