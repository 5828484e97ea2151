"""Which CRM user each PBX operator is, per CRM target: the extension -> user maps the deliveries name the
responsible user by, edited whole from the settings page (the API edits the same maps, with the same audit).

The rows are the PBX's operators (the directory), the extensions seen in calls that the directory does not
know, and any extension already mapped: a save replaces a map whole, so an extension nobody sees any more
keeps its mapping unless the admin clears it.
"""
from __future__ import annotations

import enum
import time
from dataclasses import dataclass
from typing import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from connector.core.models import Call, Operator
from connector.core.runtime_settings import current_user_map, update_user_map, user_map_scope
from connector.delivery.contract import AccountBlocked, CrmError, CrmUser, TransientError



@dataclass(frozen=True)
class OperatorRow:
    extension: str
    name: str  # the directory's name; "" for an extension only seen in calls or in a map
    in_directory: bool


class Unreadable(enum.Enum):
    """Why a CRM's users could not be read."""

    UNAVAILABLE = "unavailable"  # no answer, a 5xx, its rate limit: worth trying again later
    REFUSED = "refused"  # the CRM refused the connector (token, rights, a blocked or unpaid account)


@dataclass(frozen=True)
class UsersRead:
    users: tuple[CrmUser, ...]


@dataclass(frozen=True)
class UsersUnreadable:
    why: Unreadable
    detail: str  # the CRM's own words, for the admin who asks


UsersOutcome = UsersRead | UsersUnreadable


def operator_rows(session: Session, maps: dict[str, dict[str, int]]) -> list[OperatorRow]:
    """One row per extension: the directory's, then those only seen in calls or maps, by extension."""
    rows = {ext: OperatorRow(ext, name or "", True)
            for ext, name in session.execute(select(Operator.extension, Operator.name))}
    seen = session.scalars(select(Call.operator_extension).where(Call.operator_extension.is_not(None))
                           .where(Call.operator_extension != "").distinct())
    for extension in [*seen, *(ext for m in maps.values() for ext in m)]:
        rows.setdefault(extension, OperatorRow(extension, "", False))
    return sorted(rows.values(), key=lambda r: (len(r.extension), r.extension))


def current_maps(session: Session, initial: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """Each target's map in force (`initial`: target -> the environment's map)."""
    return {target: current_user_map(session, start, user_map_scope(target)) for target, start in initial.items()}


def save_maps(session: Session, initial: dict[str, dict[str, int]], posted: dict[str, dict[str, int | None]],
              actor: str) -> dict[str, dict[str, int]]:
    """Apply the posted rows (extension -> user id, None to unmap) to each target's map; extensions not posted
    keep theirs. Audited as the API's change is (raises PolicyError when a value is out of range)."""
    saved = {}
    for target, rows in posted.items():
        scope = user_map_scope(target)
        new_map = dict(current_user_map(session, initial[target], scope))
        for extension, user_id in rows.items():
            if user_id is None:
                new_map.pop(extension, None)
            else:
                new_map[extension] = user_id
        saved[target] = update_user_map(session, initial[target], new_map, actor=actor, scope=scope)
    return saved


class UserLists:
    """Each CRM's users as last read, kept a minute: the settings page is opened and posted back in a row,
    and every read spends the target's rate limit. A failure is kept as long, so a CRM that hangs slows one
    page, not each."""

    TTL = 60.0

    def __init__(self, readers: dict[str, Callable[[], list[CrmUser]]], clock=time.monotonic):
        self.readers, self.clock = readers, clock
        self._kept: dict[str, tuple[float, UsersOutcome]] = {}

    def read(self, target: str) -> UsersOutcome:
        kept = self._kept.get(target)
        if kept is not None and self.clock() - kept[0] < self.TTL:
            return kept[1]
        outcome = self._read(target)
        self._kept[target] = (self.clock(), outcome)
        return outcome

    def forget(self) -> None:
        self._kept.clear()

    def _read(self, target: str) -> UsersOutcome:
        try:
            users = self.readers[target]()
        except TransientError as exc:
            return UsersUnreadable(Unreadable.UNAVAILABLE, exc.message)
        except (AccountBlocked, CrmError) as exc:  # refused: a token, rights, or the account itself
            return UsersUnreadable(Unreadable.REFUSED, exc.message)
        active_first = sorted(users, key=lambda u: (not u.active, u.name.casefold(), u.id))
        return UsersRead(tuple(active_first))
