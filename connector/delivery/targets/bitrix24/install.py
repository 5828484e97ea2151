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
- `api-reference/common/events/on-app-uninstall.md`: `ONAPPUNINSTALL` when the application is removed; its
  `auth` has `domain`, `server_endpoint`, `client_endpoint`, `member_id` and `application_token`, no tokens
  ("no authorization data is passed to it", safe-event-handlers.md): the stored `application_token` is the
  only check.

**The token renewal server.** `auth[server_endpoint]` is the "authorization server address for token
renewal" (on-app-install.md); the docs name `https://oauth.bitrix.info/rest/` (English) and
`https://oauth.bitrix24.tech/rest/` (Russian, `bitrix-tools/b24-rest-docs`), and renew at
`<that server>/oauth/token/` (settings/oauth/auto-renewal.md; a refresh answer names its `server_endpoint`
again). The vendor's PHP SDK (`bitrix24/b24phpsdk`) keeps one auth server per account and renews at
`sprintf('%s/oauth/token/', getAuthServerUrl())` (src/Core/ApiClient.php `getNewAuthToken`), its servers
being `https://oauth.bitrix.info/` (west) and `https://oauth.bitrix24.tech/` (east)
(src/Core/Credentials/DefaultOAuthServerUrl.php). So the connector keeps the *origin* of the portal's
`server_endpoint` with the account and renews at `<origin>/oauth/token/`, updated from every refresh answer.
The portal's server wins over BITRIX24_OAUTH_URL, even one set explicitly: tokens are renewed only by the
server that issued them, so another one could only refuse them. BITRIX24_OAUTH_URL serves when the portal
named no server the connector trusts (see `oauth_origin`) and for the first BITRIX24_AUTH_CODE exchange.
The client secret goes to that server, so only an https origin with a DNS name, no credentials, no query, is
trusted; another value is logged (its reason, never the value) and the configured URL is used.

**ONAPPUNINSTALL needs `event.bind`.** Bitrix24 sends events to handlers an application registered with
`event.bind` (api-reference/events/index.md, "How Events Work"); a local application may add an
OnAppUninstall handler and then "Bitrix24 will call this handler when the app is deleted"
(settings/app-uninstallation.md; the JS SDK's own example is `BX24.callBind('OnAppUninstall', ...)`,
sdk/bx24-js-sdk/how-to-call-rest-methods/bx24-call-bind.md). `event.bind` takes `event` and `handler`, works
only with an application's authorization, scope `basic` (api-reference/events/event-bind.md, index.md).
The install request itself does not bind: the portal would wait on our REST call. The delivery worker does
it (`UninstallHandler`), with the installed tokens, through the target's rate limit, retried with growing
pauses, each failure counted on the account row and shown on the settings page.

The handler URL carries a key derived from SECRET_KEY, so that nobody but the admin who read it on the
settings page can hand the connector a portal of their own before the first install.
"""
from __future__ import annotations

import enum
import hashlib
import hmac
import ipaddress
import logging
import re
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable
from urllib.parse import urlsplit

from cryptography.fernet import InvalidToken
from prometheus_client import Counter
from sqlalchemy.orm import Session, object_session

from connector.core.accounts import account_row, token_cipher
from connector.core.db import Database
from connector.core.models import Account, SettingsAudit
from connector.core.secrets import masked
from connector.delivery.contract import CrmError
from connector.delivery.oauth import OAuthTokens, store_tokens
from connector.delivery.targets.bitrix24.models import ACCOUNT, Bitrix24Portal, portal_row

log = logging.getLogger(__name__)
BITRIX24_EVENT_BINDS = Counter("connector_bitrix24_event_binds_total", "Registrations of the Bitrix24 "
                               "ONAPPUNINSTALL handler (event.bind), by outcome (bound, failed)", ["outcome"])

AUDIT_SCOPE = "bitrix24_install"
INSTALL = "ONAPPINSTALL"
UNINSTALL = "ONAPPUNINSTALL"
CACHE_SECONDS = 1.0  # how long the REST client trusts its copy of the portal's address
REQUIRED = ("access_token", "refresh_token", "domain", "member_id", "application_token")
TOKEN_PATH = "/oauth/token/"  # b24phpsdk src/Core/ApiClient.php getNewAuthToken: '%s/oauth/token/?%s'
HANDLER_PATH = "/bitrix24/app/"  # web.bitrix24's route, before the key
BIND_CHECK_SECONDS = 5.0  # how often a worker looks whether the uninstall handler still needs registering
BIND_LEASE = timedelta(minutes=2)  # one process registers at a time; a crashed attempt is retried after this
BIND_BACKOFF = (60, 300, 900, 3600, 6 * 3600)  # seconds after the 1st, 2nd, ... failure: never a tight loop
_HOST = re.compile(r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+([a-z]{2,63}|xn--[a-z0-9-]{1,59})")


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


def handler_url(public_base_url: str, secret_key: str) -> str:
    """The address the admin pastes into the portal, and the one the worker binds ONAPPUNINSTALL to."""
    return public_base_url.rstrip("/") + HANDLER_PATH + handler_key(secret_key)


def oauth_origin(server_endpoint: str | None) -> tuple[str | None, str | None]:
    """The OAuth server a `server_endpoint` names, as `https://<host>` (None and why when it is not trusted).
    The client secret goes there: https only, a DNS name (no IP literal), no user or password, no port but
    443, no query or fragment. The path (`/rest/`) is dropped: the token endpoint is `<origin>/oauth/token/`."""
    value = (server_endpoint or "").strip()
    if not value:
        return None, "no server_endpoint"
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return None, "server_endpoint is not a URL"
    if parts.scheme.lower() != "https":
        return None, "server_endpoint is not https"
    if "@" in parts.netloc:
        return None, "server_endpoint carries credentials"
    if parts.query or parts.fragment or "?" in value or "#" in value:
        return None, "server_endpoint carries a query or fragment"
    if port not in (None, 443):
        return None, "server_endpoint names a port"
    host = (parts.hostname or "").rstrip(".")
    try:
        ipaddress.ip_address(host)
        return None, "server_endpoint is an IP address, not a host name"
    except ValueError:
        pass
    if not _HOST.fullmatch(host):
        return None, "server_endpoint has no host name"
    return f"https://{host}", None


class Bitrix24Tokens(OAuthTokens):
    """OAuthTokens renewing at the server the portal named (the account row's `oauth_server`), else at
    BITRIX24_OAUTH_URL, and keeping that server current from every token answer's `server_endpoint`."""

    def token_url(self, row: Account | None) -> str:
        session = object_session(row) if row is not None else None
        server = portal_row(session).oauth_server if session is not None else None
        return server + TOKEN_PATH if server else self.url

    def _store(self, row: Account, answer: dict) -> str:
        token = super()._store(row, answer)
        if answer.get("server_endpoint"):  # docs settings/oauth/auto-renewal.md: the answer names its server
            origin, why = oauth_origin(str(answer["server_endpoint"]))
            if origin:
                portal_row(object_session(row), lock=True).oauth_server = origin
            else:
                log.warning("bitrix24: the token answer's server_endpoint is not trusted (%s); renewals stay at %s",
                            why, urlsplit(self.token_url(row)).hostname)
        return token


@dataclass(frozen=True)
class Installation:
    """What the settings page shows about the portal that installed the application."""

    portal: str | None  # https://<domain>; None: not installed
    member_id: str | None
    installed_at: datetime | None
    unreadable: bool = False  # stored with another SECRET_KEY: install the application again
    oauth_server: str | None = None  # https://<host> the portal named; None: BITRIX24_OAUTH_URL renews
    uninstall_bound_at: datetime | None = None  # when event.bind registered the ONAPPUNINSTALL handler
    bind_failures: int = 0  # failed registrations since the install
    bind_error: str | None = None  # the last one's reason (Bitrix24's error code and text, no tokens)
    bind_next_at: datetime | None = None  # when the worker tries again

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
        portal = portal_row(session)
        return Installation(row.endpoint_url, portal.member_id, row.connected_at, unreadable, portal.oauth_server,
                            portal.events_bound_at, portal.bind_failures or 0, portal.bind_error, portal.bind_next_at)

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
            portal = portal_row(s, lock=True)
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
                before = self._shown(row, portal)
                store_tokens(self.cipher, row, auth)
                row.secret_enc = self.cipher.encrypt(given.encode()).decode()
                row.endpoint_url = portal_of(auth)
                portal.member_id = auth["member_id"]
                row.connected_at = datetime.now(timezone.utc)
                row.paused, row.paused_reason, row.paused_at = False, None, None  # a fresh install works again
                portal.oauth_server, why = oauth_origin(auth.get("server_endpoint"))
                if why:
                    log.warning("bitrix24: the install's server_endpoint is not trusted (%s): tokens will be "
                                "renewed at BITRIX24_OAUTH_URL", why)
                _reset_binding(portal)  # a new install has no handlers yet (docs event-bind.md): the worker binds
                s.add(SettingsAudit(scope=AUDIT_SCOPE, actor=f"bitrix24:{portal.member_id}", before=before,
                                    after={**self._shown(row, portal), "application_token": masked(given)}))
                log.info("bitrix24: application installed on %s", row.endpoint_url)
                return EventOutcome.INSTALLED
            if event == UNINSTALL:
                self._forget(s, row, portal, actor=f"bitrix24:{portal.member_id}")
                return EventOutcome.UNINSTALLED
        return EventOutcome.ACCEPTED

    def disconnect(self, session: Session, actor: str) -> bool:
        """An admin's "disconnect": tokens and portal forgotten (a new install is needed). False when none."""
        row = account_row(session, ACCOUNT, lock=True)
        if not row.endpoint_url:
            return False
        self._forget(session, row, portal_row(session, lock=True), actor)
        return True

    def _forget(self, session: Session, row: Account, portal: Bitrix24Portal, actor: str) -> None:
        before = self._shown(row, portal)
        row.access_token_enc = row.refresh_token_enc = row.token_expires_at = None
        row.secret_enc = row.endpoint_url = row.connected_at = None
        portal.member_id = portal.oauth_server = None
        _reset_binding(portal)
        session.add(SettingsAudit(scope=AUDIT_SCOPE, actor=actor, before=before, after={"portal": None}))

    @staticmethod
    def _shown(row: Account, portal: Bitrix24Portal) -> dict:
        return Installation(row.endpoint_url, portal.member_id, row.connected_at).shown()


def _reset_binding(row: Bitrix24Portal) -> None:
    row.events_bound_at = row.bind_error = row.bind_next_at = None
    row.bind_failures = 0


def _already_bound(exc: CrmError) -> bool:
    """Bitrix24's refusal to bind a handler twice: ERROR_CORE "Handler already binded" (not in the docs; the
    text public integrations match on). Then the handler is registered, which is what was wanted."""
    return "already binded" in (exc.message or "").lower()


class UninstallHandler:
    """Registers the connector's handler for ONAPPUNINSTALL with `event.bind` after an install, from the
    delivery worker (the portal's install request never waits on it). One process at a time (a lease on the
    account row); a failure is counted, its reason kept and logged without tokens, and the next try waits
    1 min, 5 min, 15 min, 1 h, then 6 h."""

    def __init__(self, db: Database, handler: str, call: Callable[[str, dict], object], *,
                 clock=lambda: datetime.now(timezone.utc), monotonic=time.monotonic):
        self.db, self.handler, self.call = db, handler, call
        self.clock, self.monotonic = clock, monotonic
        self._checked = float("-inf")

    def run_due(self) -> bool | None:
        """Bind when due; True: bound now, False: failed now, None: nothing was due."""
        if self.monotonic() - self._checked < BIND_CHECK_SECONDS:
            return None
        self._checked = self.monotonic()
        with self.db.reading() as s:
            if not self._due(account_row(s, ACCOUNT), portal_row(s)):
                return None
        with self.db.transaction() as s:
            row, portal = account_row(s, ACCOUNT, lock=True), portal_row(s, lock=True)
            if not self._due(row, portal):
                return None  # another process took it meanwhile
            installed_at = row.connected_at
            portal.bind_next_at = self.clock() + BIND_LEASE
        problem = None
        try:
            # docs api-reference/events/event-bind.md: `event` and `handler`; an online event, on behalf of the
            # installing user (no auth_type), scope basic
            if self.call("event.bind", {"event": UNINSTALL, "handler": self.handler}) is not True:
                problem = "event.bind did not answer true"
        except CrmError as exc:
            if not _already_bound(exc):
                problem = exc.message
        with self.db.transaction() as s:
            row, portal = account_row(s, ACCOUNT, lock=True), portal_row(s, lock=True)
            if row.connected_at != installed_at:
                return None  # reinstalled or disconnected meanwhile: that install binds on its own
            now = self.clock()
            if problem is None:
                portal.events_bound_at, portal.bind_error, portal.bind_next_at = now, None, None
                BITRIX24_EVENT_BINDS.labels("bound").inc()
                log.info("bitrix24: the ONAPPUNINSTALL handler is registered on %s", row.endpoint_url)
                return True
            portal.bind_failures = (portal.bind_failures or 0) + 1
            BITRIX24_EVENT_BINDS.labels("failed").inc()
            portal.bind_error = problem[:255]
            wait = BIND_BACKOFF[min(portal.bind_failures, len(BIND_BACKOFF)) - 1]
            portal.bind_next_at = now + timedelta(seconds=wait)
            log.warning("bitrix24: registering the ONAPPUNINSTALL handler failed (%d so far: %s); next try in %d s",
                        portal.bind_failures, problem, wait)
            return False

    def _due(self, row: Account, portal: Bitrix24Portal) -> bool:
        return bool(row.endpoint_url and portal.events_bound_at is None
                    and (portal.bind_next_at is None or portal.bind_next_at <= self.clock()))
