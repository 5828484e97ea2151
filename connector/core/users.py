"""Console users, their roles, passwords, console sessions and personal API tokens.

Passwords are hashed with werkzeug's scrypt, and checked outside any database transaction, one at a time per
process (see `login`). A personal token is 256 random bits shown once; only its SHA-256 is stored: a token
that long needs no slow hash, and a lookup by hash stays one index probe. It expires (90 days by default) and
can be revoked one by one. A console session is a row of `console_sessions` named by the cookie (see
`start_session`).
"""
from __future__ import annotations

import enum
import hashlib
import re
import secrets
import sys
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from connector.core import throttle
from connector.core.db import Database, READING
from connector.core.models import ApiToken, Call, ConsoleSession, Role, SettingsAudit, User

USERNAME = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")
EXTENSION = re.compile(r"^[0-9A-Za-z*#+-]{1,32}$")
MIN_PASSWORD = 10
MAX_PASSWORD = 1024  # what the login form takes
MIN_DISTINCT = 5  # "aaaaaaaaaa" and "1212121212" are not passwords
PASSWORD_METHOD = "scrypt"  # werkzeug's default cost (n=2**15): ~0.1 s a login, on purpose
# Checked when the username is unknown, so a login takes as long whether or not the user exists.
_UNKNOWN_USER_HASH = generate_password_hash(secrets.token_hex(16))
TOKEN_DAYS = 90  # a personal token's default lifetime
MAX_TOKEN_DAYS = 3650
TOUCH_SECONDS = 60  # a session's or token's last use is written at most once a minute
WRITE_DUE = "connector.core.users.write_due"  # session.info: a read met bookkeeping to write


class UserError(ValueError):
    """A user could not be created or changed; the message says why, in one line."""


@dataclass(frozen=True)
class Principal:
    """Who is asking: a console user, a personal token's owner, or the bootstrap ADMIN_TOKEN."""

    username: str
    role: Role
    extensions: tuple[str, ...] = ()
    user_id: int | None = None  # None: the bootstrap admin token, which has no notifications

    @property
    def sees_every_call(self) -> bool:
        return self.role != Role.OPERATOR

    @property
    def visible_extensions(self) -> tuple[str, ...] | None:
        """The extensions whose calls this caller sees; None: every call."""
        return None if self.sees_every_call else self.extensions

    def may_see(self, call: Call) -> bool:
        return self.sees_every_call or (call.operator_extension or "") in self.extensions

    def may_review(self) -> bool:
        return self.role in (Role.ADMIN, Role.SUPERVISOR)


BOOTSTRAP_ADMIN = Principal("admin token", Role.ADMIN)
CLI_ACTOR = "cli"  # the audit's actor of a change made with `connector users ...`
USER_SCOPE, LOGIN_SCOPE = "user:", "login:"  # the audit scopes of a user's change and of a lifted throttle


def _principal(user: User) -> Principal:
    return Principal(user.username, Role(user.role), tuple(user.extensions or ()), user.id)


def add_user(session: Session, username: str, role: str, password: str, extensions: list[str] = ()) -> User:
    if not USERNAME.match(username or ""):
        raise UserError("username: 1 to 64 letters, digits or . _ @ -")
    try:
        role = Role(role)
    except ValueError:
        raise UserError(f"role: one of {', '.join(r.value for r in Role)}") from None
    bad = [e for e in extensions if not EXTENSION.match(e)]
    if bad:
        raise UserError(f"extension {bad[0]!r}: 1 to 32 digits or letters")
    if role == Role.OPERATOR and not extensions:
        raise UserError("an operator needs at least one --extension: it decides which calls they see")
    check_password(password)
    user = User(username=username, role=role.value, extensions=sorted(set(extensions)),
                password_hash=generate_password_hash(password, PASSWORD_METHOD), disabled=False)
    try:
        with session.begin_nested():
            session.add(user)
    except IntegrityError:
        raise UserError(f"user {username} already exists") from None
    return user


def password_problem(password: str | None) -> str | None:
    """Why a password is refused, in one line, or None."""
    password = password or ""
    if not password.strip():
        return "password: must not be empty or only spaces"
    if len(password) < MIN_PASSWORD:
        return f"password: at least {MIN_PASSWORD} characters, got {len(password)}"
    if len(password) > MAX_PASSWORD:
        return f"password: at most {MAX_PASSWORD} characters"
    if len(set(password.strip())) < MIN_DISTINCT:
        return f"password: at least {MIN_DISTINCT} different characters"
    if any(ord(c) < 32 or ord(c) == 127 for c in password):
        return "password: no control characters"
    return None


def check_password(password: str | None) -> None:
    if problem := password_problem(password):
        raise UserError(problem)


def set_password(session: Session, username: str, password: str, *, actor: str) -> None:
    """A new password (the same rule as at creation); the user's console sessions end."""
    check_password(password)
    user = _user(session, username)
    user.password_hash = generate_password_hash(password, PASSWORD_METHOD)
    end_user_sessions(session, user.id)
    _audit(session, username, actor, {"password": "old"}, {"password": "new"})


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.username)))


def _user(session: Session, username: str) -> User:
    user = session.scalars(select(User).where(User.username == username)).first()
    if user is None:
        raise UserError(f"no user {username}")
    return user


def _audit(session: Session, username: str, actor: str, before: dict, after: dict) -> None:
    """People's changes go to the same audit log as the settings' (`/audit`, `GET /api/v1/settings/audit`)."""
    session.add(SettingsAudit(scope=USER_SCOPE + username, actor=actor, before=before, after=after))


def disable_user(session: Session, username: str, *, actor: str = "cli") -> None:
    """A disabled user can no longer log in, their console sessions end and their tokens stop working."""
    user = _user(session, username)
    if not user.disabled:
        _audit(session, username, actor, {"disabled": False}, {"disabled": True})
    user.disabled = True
    end_user_sessions(session, user.id)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def issue_token(session: Session, username: str, *, days: int = TOKEN_DAYS, name: str | None = None) -> str:
    """A new personal API token for the user, valid `days`; the only time it is seen in clear."""
    user = _user(session, username)
    if user.disabled:
        raise UserError(f"user {username} is disabled")
    if not 1 <= days <= MAX_TOKEN_DAYS:
        raise UserError(f"days: 1 to {MAX_TOKEN_DAYS}, got {days}")
    if name is not None and not (0 < len(name) <= 64 and name.isprintable()):
        raise UserError("name: 1 to 64 printable characters")
    token = secrets.token_urlsafe(32)
    issued = _now()
    session.add(ApiToken(user_id=user.id, token_hash=_token_hash(token), name=name, created_at=issued,
                         expires_at=issued + timedelta(days=days)))
    return token


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenState(enum.StrEnum):
    """A personal token's state, as the API and the console list it."""

    ACTIVE = "active"
    EXPIRED = "expired"  # past expires_at
    REVOKED = "revoked"  # revoked one by one


def token_state(token: ApiToken, at: datetime | None = None) -> TokenState:
    if token.revoked_at is not None:
        return TokenState.REVOKED
    return TokenState.EXPIRED if token.expires_at <= (at or _now()) else TokenState.ACTIVE


def list_tokens(session: Session, username: str | None = None) -> list[tuple[ApiToken, str]]:
    """Tokens (with their owner's name), newest first; one user's with `username`."""
    query = select(ApiToken, User.username).join(User, User.id == ApiToken.user_id)
    if username is not None:
        query = query.where(User.id == _user(session, username).id)
    return [tuple(row) for row in session.execute(query.order_by(ApiToken.id.desc()))]


def revoke_token(session: Session, token_id: int, *, actor: str, username: str | None = None) -> ApiToken:
    """Revoke one token by its id (of `username` only, when given); audited."""
    found = session.execute(select(ApiToken, User.username).join(User, User.id == ApiToken.user_id)
                            .where(ApiToken.id == token_id)).first()
    if found is None or (username is not None and found[1] != username):
        raise UserError(f"no token {token_id}" + (f" of {username}" if username else ""))
    token, owner = found
    if token.revoked_at is None:
        token.revoked_at = _now()
        field = f"token {token.id}"
        _audit(session, owner, actor, {field: TokenState.ACTIVE}, {field: TokenState.REVOKED})
    return token


def principal_for_token(session: Session, token: str) -> Principal | None:
    """The owner of a personal token still in force (not expired, not revoked, owner enabled)."""
    found = session.execute(select(ApiToken, User).join(User, User.id == ApiToken.user_id)
                            .where(ApiToken.token_hash == _token_hash(token))).first()
    if found is None:
        return None
    row, user = found
    at = _now()
    if user.disabled or row.revoked_at is not None or row.expires_at <= at:
        return None
    if row.last_used_at is None or (at - row.last_used_at).total_seconds() >= TOUCH_SECONDS:
        _write(session, lambda: setattr(row, "last_used_at", at))
    return _principal(user)


# --- console logins and sessions ---------------------------------------------------------------------------

@dataclass(frozen=True)
class LoginOutcome:
    principal: Principal | None = None  # logged in
    retry_after: float = 0.0  # throttled: refused unchecked, try again in this many seconds
    busy: bool = False  # this process is checking other passwords: refused unchecked, try again in a second


# A password check costs ~0.1 s of a core and 32 MB (scrypt). One runs at a time per process, and one more
# may wait for it; any other login is refused at once (busy). So a flood of logins holds at most two of the
# web server's threads, and at most one core, whatever its size: the PBX's callbacks keep the rest.
class Admission:
    """A fixed number of places; taking one never waits. `full` lets the web face refuse a login before any
    of its own work (webui.auth.refuse_logins_early)."""

    def __init__(self, places: int):
        self._lock = threading.Lock()
        self._free = places

    def enter(self) -> bool:
        with self._lock:
            if self._free == 0:
                return False
            self._free -= 1
            return True

    def leave(self) -> None:
        with self._lock:
            self._free += 1

    @property
    def full(self) -> bool:
        return self._free == 0


PASSWORD_CHECKS = threading.Lock()
LOGINS_ADMITTED = Admission(2)


def _off_the_event_loop(function, *args):
    """Run a C call that releases the GIL (scrypt) in a real thread under gevent (gunicorn's workers), so it
    never stops the worker's other greenlets; directly otherwise."""
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None and monkey.is_module_patched("threading"):
        import gevent

        return gevent.get_hub().threadpool.apply(function, args)
    return function(*args)


def login(db, username: str, password: str, address: str, device: str | None = None) -> LoginOutcome:
    """Check a console login. In order, each step only when the one before lets it through: a place among
    the password checks of this process (else busy, and nothing else is done: a flood costs no database
    round trip), the throttle (no password is checked while a bucket holds), the user's row in one short
    transaction, the password outside any transaction; then the outcome is counted."""
    username = (username or "")[:64]
    if not LOGINS_ADMITTED.enter():
        return LoginOutcome(busy=True)
    try:
        keys = throttle.login_keys(username, address, device)
        wait = throttle.retry_after(db, keys)
        if wait > 0:
            return LoginOutcome(retry_after=wait)
        with db.transaction() as s:
            user = s.scalars(select(User).where(User.username == username)).first() if username else None
        with PASSWORD_CHECKS:
            good = _off_the_event_loop(check_password_hash, user.password_hash if user else _UNKNOWN_USER_HASH,
                                       password or "")
    finally:
        LOGINS_ADMITTED.leave()
    if not good or user is None or user.disabled:
        throttle.record_failure(db, keys)
        return LoginOutcome()
    throttle.record_success(db, keys)
    return LoginOutcome(principal=_principal(user))


def _session_id(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start_session(session: Session, principal: Principal, address: str | None, *, max_hours: int) -> str:
    """A new console session (the id the cookie carries; only its hash is stored). The user's sessions past
    their lifetime go at the same time."""
    token = secrets.token_urlsafe(32)
    at = _now()
    session.execute(delete(ConsoleSession).where(ConsoleSession.user_id == principal.user_id,
                                                 ConsoleSession.created_at < at - timedelta(hours=max_hours)))
    session.add(ConsoleSession(id=_session_id(token), user_id=principal.user_id, created_at=at, last_seen_at=at,
                               address=(address or "")[:64] or None))
    return token


def principal_for_session(session: Session, token: str, *, idle_hours: int, max_hours: int) -> Principal | None:
    """The user of a console session still in force: not logged out, used within `idle_hours`, started
    within `max_hours`, its user enabled. One primary-key probe; the last use is written once a minute."""
    found = session.execute(select(ConsoleSession, User).join(User, User.id == ConsoleSession.user_id)
                            .where(ConsoleSession.id == _session_id(token))).first()
    if found is None:
        return None
    row, user = found
    at = _now()
    if (user.disabled or at - row.created_at >= timedelta(hours=max_hours)
            or at - row.last_seen_at >= timedelta(hours=idle_hours)):
        _write(session, lambda: session.delete(row))
        return None
    if (at - row.last_seen_at).total_seconds() >= TOUCH_SECONDS:
        _write(session, lambda: setattr(row, "last_seen_at", at))
    return _principal(user)


def _write(session: Session, change) -> None:
    """Make a bookkeeping change now in a write; in a read (`Database.reading`), note that one is due."""
    if session.info.get(READING):
        session.info[WRITE_DUE] = True
    else:
        change()


def read_then_write(db: Database, lookup):
    """`lookup(session)` in a read, which never waits for the writer lock; again in a write only when it
    has bookkeeping to write (a last use once a minute, an expired session to delete)."""
    with db.reading() as session:
        result = lookup(session)
        due = session.info.pop(WRITE_DUE, False)
    if not due:
        return result
    with db.transaction() as session:
        return lookup(session)


def end_session(session: Session, token: str) -> None:
    """Logout: the session is gone, so the cookie is worth nothing, replayed or not."""
    session.execute(delete(ConsoleSession).where(ConsoleSession.id == _session_id(token)))


def end_user_sessions(session: Session, user_id: int) -> None:
    session.execute(delete(ConsoleSession).where(ConsoleSession.user_id == user_id))


def login_scope(username: str | None, address: str | None) -> str:
    """The audit scope of a lifted throttle: `login:NAME`, `login:address ADDR`, `login:NAME from ADDR`."""
    if username is None:
        return f"{LOGIN_SCOPE}address {address}"
    return LOGIN_SCOPE + (username if address is None else f"{username} from {address}")


def login_scope_parts(scope: str) -> tuple[str | None, str | None]:
    """The user and the address a `login_scope` names (a user name holds no space: `add_user` refuses one)."""
    rest = scope.removeprefix(LOGIN_SCOPE)
    if rest.startswith("address "):
        return None, rest.removeprefix("address ")
    user, sep, address = rest.partition(" from ")
    return user, (address if sep else None)


def unlock(session: Session, *, actor: str, username: str | None = None, address: str | None = None) -> list[str]:
    """Lift the login throttle of an account (every address and device) and/or of an address (logins and
    tokens); audited. Returns the buckets lifted (`throttle.forget_cached` them in a serving process)."""
    if username is None and address is None:
        raise UserError("name a user, an address (--address), or both")
    lifted = []
    if username is not None:
        _user(session, username)
        lifted += throttle.lift(session, throttle.account_filter(username))
    if address is not None:
        address = throttle.client_address(address)
        if address == "unknown":
            raise UserError("address: expected an IPv4 or IPv6 address")
        lifted += throttle.lift(session, throttle.address_filter(address))
    at = _now()
    before = {"failures": sum(r.failures for r in lifted),
              "locked": any(r.locked and r.blocked_until and r.blocked_until > at for r in lifted)}
    session.add(SettingsAudit(scope=login_scope(username, address), actor=actor, before=before,
                              after={"failures": 0, "locked": False}))
    return [r.key for r in lifted]


def users_to_notify(session: Session, *, role: Role | None = None, extension: str | None = None) -> list[User]:
    """Enabled users of a role, or the operators who own an extension."""
    query = select(User).where(User.disabled.is_(False))
    if role is not None:
        query = query.where(User.role == role.value)
    users = list(session.scalars(query))
    if extension is not None:
        users = [u for u in users if u.role == Role.OPERATOR and extension in (u.extensions or ())]
    return users
