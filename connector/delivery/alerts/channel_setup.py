"""The alert channels' set-up: the SMTP server and the Telegram bot's token, from the environment (SMTP_*,
TELEGRAM_BOT_TOKEN) or saved by an admin in the console. The console's, once saved, wins, as the PBX's key does
(`connector.inbound.mango.credentials`): it is the newer, deliberate choice, and the page shows which is in force.

The server's address, port, security, login and From address are settings (the runtime settings' `smtp` scope,
audited); its password and the bot's token are secrets, encrypted in the channel's account row with the tokens'
cipher and audited with their last characters only. Every process reads what is in force when it sends, through
a copy at most CACHE_SECONDS old (`ChannelSetupStore`), so a saved server or token is used without a restart.
"""
from __future__ import annotations

import time
from email.utils import parseaddr
from dataclasses import dataclass, replace

from cryptography.fernet import InvalidToken
from sqlalchemy import select
from sqlalchemy.orm import Session

from connector.core.accounts import account_row, token_cipher
from connector.core.alerting import Channel
from connector.core.config import BOT_TOKEN
from connector.core.db import Database
from connector.core.models import Account, SettingsAudit
from connector.core.policy import PolicyError
from connector.core.runtime_settings import scope_values, update_scope
from connector.core.secrets import Source, masked
from connector.delivery.mail import MailSecurity, MailSettings, mail_settings

EMAIL_ACCOUNT, TELEGRAM_ACCOUNT = Channel.EMAIL.value, Channel.TELEGRAM.value  # their `accounts` rows
SMTP_SCOPE = "smtp"
TOKEN_AUDIT = "telegram_bot"
CACHE_SECONDS = 5.0
FIELDS = ("host", "port", "security", "username", "sender")


@dataclass(frozen=True)
class ChannelSetup:
    """What each channel sends with now, and where it comes from."""

    mail: MailSettings | None
    mail_source: Source
    bot_token: str | None
    bot_source: Source

    @property
    def channels(self) -> tuple[Channel, ...]:
        return tuple(c for c, on in ((Channel.EMAIL, self.mail is not None), (Channel.TELEGRAM, bool(self.bot_token)))
                     if on)

    def shown(self) -> dict:
        """As the console and the API show it: never a password or a token in full."""
        mail = None if self.mail is None else {
            "host": self.mail.host, "port": self.mail.port, "security": self.mail.security.value,
            "username": self.mail.username, "sender": self.mail.sender,
            "password": masked(self.mail.password) if self.mail.password else ""}
        return {"email": {"source": self.mail_source.value, "server": mail},
                "telegram": {"source": self.bot_source.value,
                             "token": masked(self.bot_token) if self.bot_token else ""}}


def available_channels(session: Session, environment: tuple[Channel, ...]) -> tuple[Channel, ...]:
    """The channels set up, in the environment (`environment`) or in the console: two small reads, no secret
    decrypted (planning asks this for a batch with an alert)."""
    values, _ = scope_values(session, SMTP_SCOPE)
    token = session.scalar(select(Account.secret_enc).where(Account.name == TELEGRAM_ACCOUNT))
    console = {Channel.EMAIL: bool(values.get("host")), Channel.TELEGRAM: bool(token)}
    return tuple(c for c in Channel if c in environment or console[c])


def environment_channels(config) -> tuple[Channel, ...]:
    return environment_setup(config).channels


def environment_setup(config) -> ChannelSetup:
    mail = mail_settings(config)
    token = config.TELEGRAM_BOT_TOKEN or None
    return ChannelSetup(mail, Source.ENVIRONMENT if mail else Source.NONE, token,
                        Source.ENVIRONMENT if token else Source.NONE)


def read_setup(session: Session, config) -> ChannelSetup:
    """The set-up in force: the console's server and token where saved, else the environment's."""
    setup = environment_setup(config)
    cipher = token_cipher(config.SECRET_KEY)
    values, _ = scope_values(session, SMTP_SCOPE)
    secrets = dict(session.execute(select(Account.name, Account.secret_enc).where(
        Account.name.in_((EMAIL_ACCOUNT, TELEGRAM_ACCOUNT)))).tuples().all())
    if values.get("host"):
        password = _decrypt(cipher, secrets.get(EMAIL_ACCOUNT)) or ""
        setup = replace(setup, mail=MailSettings(values["host"], values["port"], MailSecurity(values["security"]),
                                                 values["username"], password, values["sender"]),
                        mail_source=Source.CONSOLE)
    token = _decrypt(cipher, secrets.get(TELEGRAM_ACCOUNT))
    if token:
        setup = replace(setup, bot_token=token, bot_source=Source.CONSOLE)
    return setup


def _decrypt(cipher, value: str | None) -> str | None:
    if not value:
        return None
    try:
        return cipher.decrypt(value.encode()).decode()
    except InvalidToken:  # saved under another SECRET_KEY: the environment's is used, the page says so
        return None


def validate_mail(values: dict) -> dict:
    """The server's settings checked (PolicyError names the first field that is wrong), in stored form."""
    host = str(values.get("host") or "").strip()
    if not host or len(host) > 253 or any(ch.isspace() or ch in "/:@" for ch in host):
        raise PolicyError("host", "the mail server's name or address, e.g. smtp.yandex.ru")
    try:
        port = int(values.get("port") or 0)
    except (TypeError, ValueError):
        port = 0
    if not 1 <= port <= 65535:
        raise PolicyError("port", "a port from 1 to 65535 (587 for STARTTLS, 465 for TLS)")
    security = str(values.get("security") or "")
    if security not in tuple(MailSecurity):
        raise PolicyError("security", "starttls, tls or none")
    username = str(values.get("username") or "").strip()
    sender = str(values.get("sender") or "").strip()
    if len(username) > 254 or any(ord(ch) < 32 for ch in username):
        raise PolicyError("username", "at most 254 characters, one line")
    _name, address = parseaddr(sender)  # "Контроль качества <qa@example.ru>" or a bare address (RFC 5322 §3.4)
    if "@" not in address or len(sender) > 254 or any(ch.isspace() for ch in address) or "\n" in sender:
        raise PolicyError("sender", "the From address, e.g. qa@example.ru or Контроль качества <qa@example.ru>")
    return {"host": host, "port": port, "security": security, "username": username, "sender": sender}


def save_mail(session: Session, config, values: dict, password: str | None, *, actor: str) -> None:
    """Save the console's SMTP server; `password` None keeps the saved one, '' removes it."""
    stored = validate_mail(values)
    if password is not None and (len(password) > 512 or "\n" in password):
        raise PolicyError("password", "at most 512 characters, one line")
    update_scope(session, SMTP_SCOPE, stored, actor)
    if password is not None:
        row = account_row(session, EMAIL_ACCOUNT, lock=True)
        before = "set" if row.secret_enc else ""
        row.secret_enc = token_cipher(config.SECRET_KEY).encrypt(password.encode()).decode() if password else None
        session.add(SettingsAudit(scope=SMTP_SCOPE, actor=actor, before={"password": before},
                                  after={"password": masked(password) if password else ""}))


def forget_mail(session: Session, *, actor: str) -> None:
    """Back to the environment's server (or none)."""
    update_scope(session, SMTP_SCOPE, {name: "" for name in FIELDS}, actor)
    account_row(session, EMAIL_ACCOUNT, lock=True).secret_enc = None


def save_bot_token(session: Session, config, token: str | None, *, actor: str) -> None:
    """Save the console's bot token (None or '': back to the environment's, or none). A new bot starts reading
    its updates from the beginning and learns its name again."""
    token = (token or "").strip()
    if token and not BOT_TOKEN.fullmatch(token):
        raise PolicyError("token", "the token @BotFather gave, such as 123456:ABC-DEF1234ghIkl")
    row = account_row(session, TELEGRAM_ACCOUNT, lock=True)
    old = _decrypt(token_cipher(config.SECRET_KEY), row.secret_enc)
    if old == (token or None):
        return
    row.secret_enc = token_cipher(config.SECRET_KEY).encrypt(token.encode()).decode() if token else None
    session.add(SettingsAudit(scope=TOKEN_AUDIT, actor=actor, before={"token": masked(old) if old else ""},
                              after={"token": masked(token) if token else ""}))
    from connector.core.models import MessengerAccount
    state = session.get(MessengerAccount, TELEGRAM_ACCOUNT)
    if state is not None:
        state.bot_username, state.updates_offset, state.last_error = None, 0, None


class ChannelSetupStore:
    """The set-up in force as this process read it at most `cache_seconds` ago."""

    def __init__(self, db: Database, config, *, cache_seconds: float = CACHE_SECONDS, clock=time.monotonic):
        self.db, self.config, self.cache_seconds, self.clock = db, config, cache_seconds, clock
        self._copy: tuple[float, ChannelSetup] | None = None

    def current(self) -> ChannelSetup:
        copy = self._copy
        if copy is not None and self.clock() - copy[0] < self.cache_seconds:
            return copy[1]
        with self.db.reading() as s:
            setup = read_setup(s, self.config)
        self._copy = (self.clock(), setup)
        return setup
