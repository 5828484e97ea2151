"""Typed settings, read once from the environment (and `.env`).

Every setting is listed with its default in `settings.example.env`. An invalid
value stops start-up with one line naming the setting and what is wrong.
"""
from __future__ import annotations

import os
import re
import secrets
import tempfile
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Mapping, TypeVar

from dotenv import load_dotenv


# A bot's token as @BotFather gives it: the bot's id, a colon, a secret (https://core.telegram.org/bots/api#authorizing-your-bot).
BOT_TOKEN = re.compile(r"[0-9]{1,20}:[A-Za-z0-9_-]{20,100}")


class ConfigError(ValueError):
    """A setting has an invalid value; the message names it."""


def _bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name}: expected true or false, got {raw!r}")


def _int(name: str, raw: str) -> int:
    try:
        return int(raw.strip())
    except ValueError:
        raise ConfigError(f"{name}: expected an integer, got {raw!r}") from None


def _float(name: str, raw: str) -> float:
    try:
        return float(raw.strip())
    except ValueError:
        raise ConfigError(f"{name}: expected a number, got {raw!r}") from None


def _user_map(name: str, raw: str) -> dict[str, int]:
    """`101:5551,102:5552` -> {"101": 5551, "102": 5552}."""
    mapping: dict[str, int] = {}
    for pair in filter(None, (p.strip() for p in raw.split(","))):
        extension, sep, user = pair.partition(":")
        if not sep or not extension.strip() or not user.strip().isdigit():
            raise ConfigError(f"{name}: expected extension:user_id pairs like 101:5551, got {pair!r}")
        mapping[extension.strip()] = int(user)
    return mapping


_PARSERS = {bool: _bool, int: _int, float: _float}


def _is_time_zone(name: str) -> bool:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True

# The data directory defaults to `var` beside the project, not the working directory: a
# connector started from elsewhere must find the same database and the same SECRET_KEY.
PROJECT_DIR = Path(__file__).resolve().parents[2]
DEFAULT_DATA_DIR = str(PROJECT_DIR / "var")




@dataclass(frozen=True)
class Config:
    # Each field's default is the documented default; `env` metadata names the variable.
    DATA_DIR: str = DEFAULT_DATA_DIR
    DATABASE_URL: str = ""  # empty: sqlite:///<DATA_DIR>/connector.db
    HOST: str = "127.0.0.1"
    PORT: int = 8080
    PUBLIC_BASE_URL: str = "http://127.0.0.1:8080"
    SECRET_KEY: str = ""
    ADMIN_TOKEN: str = ""
    # Megabytes of recordings kept for targets that download them (Bitrix24); 0: never copied.
    RECORDING_COPIES_MB: int = 2048
    SCORES_WEBHOOK_SECRET: str = ""
    QA_ENABLED: bool = True
    QA_SCALE_MIN: int = 1
    QA_SCALE_MAX: int = 10
    QA_MAX_THRESHOLD: int = 9
    QA_TAG_TEMPLATE: str = "Оценка {score}"
    QA_SCORE_TEXT_TEMPLATE: str = "Оценка качества: {score}"
    QA_RATING_WINDOW_DAYS: int = 0
    QA_LOCK_SCORE: bool = True
    QA_HIGH_SCORES: str = "default"
    CRM: str = "none"
    LOW_SCORE_TASK: bool = False
    LOW_SCORE_TASK_HOURS: int = 24
    LOW_SCORE_TASK_TEMPLATE: str = "Перезвонить клиенту: оценка {score}"
    FOLLOW_UP_POLL_MINUTES: int = 10  # how often each open follow-up's CRM task is read back
    SURVEY_WAIT_SECONDS: int = 180
    MAX_BODY_BYTES: int = 64 * 1024
    WORKER_POLL_SECONDS: float = 1.0
    INBOX_POLL_SECONDS: float = 0.05
    WORKER_LEASE_SECONDS: float = 60.0
    SESSION_IDLE_HOURS: int = 8  # a console session ends after this long without a request
    SESSION_MAX_HOURS: int = 24  # and this long after its login, whatever happens
    CONSOLE_TIMEZONE: str = "Europe/Moscow"  # the account's zone until an admin chooses one (connector.core.time_zone)
    TRUSTED_PROXIES: int = 0  # reverse proxies in front that append X-Forwarded-For (1 behind nginx)
    HEAVY_READS_IN_CHILDREN: bool = True  # exports and reports built in child processes of lower priority
    LOG_LEVEL: str = "INFO"
    # The account's SMTP server, for alerts and report e-mails (connector.delivery.mail); no host: no e-mail.
    SMTP_HOST: str = ""
    SMTP_PORT: int = 587
    SMTP_SECURITY: str = "starttls"  # starttls (587), tls (465) or none (a relay on the same network)
    SMTP_USERNAME: str = ""
    SMTP_PASSWORD: str = ""  # never logged
    SMTP_FROM: str = ""  # the From address of every message
    # The Telegram bot that sends alerts (connector.delivery.telegram); no token: no Telegram.
    TELEGRAM_BOT_TOKEN: str = ""  # never logged
    TELEGRAM_API_URL: str = "https://api.telegram.org"
    # Each target's own settings, by its name: read from the environment names it declares (`read_section`).
    sections: Mapping[str, object] = field(default_factory=dict, repr=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, dotenv: bool = True,
                 sections: Mapping[str, tuple[type, str]] | None = None) -> "Config":
        """`sections`: each target's own settings, as name -> (its settings type, its environment prefix)."""
        if environ is None:
            if dotenv:
                load_dotenv(override=False)
            environ = os.environ
        values = {}
        for f in fields(cls):
            if f.name == "sections":
                continue
            raw = environ.get(f.name)
            if raw is None or raw == "":
                continue
            values[f.name] = _parse(f, f.name, raw)
        config = cls(**values, sections={name: read_section(settings_type, environ, prefix)
                                         for name, (settings_type, prefix) in (sections or {}).items()})
        if not config.DATABASE_URL:
            config = replace(config, DATABASE_URL=f"sqlite:///{Path(config.DATA_DIR).resolve() / 'connector.db'}")
        config.validate()
        return config

    def validate(self) -> None:
        if self.ADMIN_TOKEN and (problem := admin_token_problem(self.ADMIN_TOKEN)):
            raise ConfigError(f"ADMIN_TOKEN: {problem}")
        if not 1 <= self.SESSION_IDLE_HOURS <= self.SESSION_MAX_HOURS <= 24 * 30:
            raise ConfigError(f"SESSION_IDLE_HOURS: expected 1 to SESSION_MAX_HOURS ({self.SESSION_MAX_HOURS}, at "
                              f"most 720), got {self.SESSION_IDLE_HOURS}")
        if not _is_time_zone(self.CONSOLE_TIMEZONE):
            raise ConfigError(f"CONSOLE_TIMEZONE: expected a time zone name such as Europe/Moscow, "
                              f"got {self.CONSOLE_TIMEZONE!r}")
        if not 0 <= self.TRUSTED_PROXIES <= 5:
            raise ConfigError(f"TRUSTED_PROXIES: expected 0 to 5, got {self.TRUSTED_PROXIES}")
        if not 1 <= self.PORT <= 65535:
            raise ConfigError(f"PORT: must be between 1 and 65535, got {self.PORT}")
        names = [n.strip() for n in self.CRM.split(",")]
        if "none" in names and names != ["none"] or not all(names):
            raise ConfigError(f"CRM: expected none or a comma list of targets, got {self.CRM!r}")
        if self.SURVEY_WAIT_SECONDS < 0:
            raise ConfigError(f"SURVEY_WAIT_SECONDS: must not be negative, got {self.SURVEY_WAIT_SECONDS}")
        if not 0 < self.INBOX_POLL_SECONDS <= 10:
            raise ConfigError(f"INBOX_POLL_SECONDS: must be above 0 and at most 10, got {self.INBOX_POLL_SECONDS}")
        if self.RECORDING_COPIES_MB < 0:
            raise ConfigError(f"RECORDING_COPIES_MB: must be 0 (no copies) or more, got {self.RECORDING_COPIES_MB}")
        if self.WORKER_LEASE_SECONDS < 1 or self.WORKER_POLL_SECONDS <= 0:
            raise ConfigError("WORKER_LEASE_SECONDS: must be at least 1 (and WORKER_POLL_SECONDS positive)")
        if self.SCORES_WEBHOOK_SECRET and not is_webhook_secret(self.SCORES_WEBHOOK_SECRET):
            raise ConfigError("SCORES_WEBHOOK_SECRET: expected whsec_ followed by base64 (at least 24 bytes)")
        if not 1 <= self.FOLLOW_UP_POLL_MINUTES <= 24 * 60:
            raise ConfigError(f"FOLLOW_UP_POLL_MINUTES: expected 1 to 1440, got {self.FOLLOW_UP_POLL_MINUTES}")
        if not 1 <= self.LOW_SCORE_TASK_HOURS <= 24 * 90:
            raise ConfigError(f"LOW_SCORE_TASK_HOURS: expected 1 to 2160, got {self.LOW_SCORE_TASK_HOURS}")
        from connector.core.policy import template_problem

        if self.LOW_SCORE_TASK and (problem := template_problem(self.LOW_SCORE_TASK_TEMPLATE, self.QA_SCALE_MAX)):
            raise ConfigError(f"LOW_SCORE_TASK_TEMPLATE: {problem}")
        if self.SMTP_SECURITY not in ("starttls", "tls", "none"):
            raise ConfigError(f"SMTP_SECURITY: expected starttls, tls or none, got {self.SMTP_SECURITY!r}")
        if not 1 <= self.SMTP_PORT <= 65535:
            raise ConfigError(f"SMTP_PORT: must be between 1 and 65535, got {self.SMTP_PORT}")
        if self.TELEGRAM_BOT_TOKEN and not BOT_TOKEN.fullmatch(self.TELEGRAM_BOT_TOKEN):
            raise ConfigError("TELEGRAM_BOT_TOKEN: expected the token @BotFather gave, such as 123456:ABC-DEF1234ghIkl "
                              "(digits, a colon, then letters, digits, - and _)")
        if not self.TELEGRAM_API_URL.startswith(("https://", "http://")):
            raise ConfigError(f"TELEGRAM_API_URL: expected an http(s) address, got {self.TELEGRAM_API_URL!r}"[:200])
        if self.SMTP_HOST and "@" not in self.SMTP_FROM:
            raise ConfigError("SMTP_FROM: the From address of the e-mails (an address with @) must be set with "
                              "SMTP_HOST")
        if self.MAX_BODY_BYTES < 1024:
            raise ConfigError(f"MAX_BODY_BYTES: must be at least 1024, got {self.MAX_BODY_BYTES}")
        if not self.DATABASE_URL.split(":", 1)[0].startswith(("sqlite", "postgresql")):
            raise ConfigError("DATABASE_URL: expected a sqlite:// or postgresql+psycopg:// URL")
        # The runtime policy's own rules (scale, threshold, templates) live with the policy.
        from connector.core.policy import PolicyError, policy_from_config

        try:
            policy_from_config(self)
        except PolicyError as exc:
            raise ConfigError(f"{exc.env_name}: {exc.message}") from None

    @property
    def targets(self) -> tuple[str, ...]:
        """The delivery targets CRM lists, in its order; none: ()."""
        names = tuple(dict.fromkeys(n.strip() for n in self.CRM.split(",") if n.strip()))
        return () if names == ("none",) else names

    def user_map(self, target: str) -> dict:
        """The extension -> user map a target starts with (the settings API and the console edit it from then
        on): its section's `user_map`; empty for a target without users."""
        return dict(getattr(self.sections.get(target), "user_map", None) or {})

    def with_section(self, name: str, settings: object) -> "Config":
        """This Config with one section replaced (the PBX's key and salt in force, for instance)."""
        return replace(self, sections={**self.sections, name: settings})

    def section(self, name: str, settings_type: type[T], prefix: str) -> T:
        """A target's own settings (`connector.wiring.load_settings` reads each listed in the registry); their
        defaults when this Config was read without them."""
        found = self.sections.get(name)
        return found if found is not None else read_section(settings_type, {}, prefix)

    @property
    def secret_key_path(self) -> Path:
        return Path(self.DATA_DIR).resolve() / "secret_key"

    def with_secret_key(self) -> "Config":
        """SECRET_KEY, generated into DATA_DIR on first run when unset, so links survive restarts.

        The file is written whole with mode 0600 and then linked into place, which fails if it
        exists: of two processes starting at once, both end up reading the same key.
        """
        if self.SECRET_KEY:
            return self
        path = self.secret_key_path
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".secret_key.")  # mode 0600
            try:
                with os.fdopen(fd, "w") as f:
                    f.write(secrets.token_urlsafe(48))
                os.link(tmp, path)
            except FileExistsError:
                pass  # another process won the race: use its key
            finally:
                os.unlink(tmp)
        return replace(self, SECRET_KEY=path.read_text().strip())

    def __repr__(self) -> str:  # never print secrets
        return f"Config(DATABASE_URL={redact_url(self.DATABASE_URL)!r}, CRM={self.CRM!r})"


T = TypeVar("T")


def read_section(settings_type: type[T], environ: Mapping[str, str], prefix: str) -> T:
    """A section of settings (a target's own): each field `name` read from `PREFIX_NAME`, parsed by its type
    (a `dict` field is an extension -> user map such as `101:5551,102:5552`)."""
    values = {}
    for f in fields(settings_type):
        env_name = prefix + f.name.upper()
        raw = environ.get(env_name)
        if raw is not None and raw != "":
            values[f.name] = _parse(f, env_name, raw)
    return settings_type(**values)


def section_names(settings_type: type, prefix: str) -> list[str]:
    """The environment names a section is read from."""
    return [prefix + f.name.upper() for f in fields(settings_type)]


def _parse(f, env_name: str, raw: str):
    if str(f.type) == "dict":
        return _user_map(env_name, raw)
    parse = _PARSERS.get(_type_of(f.type))
    return parse(env_name, raw) if parse else raw.strip()


MIN_ADMIN_TOKEN = 32


def admin_token_problem(token: str) -> str | None:
    """Why ADMIN_TOKEN is too weak to open the whole API, or None. It is compared as given, so it must be
    long and not a repeated pattern: 32 characters or more, at least 12 of them different."""
    make = "make one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
    if len(token) < MIN_ADMIN_TOKEN:
        return f"at least {MIN_ADMIN_TOKEN} characters, got {len(token)}; {make}"
    if len(set(token)) < 12:
        return f"too repetitive (only {len(set(token))} different characters); {make}"
    return None


def is_webhook_secret(value: str) -> bool:
    import base64
    import binascii

    if not value.startswith("whsec_"):
        return False
    try:
        return len(base64.b64decode(value.removeprefix("whsec_"), validate=True)) >= 24
    except (binascii.Error, ValueError):
        return False


def _type_of(annotation) -> type | None:
    return {"bool": bool, "int": int, "float": float}.get(str(annotation))


def redact_url(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.split("@", 1)[1]
    return scheme + sep + rest
