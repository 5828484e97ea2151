"""The token API's runtime settings: the policy, the CRMs' user maps and the time zone, each line's override,
and the audit trail of changes."""
from __future__ import annotations

from flask import Response, g

from connector import registry
from connector.core import time_zone
from connector.core.models import Role
from connector.core.policy import PolicyConflict, PolicyError
from connector.core.runtime_settings import (audit_trail, current_policies, current_policy, current_user_map,
                                             delete_line_override, line_override, update_line_override,
                                             update_policy, update_user_map, user_map_scope)
from connector.core.validation import line_problem
from web.api.common import bp, json_body, require_token, services
from web.errors import ApiError



def _user_maps(session, changes: dict | None = None) -> dict:
    """Every target's extension -> user map, each changed first when `changes` names it."""
    maps = {}
    for target in registry.targets_with_users():  # each has its own map
        scope, initial = user_map_scope(target), services().config.user_map(target)
        if changes is not None and scope in changes:
            maps[scope] = update_user_map(session, initial, changes.pop(scope), actor=g.principal.username,
                                          scope=scope)
        else:
            maps[scope] = current_user_map(session, initial, scope)
    return maps


@bp.get("/settings")
@require_token(Role.ADMIN, Role.SUPERVISOR)
def get_settings():
    initial = services().ingest.initial_policy
    with services().db.reading() as session:
        return {**current_policy(session, initial).as_dict(), **_user_maps(session), **_time_zone(session)}


def _time_zone(session, changes: dict | None = None) -> dict:
    """The account's time zone in force (the console's choice, else CONSOLE_TIMEZONE), changed first when
    `changes` names it (raises TimeZoneError, a PolicyError)."""
    if changes is not None and time_zone.FIELD in changes:
        time_zone.update_time_zone(session, changes.pop(time_zone.FIELD), actor=g.principal.username)
    return {time_zone.FIELD: time_zone.zone_in_force(session, services().config.CONSOLE_TIMEZONE).name}


@bp.put("/settings")
@require_token(Role.ADMIN)
def put_settings():
    """Change some settings: any policy field, `amocrm_user_map` / `bitrix24_user_map` (replaced whole), and
    `time_zone` (an IANA name: the console's times, date filters, reports and exports; the API keeps UTC)."""
    changes = json_body()
    if not isinstance(changes, dict) or not changes:
        raise ApiError(400, "expected a JSON object of settings to change")
    with services().db.transaction() as session:
        try:
            maps = _user_maps(session, changes)
            zone = _time_zone(session, changes)
            policy = update_policy(session, services().ingest.initial_policy, changes, actor=g.principal.username)
        except PolicyConflict as exc:
            raise ApiError(409, str(exc)) from None
        except PolicyError as exc:
            raise ApiError(422, str(exc)) from None
        return {**policy.as_dict(), **maps, **zone}


def _line_number(line_number: str) -> str:
    problem = line_problem(line_number)
    if problem:
        raise ApiError(404, f"unknown line: {problem}")
    return line_number


@bp.get("/settings/lines")
@require_token(Role.ADMIN, Role.SUPERVISOR)
def get_line_overrides():
    """Every line's override of the global policy."""
    with services().db.reading() as session:
        lines = current_policies(session, services().ingest.initial_policy).lines
    return {"items": [{"line_number": line, **override} for line, override in sorted(lines.items())]}


@bp.get("/settings/lines/<line_number>")
@require_token(Role.ADMIN, Role.SUPERVISOR)
def get_line_override(line_number: str):
    with services().db.reading() as session:
        override = line_override(session, _line_number(line_number))
    if override is None:
        raise ApiError(404, f"line {line_number} has no override: it follows the global settings")
    return {"line_number": line_number, **override}


@bp.put("/settings/lines/<line_number>")
@require_token(Role.ADMIN)
def put_line_override(line_number: str):
    """`{"enabled": bool, "max_threshold": int, "high_scores": str}` (any of them) for calls on this line;
    audited."""
    line_number = _line_number(line_number)
    body = json_body()
    with services().db.transaction() as session:
        try:
            override = update_line_override(session, services().ingest.initial_policy, line_number, body,
                                            actor=g.principal.username)
        except PolicyConflict as exc:
            raise ApiError(409, str(exc)) from None
        except PolicyError as exc:
            raise ApiError(422, str(exc)) from None
    return {"line_number": line_number, **override}


@bp.delete("/settings/lines/<line_number>")
@require_token(Role.ADMIN)
def delete_line(line_number: str):
    with services().db.transaction() as session:
        if not delete_line_override(session, _line_number(line_number), actor=g.principal.username):
            raise ApiError(404, f"line {line_number} has no override")
    return Response(status=204)


@bp.get("/settings/audit")
@require_token(Role.ADMIN)
def get_settings_audit():
    with services().db.reading() as session:
        rows = audit_trail(session)
        return {"items": [{"scope": r.scope, "actor": r.actor, "changed_at": r.changed_at.isoformat(),
                           "before": r.before, "after": r.after} for r in rows]}
