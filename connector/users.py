"""Console users, their roles, and personal API tokens.

Passwords are hashed with werkzeug's scrypt. A personal token is 256 random bits shown once; only its
SHA-256 is stored: a token that long needs no slow hash, and a lookup by hash stays one index probe.
"""
from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from connector.db import Database
from connector.models import ApiToken, Call, Role, User

USERNAME = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")
EXTENSION = re.compile(r"^[0-9A-Za-z*#+-]{1,32}$")
MIN_PASSWORD = 8
PASSWORD_METHOD = "scrypt"  # werkzeug's default cost (n=2**15): ~0.1 s a login, on purpose
# Checked when the username is unknown, so a login takes as long whether or not the user exists.
_UNKNOWN_USER_HASH = generate_password_hash(secrets.token_hex(16))


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
    if len(password or "") < MIN_PASSWORD:
        raise UserError(f"password: at least {MIN_PASSWORD} characters")
    user = User(username=username, role=role.value, extensions=sorted(set(extensions)),
                password_hash=generate_password_hash(password, PASSWORD_METHOD), disabled=False)
    try:
        with session.begin_nested():
            session.add(user)
    except IntegrityError:
        raise UserError(f"user {username} already exists") from None
    return user


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.username)))


def _user(session: Session, username: str) -> User:
    user = session.scalars(select(User).where(User.username == username)).first()
    if user is None:
        raise UserError(f"no user {username}")
    return user


def disable_user(session: Session, username: str) -> None:
    """A disabled user can no longer log in, and their tokens stop working."""
    _user(session, username).disabled = True


def issue_token(session: Session, username: str) -> str:
    """A new personal API token for the user; the only time it is seen in clear."""
    user = _user(session, username)
    if user.disabled:
        raise UserError(f"user {username} is disabled")
    token = secrets.token_urlsafe(32)
    session.add(ApiToken(user_id=user.id, token_hash=_token_hash(token)))
    return token


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def principal_for_token(session: Session, token: str) -> Principal | None:
    user = session.scalars(select(User).join(ApiToken, ApiToken.user_id == User.id)
                           .where(ApiToken.token_hash == _token_hash(token))).first()
    return None if user is None or user.disabled else _principal(user)


def principal_for_login(db: Database, username: str, password: str) -> Principal | None:
    """The user, if the password is theirs. The hash is read in a short read and checked (scrypt, ~0.1 s
    on purpose) with no transaction, connection or lock held: a login never holds up anyone else."""
    with db.reading() as session:
        user = session.scalars(select(User).where(User.username == username)).first() if username else None
        stored = (user.password_hash, None if user.disabled else _principal(user)) if user else None
    if stored is None:
        check_password_hash(_UNKNOWN_USER_HASH, password or "")
        return None
    password_hash, principal = stored
    if not check_password_hash(password_hash, password or "") or principal is None:
        return None
    return principal


def principal_by_id(session: Session, user_id: int) -> Principal | None:
    """The user behind a console session, if still enabled."""
    user = session.get(User, user_id)
    return None if user is None or user.disabled else _principal(user)


def users_to_notify(session: Session, *, role: Role | None = None, extension: str | None = None) -> list[User]:
    """Enabled users of a role, or the operators who own an extension."""
    query = select(User).where(User.disabled.is_(False))
    if role is not None:
        query = query.where(User.role == role.value)
    users = list(session.scalars(query))
    if extension is not None:
        users = [u for u in users if u.role == Role.OPERATOR and extension in (u.extensions or ())]
    return users
