"""Runtime settings: seeded from the environment once, then edited by admins and audited."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from connector.models import RuntimeSettings, SettingsAudit
from connector.threshold import Policy, policy_with_changes, validate_policy

GLOBAL = "global"


def _row(session: Session, initial: Policy, *, for_update: bool = False) -> RuntimeSettings:
    query = select(RuntimeSettings).where(RuntimeSettings.scope == GLOBAL)
    if for_update:
        query = query.with_for_update()
    row = session.scalars(query).first()
    if row is None:
        # First use: seed from the environment. A concurrent seeder may win; then read theirs.
        try:
            with session.begin_nested():
                row = RuntimeSettings(scope=GLOBAL, values=initial.as_dict())
                session.add(row)
        except IntegrityError:
            row = session.scalars(query).one()
    return row


def current_policy(session: Session, initial: Policy) -> Policy:
    values = {**initial.as_dict(), **_row(session, initial).values}
    return validate_policy(Policy(**{k: v for k, v in values.items() if k in initial.as_dict()}))


def update_policy(session: Session, initial: Policy, changes: dict, actor: str) -> Policy:
    """Validate and apply an admin's change (raises PolicyError); leaves an audit row."""
    row = _row(session, initial, for_update=True)
    before = current_policy(session, initial)
    after = policy_with_changes(before, changes)
    if after != before:
        row.values = after.as_dict()
        session.add(SettingsAudit(scope=GLOBAL, actor=actor, before=before.as_dict(), after=after.as_dict()))
    return after


def audit_trail(session: Session, limit: int = 50) -> list[SettingsAudit]:
    return list(session.scalars(select(SettingsAudit).order_by(SettingsAudit.id.desc()).limit(limit)))
