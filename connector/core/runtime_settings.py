"""Runtime settings: seeded from the environment once, then edited by admins and audited."""
from __future__ import annotations

import functools
import json
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from connector.core.db import get_or_create
from connector.core.models import RuntimeSettings, SettingsAudit
from connector.core.policy import Policies, Policy, PolicyError, line_policy, policy_with_changes, validate_policy
from connector.core.validation import INT32_MAX, text_problem

GLOBAL = "global"
ACCOUNT = "account"  # the account's own settings ({"time_zone": ...}: connector.core.time_zone); never seeded
USER_MAP_SUFFIX = "_user_map"


def _row(session: Session, initial: dict, *, scope: str = GLOBAL, for_update: bool = False) -> RuntimeSettings:
    query = select(RuntimeSettings).where(RuntimeSettings.scope == scope)
    if for_update:
        query = query.with_for_update()
    # First use seeds the row from the environment.
    return get_or_create(session, query, lambda: RuntimeSettings(scope=scope, values=initial))


def current_policy(session: Session, initial: Policy) -> Policy:
    return _policy(initial, _row(session, dict(_defaults(initial))).values)


@functools.lru_cache(maxsize=8)
def _defaults(initial: Policy) -> dict:
    """The environment's policy as the settings row stores it, built once (a dataclass's asdict copies every
    field deeply). Callers never change it."""
    return initial.as_dict()


def _policy(initial: Policy, values: dict) -> Policy:
    """The policy in force: the stored values over the environment's. Every ingest batch asks, and the values
    seldom change: a policy once built and validated for the same values (as JSON, the form they are stored in)
    is handed out again; it is frozen."""
    return _policy_for(initial, json.dumps(values, sort_keys=True))


@functools.lru_cache(maxsize=64)
def _policy_for(initial: Policy, stored: str) -> Policy:
    defaults = _defaults(initial)
    merged = {**defaults, **json.loads(stored)}
    return validate_policy(Policy(**{k: v for k, v in merged.items() if k in defaults}))


def settings_versions(session: Session) -> dict[str, int]:
    """Each settings scope's version: every change bumps it, so this one small query (no JSON) tells whether
    anything read from the settings still holds."""
    return dict(session.execute(select(RuntimeSettings.scope, RuntimeSettings.version)).all())


class SettingsCache:
    """The admin's settings as this process last read them. Every change bumps its row's version,
    so one small query (scopes and versions, no JSON) tells whether the copy still holds."""

    def __init__(self, initial_policy: Policy, initial_user_map: dict[str, int], user_map_scope: str):
        self._initial_policy, self._initial_user_map = initial_policy, initial_user_map
        self._scope = user_map_scope
        self._copy: tuple[dict[str, int], Policy, dict[str, int]] | None = None

    def read(self, session: Session) -> tuple[Policy, dict[str, int]]:
        """The policy and the extension -> CRM user map in force."""
        versions = settings_versions(session)
        if self._copy is None or self._copy[0] != versions:
            # Versions are read before values: a change committed in between makes the next read
            # reload again, never keeps an old value under a new version.
            self._copy = (versions, current_policy(session, self._initial_policy),
                          current_user_map(session, self._initial_user_map, self._scope))
        return self._copy[1], self._copy[2]


LINE_PREFIX = "line:"


# Built once: constructing it cost as much as running it.
_POLICY_ROWS = (select(RuntimeSettings.scope, RuntimeSettings.values)
                .where(or_(RuntimeSettings.scope == GLOBAL, RuntimeSettings.scope.startswith(LINE_PREFIX))))


def current_policies(session: Session, initial: Policy) -> Policies:
    """The global policy with every line's override: one query, however many lines (every ingest batch asks)."""
    rows = dict(session.execute(_POLICY_ROWS).all())
    stored = rows.pop(GLOBAL, None)
    base = current_policy(session, initial) if stored is None else _policy(initial, stored)  # seeds it
    return Policies(base, {scope[len(LINE_PREFIX):]: dict(values) for scope, values in rows.items()})


def line_override(session: Session, line: str) -> dict | None:
    row = session.scalars(select(RuntimeSettings).where(RuntimeSettings.scope == LINE_PREFIX + line)).first()
    return dict(row.values) if row else None


def update_line_override(session: Session, initial: Policy, line: str, override: object, actor: str) -> dict:
    """Set a line's `enabled` / `max_threshold` / `high_scores` (raises PolicyError); audited."""
    line_policy(current_policy(session, initial), override)
    scope = LINE_PREFIX + line
    row = _row(session, {}, scope=scope, for_update=True)
    before = dict(row.values)
    if before != override:
        row.values = dict(override)
        session.add(SettingsAudit(scope=scope, actor=actor, before=before, after=dict(override)))
    return dict(override)


def delete_line_override(session: Session, line: str, actor: str) -> bool:
    """The line follows the global policy again; False when it had no override."""
    row = session.scalars(select(RuntimeSettings).where(RuntimeSettings.scope == LINE_PREFIX + line)
                          .with_for_update()).first()
    if row is None:
        return False
    session.add(SettingsAudit(scope=row.scope, actor=actor, before=dict(row.values), after={}))
    session.delete(row)
    return True


def update_policy(session: Session, initial: Policy, changes: dict, actor: str) -> Policy:
    """Validate and apply an admin's change (raises PolicyError); leaves an audit row."""
    row = _row(session, initial.as_dict(), for_update=True)
    before = current_policy(session, initial)
    after = policy_with_changes(before, changes)
    if after != before:
        row.values = after.as_dict()
        session.add(SettingsAudit(scope=GLOBAL, actor=actor, before=before.as_dict(), after=after.as_dict()))
    return after


def audit_trail(session: Session, limit: int = 50) -> list[SettingsAudit]:
    return list(session.scalars(select(SettingsAudit).order_by(SettingsAudit.id.desc()).limit(limit)))


def user_map_scope(target: str) -> str:
    """The settings scope (and the API's field) of a target's extension -> user map: `amocrm_user_map`,
    `bitrix24_user_map`."""
    return f"{target}{USER_MAP_SUFFIX}"


def current_user_map(session: Session, initial: dict[str, int], scope: str) -> dict[str, int]:
    return dict(_row(session, initial, scope=scope).values)


def update_user_map(session: Session, initial: dict[str, int], new_map: object, actor: str,
                    scope: str) -> dict[str, int]:
    """Replace an extension -> CRM user map (raises PolicyError when malformed); audited."""
    if not isinstance(new_map, dict) or not all(
            isinstance(k, str) and k.strip() and len(k) <= 32 and text_problem(k) is None
            and type(v) is int and 0 < v <= INT32_MAX for k, v in new_map.items()):
        raise PolicyError(scope, 'expected an object of "extension": user id (1 to 2147483647)')
    row = _row(session, initial, scope=scope, for_update=True)
    before = dict(row.values)
    if new_map != before:
        row.values = dict(new_map)
        session.add(SettingsAudit(scope=scope, actor=actor, before=before, after=dict(new_map)))
    return dict(new_map)


def scope_values(session: Session, scope: str) -> tuple[dict, datetime | None]:
    """A scope as an admin saved it, and when (empty and None until then). Read without creating the row:
    what was never saved falls back to its defaults (or the environment), wherever it is read."""
    row = session.execute(select(RuntimeSettings.values, RuntimeSettings.updated_at)
                          .where(RuntimeSettings.scope == scope)).first()
    return (dict(row.values), row.updated_at) if row else ({}, None)


def update_scope(session: Session, scope: str, changes: dict, actor: str) -> dict:
    """Store already validated changes of a scope; audited, and the row's version bumped, only when something
    changed."""
    row = _row(session, {}, scope=scope, for_update=True)
    before = dict(row.values)
    after = {**before, **changes}
    if after != before:
        row.values = after
        session.add(SettingsAudit(scope=scope, actor=actor, before=before, after=after))
    return after


def account_settings(session: Session) -> tuple[dict, datetime | None]:
    """The account scope ({"time_zone": ...}: connector.core.time_zone)."""
    return scope_values(session, ACCOUNT)


def update_account_settings(session: Session, changes: dict, actor: str) -> dict:
    """Store already validated changes of the account scope (connector.core.time_zone checks its own)."""
    return update_scope(session, ACCOUNT, changes, actor)
