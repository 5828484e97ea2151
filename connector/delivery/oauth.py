"""A target's OAuth tokens, kept encrypted in its account row (`connector.core.accounts`) with one serialised
refresh across every process."""
from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

import requests
from cryptography.fernet import Fernet, InvalidToken

from connector.core.accounts import account_row, pause, token_cipher
from connector.core.db import Database
from connector.core.models import Account
from connector.delivery.contract import AccountBlocked, TransientError

log = logging.getLogger(__name__)


def store_tokens(cipher: Fernet, row: Account, answer: dict) -> str:
    """Put a token answer (`access_token`, `refresh_token`, `expires_in`) in the account's row, encrypted;
    the access token. Used by a grant and by Bitrix24's install event, which carries the same fields."""
    access = answer["access_token"]
    row.access_token_enc = cipher.encrypt(access.encode()).decode()
    row.refresh_token_enc = cipher.encrypt(answer["refresh_token"].encode()).decode()
    row.token_expires_at = datetime.now(timezone.utc) + timedelta(seconds=int(answer.get("expires_in") or 86400))
    return access


# --- OAuth tokens ---------------------------------------------------------------

class OAuthTokens:
    """A CRM's OAuth tokens stored encrypted; one refresh at a time across processes.

    amoCRM and Bitrix24 both rotate the refresh token on every refresh and retire the old one,
    so two concurrent refreshes would lock the integration out. `refresh` takes the account row
    lock, re-reads the token, and refreshes only if nobody did while it waited.

    The two grants are plain `requests` calls: amoCRM's token endpoint takes a JSON body and
    Bitrix24's a query string (`grant_in_query`), which the generic OAuth clients
    (requests-oauthlib, authlib) do not send, and the part that matters here, the cross-process
    serialisation, no client library provides.
    """

    def __init__(self, db: Database, account: str, *, token_url: str, client: dict, secret_key: str,
                 auth_code: str = "", wait_turn=lambda: None, http: requests.Session | None = None,
                 grant_in_query: bool = False, vendor: str, auth_code_setting: str):
        self.db, self.account = db, account
        self.url, self.client, self.grant_in_query = token_url, client, grant_in_query
        self.vendor, self.auth_code_setting = vendor, auth_code_setting
        self.cipher = token_cipher(secret_key)
        self.auth_code = auth_code
        self.wait_turn = wait_turn
        self.http = http or requests.Session()
        self._cached: str | None = None

    def _decrypt(self, value: str | None) -> str | None:
        if not value:
            return None
        try:
            return self.cipher.decrypt(value.encode()).decode()
        except InvalidToken:
            raise AccountBlocked(f"stored {self.vendor} tokens cannot be decrypted: SECRET_KEY changed? "
                                 f"Authorize again with {self.auth_code_setting}") from None

    def _store(self, row: Account, answer: dict) -> str:
        self._cached = store_tokens(self.cipher, row, answer)
        return self._cached

    def token_url(self, row: Account | None) -> str:
        """Where this account's grants go (Bitrix24: the server its portal named, connector.delivery.targets.bitrix24.install)."""
        return self.url

    def _grant(self, row: Account | None = None, **grant) -> dict:
        # Callers take their rate-limit turn before locking the account row: the limiter
        # needs that row (and on SQLite the whole database) itself.
        url = self.token_url(row)
        try:
            if self.grant_in_query:
                response = self.http.get(url, params={**self.client, **grant}, timeout=(5, 20))
            else:
                response = self.http.post(url, json={**self.client, **grant}, timeout=(5, 20))
        except (requests.Timeout, requests.ConnectionError) as exc:
            raise TransientError(f"token endpoint: {type(exc).__name__}") from None
        if response.status_code >= 500 or response.status_code == 429:
            raise TransientError(f"token endpoint: {response.status_code}", maybe_applied=False)
        if response.status_code != 200:
            # The code or refresh token is spent or wrong: only a new authorization helps.
            raise AccountBlocked(f"{self.vendor} refused the {grant['grant_type']} grant ({response.status_code} at "
                                 f"{urlsplit(url).hostname}): authorize again with {self.auth_code_setting}")
        return response.json()

    def has_tokens(self) -> bool:
        with self.db.transaction() as s:
            return account_row(s, self.account).refresh_token_enc is not None

    def exchange_code(self) -> None:
        """First start: trade the one-time authorization code for tokens (once, across processes)."""
        if not self.auth_code:
            raise AccountBlocked(f"{self.vendor} is not authorized: set {self.auth_code_setting}")
        self.wait_turn()
        with self.db.transaction() as s:
            row = account_row(s, self.account, lock=True)
            if row.refresh_token_enc is not None:
                return  # another process exchanged it while we waited
            self._store(row, self._grant(row, grant_type="authorization_code", code=self.auth_code))
        log.info("%s: authorization code exchanged for tokens", self.account)

    def exchange(self, code: str, also=lambda row: None) -> None:
        """An admin's fresh authorization (the console): trade its code and replace whatever tokens were stored;
        `also(row)` writes what goes with them in the same transaction. Nothing is stored when it is refused."""
        self.wait_turn()
        answer = self._grant(grant_type="authorization_code", code=code)
        with self.db.transaction() as s:
            row = account_row(s, self.account, lock=True)
            self._store(row, answer)
            also(row)
        log.info("%s: authorization code from the console exchanged for tokens", self.account)

    def _stored_access_token(self) -> str | None:
        with self.db.transaction() as s:
            return self._decrypt(account_row(s, self.account).access_token_enc)

    def access_token(self) -> str:
        if self._cached is None:
            self._cached = self._stored_access_token()
        if self._cached is None:
            self.exchange_code()  # no tokens yet, e.g. the token endpoint was down at start-up
            self._cached = self._cached or self._stored_access_token()
        return self._cached

    def refresh(self, rejected: str) -> str:
        self.wait_turn()
        with self.db.transaction() as s:
            row = account_row(s, self.account, lock=True)
            current = self._decrypt(row.access_token_enc)
            if current and current != rejected:
                self._cached = current  # another worker refreshed while we waited for the lock
                return current
            refresh_token = self._decrypt(row.refresh_token_enc)
            if not refresh_token:
                raise AccountBlocked(f"{self.vendor} is not authorized: no refresh token stored")
            token = self._store(row, self._grant(row, grant_type="refresh_token", refresh_token=refresh_token))
        log.info("%s: access token refreshed", self.account)
        return token


def exchange_at_start(db: Database, name: str, tokens: OAuthTokens, auth_code: str) -> None:
    """Trade the authorization code at start, so a bad code shows at once (the target pauses with the
    reason); when the token endpoint is down, the first request does it."""
    if tokens.has_tokens() or not auth_code:
        return
    try:
        tokens.exchange_code()
    except AccountBlocked as exc:  # a spent or wrong code: say so and wait for an admin
        pause(db, name, exc.message)
    except TransientError as exc:
        log.warning("%s token endpoint unavailable at start-up (%s); will retry", name, exc.message)
