"""The account's time zone: the one the console shows times in, reads its date filters' days in, counts the
reports' days in and writes the exports' times in; the command line reads `--at` / `--until` in it too.

An admin chooses it on the settings page (or through the settings API); until then CONSOLE_TIMEZONE (Moscow
unless set) is in force. `zone_in_force` decides, and everything asks it. The JSON API keeps UTC."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from zoneinfo import ZoneInfo, available_timezones

from sqlalchemy.orm import Session

from connector.core.policy import PolicyError
from connector.core.runtime_settings import account_settings, update_account_settings
from connector.core.secrets import Source

FIELD = "time_zone"  # its key in the account scope and in the settings API

# The zones people here pick, west to east: every Russian zone, then the capitals of the CIS, then UTC.
RUSSIA = ("Europe/Kaliningrad", "Europe/Moscow", "Europe/Samara", "Asia/Yekaterinburg", "Asia/Omsk",
          "Asia/Novosibirsk", "Asia/Krasnoyarsk", "Asia/Irkutsk", "Asia/Yakutsk", "Asia/Vladivostok",
          "Asia/Magadan", "Asia/Kamchatka")
CIS = ("Europe/Chisinau", "Europe/Minsk", "Asia/Yerevan", "Asia/Baku", "Asia/Tashkent", "Asia/Dushanbe",
       "Asia/Ashgabat", "Asia/Almaty", "Asia/Bishkek")
OTHER = ("UTC",)

# Files in the zone database that are not zones people live in.
NOT_ZONES = frozenset({"Factory", "localtime", "posixrules"})
MAX_NAME = 64


@lru_cache(maxsize=1)
def known_zones() -> frozenset[str]:
    """Every zone name the zone database knows (read once per process): the only values accepted."""
    return frozenset(available_timezones()) - NOT_ZONES


def zone_problem(name: object) -> str | None:
    """Why `name` is not a time zone the account can use (None when it is): an IANA name such as
    Europe/Moscow, as the zone database spells it."""
    if not isinstance(name, str) or not name or len(name) > MAX_NAME or name not in known_zones():
        shown = repr(name)[:MAX_NAME + 10]
        return f"expected an IANA time zone name such as Europe/Moscow or Asia/Yekaterinburg, got {shown}"
    return None


class TimeZoneError(PolicyError):
    """A time zone that is not one: said beside the field (the console) or as a 422 (the API)."""

    def __init__(self, problem: str):
        super().__init__(FIELD, problem)


@dataclass(frozen=True)
class ZoneInForce:
    name: str  # an IANA name
    source: Source  # CONSOLE once an admin chose it, else ENVIRONMENT (CONSOLE_TIMEZONE)
    saved_at: datetime | None = None  # when an admin chose it

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.name)


def zone_in_force(session: Session, default: str) -> ZoneInForce:
    """The account's zone: the one an admin chose, else `default` (CONSOLE_TIMEZONE, checked at start).
    One small query. A stored name the zone database no longer knows is passed over, never a failing page."""
    values, saved_at = account_settings(session)
    chosen = values.get(FIELD)
    if chosen is not None and zone_problem(chosen) is None:
        return ZoneInForce(chosen, Source.CONSOLE, saved_at)
    return ZoneInForce(default, Source.ENVIRONMENT)


def update_time_zone(session: Session, name: object, actor: str) -> str:
    """Choose the account's zone (raises TimeZoneError, nothing stored); audited when it changes."""
    problem = zone_problem(name)
    if problem:
        raise TimeZoneError(problem)
    update_account_settings(session, {FIELD: name}, actor=actor)
    return name


def choices(current: str) -> dict[str, tuple[str, ...]]:
    """The zones offered, in groups; the zone in force among them even when it is none of these."""
    offered = {"russia": RUSSIA, "cis": CIS, "other": OTHER}
    if current not in RUSSIA + CIS + OTHER:
        offered["other"] = (*OTHER, current)
    return offered
