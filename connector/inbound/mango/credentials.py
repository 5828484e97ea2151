"""MANGO's API key and salt: from the environment (MANGO_API_KEY, MANGO_API_SALT) or entered by an admin
in the console. The console's pair, once saved, wins: it is the newer, deliberate choice, and the page
shows which is in force. It is stored encrypted in the PBX account's row as the CRM tokens are
(`connector.core.accounts.token_cipher`), and audited with the key's and salt's last characters only.

Every process reads the pair in force through a `CredentialStore`, without a restart:
- the command API reads a copy at most a second old, so a pair saved in one process signs the commands of
  every other (workers included) within a second;
- a callback costs one INSERT and nothing else, so its check reads no row: it uses a copy up to
  `CALLBACK_SECONDS` old, and re-reads at once (at most once a second) when that copy refuses a signature.
  A new pair is therefore accepted at once everywhere, and a replaced one refused within `CALLBACK_SECONDS`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone

from cryptography.fernet import InvalidToken
from sqlalchemy.orm import Session

from connector.core.accounts import token_cipher
from connector.core.db import Database
from connector.core.models import SettingsAudit
from connector.core.secrets import Source, masked
from connector.inbound.mango.models import mango_row

AUDIT_SCOPE = "mango_credentials"
CACHE_SECONDS = 1.0  # how long the command API trusts its copy: a saved pair reaches every process within it
CALLBACK_SECONDS = 30.0  # how long the callbacks' check trusts its copy (a refused signature re-reads at once)


@dataclass(frozen=True)
class Credentials:
    api_key: str
    salt: str
    source: Source

    @property
    def configured(self) -> bool:
        return bool(self.api_key and self.salt)

    def shown(self) -> dict:
        """The pair as the console and the audit show it: never in full."""
        return {"api_key": masked(self.api_key), "api_salt": masked(self.salt), "source": self.source.value}


@dataclass(frozen=True)
class StoredState:
    """What the settings page says: the pair in force, the console's and the environment's, shown masked."""

    in_force: Credentials
    console: Credentials | None
    environment: Credentials | None
    saved_at: datetime | None
    unreadable: bool  # a console pair that SECRET_KEY no longer decrypts: the environment's is used


class CredentialStore:
    def __init__(self, db: Database, env_key: str, env_salt: str, secret_key: str, *,
                 cache_seconds: float = CACHE_SECONDS, clock=time.monotonic):
        self.db = db
        self.environment = Credentials(env_key, env_salt, Source.ENVIRONMENT) if env_key and env_salt else None
        self.cipher = token_cipher(secret_key)
        self.cache_seconds, self.clock = cache_seconds, clock
        self._copy: tuple[float, Credentials] | None = None

    # --- reading ---------------------------------------------------------------------------
    def current(self, max_age: float | None = None) -> Credentials:
        """The pair in force, as this process read it at most `max_age` (`cache_seconds`) ago."""
        copy = self._copy
        if copy is not None and self.clock() - copy[0] < (self.cache_seconds if max_age is None else max_age):
            return copy[1]
        return self._read()

    def after_refusal(self) -> Credentials | None:
        """The pair read again now, after the copy refused a callback's signature (another process may have
        saved a new pair); None when the copy is less than `cache_seconds` old, so a flood of forged callbacks
        costs at most one read a second."""
        copy = self._copy
        if copy is not None and self.clock() - copy[0] < self.cache_seconds:
            return None
        return self._read()

    def warm(self) -> None:
        """Read the pair once at start, so the first callback reads nothing (no-op before the migrations)."""
        from sqlalchemy.exc import SQLAlchemyError

        try:
            self._read()
        except SQLAlchemyError:
            pass

    def _read(self) -> Credentials:
        with self.db.reading() as s:
            credentials = self.state(s).in_force
        self._copy = (self.clock(), credentials)
        return credentials

    def state(self, session: Session) -> StoredState:
        row = mango_row(session)
        console, unreadable = None, False
        if row.api_key_enc and row.api_salt_enc:
            try:
                console = Credentials(self._decrypt(row.api_key_enc), self._decrypt(row.api_salt_enc), Source.CONSOLE)
            except InvalidToken:
                unreadable = True  # SECRET_KEY changed since: enter the pair again
        in_force = console or self.environment or Credentials("", "", Source.NONE)
        return StoredState(in_force, console, self.environment, row.credentials_saved_at, unreadable)

    def _decrypt(self, value: str) -> str:
        return self.cipher.decrypt(value.encode()).decode()

    # --- writing (an admin, after the pair answered a harmless command) ----------------------
    def save(self, session: Session, api_key: str, salt: str, actor: str) -> None:
        """Store the pair encrypted, in force from now on in every process; audited with masked values."""
        row = mango_row(session, lock=True)
        before = self._shown_row(row)
        row.api_key_enc = self.cipher.encrypt(api_key.encode()).decode()
        row.api_salt_enc = self.cipher.encrypt(salt.encode()).decode()
        row.credentials_saved_at = datetime.now(timezone.utc)
        after = Credentials(api_key, salt, Source.CONSOLE).shown()
        session.add(SettingsAudit(scope=AUDIT_SCOPE, actor=actor, before=before, after=after))
        self._copy = None  # this process uses it at once

    def forget(self, session: Session, actor: str) -> bool:
        """Drop the console's pair: the environment's is in force again. False when none was saved."""
        row = mango_row(session, lock=True)
        if not row.api_key_enc:
            return False
        before = self._shown_row(row)
        row.api_key_enc = row.api_salt_enc = row.credentials_saved_at = None
        after = self.environment.shown() if self.environment else {"source": Source.NONE.value}
        session.add(SettingsAudit(scope=AUDIT_SCOPE, actor=actor, before=before, after=after))
        self._copy = None
        return True

    def _shown_row(self, row) -> dict:
        try:
            if row.api_key_enc and row.api_salt_enc:
                return Credentials(self._decrypt(row.api_key_enc), self._decrypt(row.api_salt_enc),
                                   Source.CONSOLE).shown()
        except InvalidToken:
            return {"source": Source.CONSOLE.value}
        return self.environment.shown() if self.environment else {"source": Source.NONE.value}
