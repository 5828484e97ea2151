"""amoCRM connected from the console, without a restart: an admin enters the account's address and the
integration's keys and is sent to amoCRM's authorization page, or pastes a long-lived token.

The authorization (amoCRM's documented flow: https://www.amocrm.ru/developers/content/oauth/step-by-step,
Kommo's https://developers.kommo.com/docs/oauth-20):
- the admin's browser goes to `AMOCRM_AUTHORIZE_URL?client_id=…&state=…&mode=post_message` (amoCRM's page
  where the user picks the account and allows access; `mode=post_message` makes it redirect the window itself);
- amoCRM redirects to the integration's redirect URI with `code`, `state` and `referer` (the account's host);
- the code is traded at `POST {base}/oauth2/access_token` (authorization_code grant), as `OAuthTokens` does.
`state` is random, stored only as a hash with the admin's session and an expiry, and spent by the first
redirect that carries it, whatever comes of the code.

The console's connection wins over the environment's once saved (the page says which is in force); it is kept
encrypted (`token_cipher`) in the account's row, next to the tokens, so every process reads it from there:
`InForceTokens` gives the delivery worker the tokens and address in force at each request.
"""
from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from urllib.parse import urlencode, urlsplit

import requests
from cryptography.fernet import InvalidToken
from sqlalchemy.orm import Session, object_session

from connector.core.accounts import account_row, token_cipher
from connector.core.db import Database
from connector.core.models import SettingsAudit
from connector.core.secrets import Source, masked
from connector.delivery.contract import AccountBlocked, TransientError
from connector.delivery.oauth import OAuthTokens
from connector.delivery.targets.amocrm.client import StaticToken
from connector.delivery.targets.amocrm.models import connection_row

CRM = "amocrm"
AUDIT_SCOPE = "amocrm_connection"
STATE_SECONDS = 600  # our choice: an authorization not completed within 10 minutes is started again
CACHE_SECONDS = 1.0  # a connection saved in one process reaches every other within it
CALLBACK_PATH = "/settings/amocrm/callback"
# amoCRM's authorization page (https://www.amocrm.ru/developers/content/oauth/step-by-step); a setting so that
# tests point it at a fake, and a Kommo account at https://www.kommo.com/oauth.
AUTHORIZE_URL = "https://www.amocrm.ru/oauth"


class Kind(enum.StrEnum):
    """How the console's connection authenticates."""

    OAUTH = "oauth"  # the integration's keys and the tokens its authorization gave (refreshed, rotating)
    LONG_LIVED = "long_lived"  # a private integration's long-lived token: no refresh


class Refusal(enum.StrEnum):
    """Why a connection was not stored."""

    NOT_PENDING = "not_pending"  # no authorization waits: never started, or this state was spent already
    WRONG_STATE = "wrong_state"  # the redirect's state is not the one this session was given
    EXPIRED = "expired"  # started more than STATE_SECONDS ago
    WRONG_ACCOUNT = "wrong_account"  # amoCRM's referer names another account than the address entered
    NO_CODE = "no_code"  # amoCRM came back without a code: access was not granted
    CODE_REFUSED = "code_refused"  # the token endpoint refused the code (spent, expired, wrong keys)
    TOKEN_REFUSED = "token_refused"  # the long-lived token got a 401
    UNAVAILABLE = "unavailable"  # amoCRM did not answer, or answered 5xx / 429: try again later


class ConnectionRefused(Exception):
    def __init__(self, reason: Refusal):
        super().__init__(reason.value)
        self.reason = reason


@dataclass(frozen=True)
class Connection:
    """The connection entered in the console (stored encrypted as one JSON document)."""

    base_url: str
    kind: Kind
    client_id: str = ""
    client_secret: str = ""
    long_lived_token: str = ""
    saved_at: str = ""  # ISO time: also tells a replaced connection's tokens apart in every process

    def shown(self) -> dict:
        """As the console and the audit show it: the address, and secrets by their last characters only."""
        shown = {"source": Source.CONSOLE.value, "base_url": self.base_url, "kind": self.kind.value}
        if self.kind is Kind.OAUTH:
            shown |= {"client_id": masked(self.client_id), "client_secret": masked(self.client_secret)}
        else:
            shown |= {"long_lived_token": masked(self.long_lived_token)}
        return shown


@dataclass(frozen=True)
class Environment:
    """What the environment sets (AMOCRM_*)."""

    base_url: str = ""
    client_id: str = ""
    client_secret: str = ""
    redirect_uri: str = ""
    long_lived_token: str = ""

    @property
    def configured(self) -> bool:
        return bool(self.base_url and (self.long_lived_token or (self.client_id and self.client_secret
                                                                 and self.redirect_uri)))

    def shown(self) -> dict:
        return {"source": Source.ENVIRONMENT.value, "base_url": self.base_url, "client_id": masked(self.client_id),
                "client_secret": masked(self.client_secret), "long_lived_token": masked(self.long_lived_token)}


@dataclass(frozen=True)
class Status:
    """What the settings page says about amoCRM."""

    in_force: Source
    console: Connection | None
    environment: Environment
    tokens_stored: bool
    expires_at: datetime | None  # the access token's (OAuth) or the long-lived token's `exp`
    unreadable: bool  # a console connection SECRET_KEY no longer decrypts


def jwt_expiry(token: str) -> datetime | None:
    """A long-lived token is a JWT with an `exp` claim (the official client's LongLivedAccessToken reads it);
    read without checking the signature, only to say when it runs out. None when it is not such a token."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return datetime.fromtimestamp(int(claims["exp"]), timezone.utc)
    except (IndexError, ValueError, KeyError, TypeError):
        return None


def _host(address: str) -> str:
    """An account's host (and port), from its address or from amoCRM's `referer` (a bare host)."""
    return urlsplit("//" + address.split("://", 1)[-1]).netloc.lower()


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


class AmoConnectionStore:
    def __init__(self, db: Database, environment: Environment, secret_key: str, *, public_base_url: str,
                 authorize_url: str = AUTHORIZE_URL, wait_turn=lambda: None, http: requests.Session | None = None,
                 clock=time.time, cache_seconds: float = CACHE_SECONDS):
        self.db, self.environment = db, environment
        self.cipher = token_cipher(secret_key)
        self.secret_key = secret_key
        self.redirect_uri = public_base_url.rstrip("/") + CALLBACK_PATH
        self.authorize_url, self.wait_turn = authorize_url, wait_turn
        self.http = http or requests.Session()
        self.clock, self.cache_seconds = clock, cache_seconds
        self._copy: tuple[float, Connection | None] | None = None

    # --- encryption ----------------------------------------------------------------------------
    def _seal(self, document: dict) -> str:
        return self.cipher.encrypt(json.dumps(document).encode()).decode()

    def _open(self, value: str | None) -> dict | None:
        return json.loads(self.cipher.decrypt(value.encode())) if value else None

    def _connection(self, row) -> Connection | None:
        document = self._open(row.connection_enc)  # InvalidToken: the caller says so
        return Connection(**{**document, "kind": Kind(document["kind"])}) if document else None

    # --- reading -------------------------------------------------------------------------------
    def status(self, session: Session) -> Status:
        row = account_row(session, CRM)
        console, unreadable = None, False
        try:
            console = self._connection(connection_row(session, CRM))
        except InvalidToken:
            unreadable = True
        in_force = (Source.CONSOLE if console else Source.ENVIRONMENT if self.environment.configured
                    else Source.NONE)
        long_lived = (console.long_lived_token if console else
                      self.environment.long_lived_token if in_force is Source.ENVIRONMENT else "")
        if long_lived:
            return Status(in_force, console, self.environment, True, jwt_expiry(long_lived), unreadable)
        return Status(in_force, console, self.environment, row.refresh_token_enc is not None, row.token_expires_at,
                      unreadable)

    def current(self, max_age: float | None = None) -> Connection | None:
        """The console's connection as this process read it at most `max_age` (`cache_seconds`) ago (None:
        none saved, the environment's is in force)."""
        copy = self._copy
        if copy is not None and self.clock() - copy[0] < (self.cache_seconds if max_age is None else max_age):
            return copy[1]
        with self.db.reading() as s:
            try:
                connection = self._connection(connection_row(s, CRM))
            except InvalidToken:
                raise AccountBlocked("the amoCRM connection saved in the console cannot be decrypted "
                                     "(SECRET_KEY changed?): connect amoCRM again on the settings page") from None
        self._copy = (self.clock(), connection)
        return connection

    # --- the authorization ---------------------------------------------------------------------
    def begin(self, session: Session, base_url: str, client_id: str, client_secret: str, session_id: str) -> str:
        """Remember what the admin entered, with a fresh state bound to their session; returns the address of
        amoCRM's authorization page. A later start replaces an unfinished one."""
        state = secrets.token_urlsafe(32)
        row = connection_row(session, CRM, lock=True)
        row.pending_enc = self._seal({"state": _digest(state), "session": _digest(session_id),
                                      "expires": self.clock() + STATE_SECONDS, "base_url": base_url,
                                      "client_id": client_id, "client_secret": client_secret})
        # amoCRM's documented parameters: client_id, state, and mode (popup | post_message).
        return self.authorize_url + "?" + urlencode({"client_id": client_id, "state": state, "mode": "post_message"})

    def complete(self, state: str, code: str, referer: str, session_id: str, actor: str) -> Connection:
        """amoCRM's redirect: check the state, spend it, trade the code, store the tokens and the connection.
        Raises ConnectionRefused (nothing stored) with the reason."""
        pending = self._spend(state, session_id)
        if referer and _host(referer) != _host(pending["base_url"]):
            raise ConnectionRefused(Refusal.WRONG_ACCOUNT)
        if not code:
            raise ConnectionRefused(Refusal.NO_CODE)
        connection = Connection(pending["base_url"], Kind.OAUTH, pending["client_id"], pending["client_secret"],
                                saved_at=datetime.now(timezone.utc).isoformat())
        tokens = self.oauth(connection)
        try:
            tokens.exchange(code, also=lambda row: self._saved(row, connection, actor))
        except AccountBlocked:
            raise ConnectionRefused(Refusal.CODE_REFUSED) from None
        except TransientError:
            raise ConnectionRefused(Refusal.UNAVAILABLE) from None
        return connection

    def _spend(self, state: str, session_id: str) -> dict:
        with self.db.transaction() as s:
            row = connection_row(s, CRM, lock=True)
            try:
                pending = self._open(row.pending_enc)
            except InvalidToken:
                pending = None
            if pending is None:
                raise ConnectionRefused(Refusal.NOT_PENDING)
            # Constant-time: the hashes are compared, never the state itself.
            if not (hmac.compare_digest(pending["state"], _digest(state or ""))
                    and hmac.compare_digest(pending["session"], _digest(session_id))):
                raise ConnectionRefused(Refusal.WRONG_STATE)  # a stray request leaves the admin's own one waiting
            row.pending_enc = None  # single use: spent whatever comes of the code
            expired = self.clock() > pending["expires"]
        if expired:
            raise ConnectionRefused(Refusal.EXPIRED)
        return pending

    def oauth(self, connection: Connection) -> OAuthTokens:
        return OAuthTokens(self.db, CRM, token_url=connection.base_url + "/oauth2/access_token",
                           client={"client_id": connection.client_id, "client_secret": connection.client_secret,
                                   "redirect_uri": self.redirect_uri},
                           secret_key=self.secret_key, wait_turn=self.wait_turn, http=self.http,
                           vendor="amoCRM", auth_code_setting="the settings page")

    # --- a long-lived token ----------------------------------------------------------------------
    def save_long_lived(self, base_url: str, token: str, actor: str) -> Connection:
        """Check the token with a harmless GET /api/v4/account, then store it; ConnectionRefused otherwise."""
        self.wait_turn()
        try:
            response = self.http.get(base_url + "/api/v4/account", headers={"Authorization": f"Bearer {token}"},
                                     timeout=(5, 20))
        except (requests.Timeout, requests.ConnectionError):
            raise ConnectionRefused(Refusal.UNAVAILABLE) from None
        if response.status_code in (401, 403):
            raise ConnectionRefused(Refusal.TOKEN_REFUSED)
        if response.status_code != 200:
            raise ConnectionRefused(Refusal.UNAVAILABLE)
        connection = Connection(base_url, Kind.LONG_LIVED, long_lived_token=token,
                                saved_at=datetime.now(timezone.utc).isoformat())
        with self.db.transaction() as s:
            row = account_row(s, CRM, lock=True)
            row.access_token_enc = row.refresh_token_enc = row.token_expires_at = None  # no OAuth tokens of its own
            self._saved(row, connection, actor)
        return connection

    # --- writing -------------------------------------------------------------------------------
    def _saved(self, row, connection: Connection, actor: str) -> None:
        own = connection_row(object_session(row), CRM, lock=True)
        before = self._shown_row(own)
        own.connection_enc = self._seal({**asdict(connection), "kind": connection.kind.value})
        own.pending_enc = None
        own.saved_at = datetime.fromisoformat(connection.saved_at)
        # A new authorization is the admin's answer to a refused one: deliveries paused for it go on.
        row.paused, row.paused_reason, row.paused_at = False, None, None
        object_session(row).add(SettingsAudit(scope=AUDIT_SCOPE, actor=actor, before=before, after=connection.shown()))
        self._copy = None

    def forget(self, session: Session, actor: str) -> bool:
        """Remove the console's connection and its tokens: the environment's is in force again."""
        row, own = account_row(session, CRM, lock=True), connection_row(session, CRM, lock=True)
        if not own.connection_enc and not own.pending_enc:
            return False
        before = self._shown_row(own)
        own.connection_enc = own.pending_enc = own.saved_at = None
        row.access_token_enc = row.refresh_token_enc = row.token_expires_at = None
        after = self.environment.shown() if self.environment.configured else {"source": Source.NONE.value}
        session.add(SettingsAudit(scope=AUDIT_SCOPE, actor=actor, before=before, after=after))
        self._copy = None
        return True

    def _shown_row(self, row) -> dict:
        try:
            connection = self._connection(row)
        except InvalidToken:
            return {"source": Source.CONSOLE.value}
        if connection:
            return connection.shown()
        return self.environment.shown() if self.environment.configured else {"source": Source.NONE.value}


class InForceTokens:
    """The delivery worker's token source: the console's connection when one is saved (read from the database
    at most `cache_seconds` late, so a connection made in the web process is used without a restart), else
    the environment's (`environment`, None when it sets none)."""

    def __init__(self, store: AmoConnectionStore, environment, environment_base_url: str):
        self.store, self.environment, self.environment_base_url = store, environment, environment_base_url
        self._sources: dict[str, object] = {}  # one source per saved connection (its saved_at)

    def _source(self):
        connection = self.store.current()
        if connection is None:
            # Read afresh before pausing: a connection saved within the copy's second must not be paused over.
            if self.environment is None and (connection := self.store.current(max_age=0)) is None:
                raise AccountBlocked("amoCRM is not connected: connect it on the settings page")
        if connection is None:
            return self.environment
        source = self._sources.get(connection.saved_at)
        if source is None:
            source = (StaticToken(connection.long_lived_token) if connection.kind is Kind.LONG_LIVED
                      else self.store.oauth(connection))
            self._sources = {connection.saved_at: source}  # a replaced connection's source is dropped
        return source

    def base_url(self) -> str:
        connection = self.store.current()
        return connection.base_url if connection else self.environment_base_url.rstrip("/")

    def access_token(self) -> str:
        return self._source().access_token()

    def refresh(self, rejected: str) -> str:
        return self._source().refresh(rejected)
