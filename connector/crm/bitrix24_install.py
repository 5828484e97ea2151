"""Bitrix24 connected as a local application from the console: the portal calls the application's handler
URL with its events, first `ONAPPINSTALL` when an admin installs the application there.

Sources (Bitrix24 REST documentation, `bitrix24/b24restdocs`):
- `api-reference/common/events/on-app-install.md`: the install event is a form POST `event=ONAPPINSTALL`,
  `data[...]`, `ts`, and `auth[domain]`, `auth[server_endpoint]`, `auth[client_endpoint]`, `auth[member_id]`,
  `auth[application_token]`; the `application_token` "is important to save".
- `api-reference/events/safe-event-handlers.md`: keep the `application_token` from the install and compare
  every later event's `auth[application_token]` with it; an event that does not match is not the portal's.
- For the application's own handler the `auth` part also carries the OAuth pair, `auth[access_token]`,
  `auth[refresh_token]`, `auth[expires_in]` (the vendor's PHP client `bitrix-tools/crest`, `CRest::installApp`,
  stores exactly these from `$_REQUEST['auth']` when `event` is `ONAPPINSTALL`).
- `api-reference/common/events/on-app-uninstall.md`: `ONAPPUNINSTALL` when the application is removed.

The handler URL carries a key derived from SECRET_KEY, so that nobody but the admin who read it on the
settings page can hand the connector a portal of their own before the first install.
"""
from __future__ import annotations

import enum
import hashlib
import hmac
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone

from cryptography.fernet import InvalidToken
from sqlalchemy.orm import Session

from connector.accounts import account_row
from connector.crm.account import store_tokens, token_cipher
from connector.db import Database
from connector.models import SettingsAudit
from connector.console_secrets import masked

log = logging.getLogger(__name__)

ACCOUNT = "bitrix24"  # the account row the worker's OAuthTokens read (connector.crm.registry)
AUDIT_SCOPE = "bitrix24_install"
INSTALL = "ONAPPINSTALL"
UNINSTALL = "ONAPPUNINSTALL"
CACHE_SECONDS = 1.0  # how long the REST client trusts its copy of the portal's address
REQUIRED = ("access_token", "refresh_token", "domain", "member_id", "application_token")


class EventOutcome(enum.StrEnum):
    """What the handler did with an event from the portal."""

    INSTALLED = "installed"  # tokens, portal and application_token stored
    UNINSTALLED = "uninstalled"  # the portal removed the application: everything forgotten
    ACCEPTED = "accepted"  # another event with the right application_token: nothing to store


class EventRefused(Exception):
    """An event not to act on; nothing was written."""


class WrongApplicationToken(EventRefused):
    """`auth[application_token]` is not the one stored at install (or nothing is installed yet for a later
    event): not the portal, or not our application."""


class MalformedEvent(EventRefused):
    """A field the install needs is missing or too long."""


def handler_key(secret_key: str) -> str:
    """The part of the handler URL only the settings page shows (stable while SECRET_KEY is)."""
    return hmac.new(secret_key.encode(), b"bitrix24 application handler", hashlib.sha256).hexdigest()[:32]


def key_matches(secret_key: str, given: str) -> bool:
    return hmac.compare_digest(handler_key(secret_key).encode(), given.encode())


@dataclass(frozen=True)
class Installation:
    """What the settings page shows about the portal that installed the application."""

    portal: str | None  # https://<domain>; None: not installed
    member_id: str | None
    installed_at: datetime | None
    unreadable: bool = False  # stored with another SECRET_KEY: install the application again

    @property
    def installed(self) -> bool:
        return self.portal is not None

    def shown(self) -> dict:
        """As the audit keeps it: the portal and member_id (not secrets), when."""
        return {"portal": self.portal, "member_id": self.member_id,
                "installed_at": self.installed_at.isoformat() if self.installed_at else None}


def _auth(form) -> dict:
    """The `auth[...]` fields of a form-encoded event (PHP's nested-array notation)."""
    return {key[5:-1]: value for key, value in form.items() if key.startswith("auth[") and key.endswith("]")}


def portal_of(auth: dict) -> str:
    """The portal's address for REST calls: `client_endpoint` without its `rest/` ("general path for API
    method calls of the account", docs on-app-install.md), else https:// and the `domain`."""
    endpoint = (auth.get("client_endpoint") or "").strip()
    if endpoint.startswith(("https://", "http://")) and endpoint.rstrip("/").endswith("/rest"):
        return endpoint.rstrip("/").removesuffix("/rest")
    return "https://" + auth["domain"].strip().removeprefix("https://").strip("/")


class InstallStore:
    def __init__(self, db: Database, secret_key: str):
        self.db = db
        self.cipher = token_cipher(secret_key)
        self._copy: tuple[float, str | None] | None = None

    def state(self, session: Session) -> Installation:
        row = account_row(session, ACCOUNT)
        if not row.endpoint_url:
            return Installation(None, None, None)
        unreadable = False
        try:
            self._token(row)
        except InvalidToken:
            unreadable = True
        return Installation(row.endpoint_url, row.member_id, row.connected_at, unreadable)

    def portal_url(self) -> str | None:
        """The installed portal's address, for the REST client: re-read at most once a second, so an install
        reaches a running worker without a restart."""
        copy = self._copy
        if copy is not None and time.monotonic() - copy[0] < CACHE_SECONDS:
            return copy[1]
        with self.db.reading() as s:
            portal = account_row(s, ACCOUNT).endpoint_url or None
        self._copy = (time.monotonic(), portal)
        return portal

    def _token(self, row) -> str | None:
        return self.cipher.decrypt(row.secret_enc.encode()).decode() if row.secret_enc else None

    def receive(self, form) -> EventOutcome:
        """One event from the portal. The install is taken when nothing is installed yet, or when it carries
        the application_token already stored (a reinstall of the same application); every other event must
        carry the stored token (compared in constant time). Raises EventRefused, having written nothing."""
        event = (form.get("event") or "").upper()
        auth = _auth(form)
        given = auth.get("application_token") or ""
        with self.db.transaction() as s:
            row = account_row(s, ACCOUNT, lock=True)
            try:
                stored = self._token(row)
            except InvalidToken:
                stored = None  # SECRET_KEY changed: the stored install is unusable; a new install replaces it
            if stored is not None or event != INSTALL:
                if stored is None or not hmac.compare_digest(stored.encode(), given.encode()):
                    raise WrongApplicationToken(f"{event or 'event'}: application_token does not match")
            if event == INSTALL:
                missing = [name for name in REQUIRED if not auth.get(name)]
                if missing or len(auth["member_id"]) > 64 or len(auth["domain"]) > 255:
                    raise MalformedEvent(f"{INSTALL} without a usable {', '.join(missing) or 'member_id/domain'}")
                before = self._shown(row)
                store_tokens(self.cipher, row, auth)
                row.secret_enc = self.cipher.encrypt(given.encode()).decode()
                row.endpoint_url = portal_of(auth)
                row.member_id = auth["member_id"]
                row.connected_at = datetime.now(timezone.utc)
                row.paused, row.paused_reason, row.paused_at = False, None, None  # a fresh install works again
                s.add(SettingsAudit(scope=AUDIT_SCOPE, actor=f"bitrix24:{row.member_id}", before=before,
                                    after={**self._shown(row), "application_token": masked(given)}))
                log.info("bitrix24: application installed on %s", row.endpoint_url)
                return EventOutcome.INSTALLED
            if event == UNINSTALL:
                self._forget(s, row, actor=f"bitrix24:{row.member_id}")
                return EventOutcome.UNINSTALLED
        return EventOutcome.ACCEPTED

    def disconnect(self, session: Session, actor: str) -> bool:
        """An admin's "disconnect": tokens and portal forgotten (a new install is needed). False when none."""
        row = account_row(session, ACCOUNT, lock=True)
        if not row.endpoint_url:
            return False
        self._forget(session, row, actor)
        return True

    def _forget(self, session: Session, row, actor: str) -> None:
        before = self._shown(row)
        row.access_token_enc = row.refresh_token_enc = row.token_expires_at = None
        row.secret_enc = row.endpoint_url = row.member_id = row.connected_at = None
        session.add(SettingsAudit(scope=AUDIT_SCOPE, actor=actor, before=before, after={"portal": None}))

    @staticmethod
    def _shown(row) -> dict:
        return Installation(row.endpoint_url, row.member_id, row.connected_at).shown()
