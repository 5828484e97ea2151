"""What an audit row is about, read from its scope (`settings_audit.scope`), so a console can name it in
people's words without knowing how each writer spells its scope."""
from __future__ import annotations

import enum
from dataclasses import dataclass

from connector.core.runtime_settings import ACCOUNT, GLOBAL, LINE_PREFIX, USER_MAP_SUFFIX
from connector.core.users import LOGIN_SCOPE, USER_SCOPE, login_scope_parts


class AuditScope(enum.StrEnum):
    POLICY = "policy"  # the general settings
    ACCOUNT = "account"  # the account's own settings: its time zone
    LINE = "line"  # a line's own settings
    USER_MAP = "user_map"  # a target's extension -> CRM user map
    USER = "user"  # a console user: password, disabled, a personal token
    LOGIN = "login"  # a lifted login throttle
    OTHER = "other"  # a scope this version does not know: shown as stored


@dataclass(frozen=True)
class AuditSubject:
    kind: AuditScope
    name: str | None = None  # the line, the user or the target
    address: str | None = None  # a lifted throttle's address


def audit_subject(scope: str) -> AuditSubject:
    if scope == GLOBAL:
        return AuditSubject(AuditScope.POLICY)
    if scope == ACCOUNT:
        return AuditSubject(AuditScope.ACCOUNT)
    if scope.startswith(LINE_PREFIX):
        return AuditSubject(AuditScope.LINE, scope.removeprefix(LINE_PREFIX))
    if scope.startswith(USER_SCOPE):
        return AuditSubject(AuditScope.USER, scope.removeprefix(USER_SCOPE))
    if scope.startswith(LOGIN_SCOPE):
        user, address = login_scope_parts(scope)
        return AuditSubject(AuditScope.LOGIN, user, address)
    if scope.endswith(USER_MAP_SUFFIX):
        return AuditSubject(AuditScope.USER_MAP, scope.removesuffix(USER_MAP_SUFFIX))
    return AuditSubject(AuditScope.OTHER, scope)
