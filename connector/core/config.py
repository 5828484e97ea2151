"""Typed settings, read once from the environment (and `.env`).

Every setting is listed with its default in `settings.example.env`. An invalid
value stops start-up with one line naming the setting and what is wrong.
"""
from __future__ import annotations

import os
import secrets
import tempfile
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Mapping

from dotenv import load_dotenv


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


# Where MANGO's quality-control scores come from: extended call statistics in bulk (`stats`), the
# Contact Center API call by call (`cc`), or both (the statistics for every call, `cc/call/` between
# scans for the calls the statistics show the contact centre handled).
QUALITY_SOURCES = ("both", "stats", "cc")


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
    MANGO_API_KEY: str = ""
    MANGO_API_SALT: str = ""
    MANGO_API_URL: str = "https://app.mango-office.ru/vpbx/"
    MANGO_SURVEY_LOCATION: str = ""
    MANGO_QUALITY_API: bool = False
    MANGO_QUALITY_SOURCE: str = "both"  # stats, cc or both: where quality-control scores are pulled from
    MANGO_STATS_UTC_OFFSET: int = 3  # hours: the time zone MANGO reads a statistics period in
    MANGO_RATE_LIMIT: float = 5.0
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
    AMOCRM_BASE_URL: str = ""
    AMOCRM_CLIENT_ID: str = ""
    AMOCRM_CLIENT_SECRET: str = ""
    AMOCRM_REDIRECT_URI: str = ""
    AMOCRM_AUTH_CODE: str = ""
    AMOCRM_LONG_LIVED_TOKEN: str = ""
    AMOCRM_AUTHORIZE_URL: str = "https://www.amocrm.ru/oauth"  # amoCRM's authorization page (Kommo: its own)
    AMOCRM_LOG_CALLS: bool = True
    AMOCRM_SCORE_FIELD_ID: int = 0
    AMOCRM_RATE_LIMIT: float = 7.0
    AMOCRM_USER_MAP: dict = field(default_factory=dict)
    AMOCRM_CREATE_CONTACTS: bool = True
    BITRIX24_PORTAL_URL: str = ""
    BITRIX24_CLIENT_ID: str = ""
    BITRIX24_CLIENT_SECRET: str = ""
    BITRIX24_AUTH_CODE: str = ""
    # The code exchange, and renewals until the portal names a trusted server (connector.delivery.targets.bitrix24.install)
    BITRIX24_OAUTH_URL: str = "https://oauth.bitrix24.tech/oauth/token/"
    BITRIX24_USER_MAP: dict = field(default_factory=dict)
    BITRIX24_RATE_LIMIT: float = 2.0
    BITRIX24_CREATE_CRM: bool = False
    BITRIX24_SCORE_FIELD: str = ""
    BITRIX24_LOW_SCORE_FIELD: str = ""
    BITRIX24_DEFAULT_USER_ID: int = 0  # owns calls with no operator (or one no Bitrix24 user has); 0: none
    LOW_SCORE_TASK: bool = False
    LOW_SCORE_TASK_HOURS: int = 24
    LOW_SCORE_TASK_TEMPLATE: str = "Перезвонить клиенту: оценка {score}"
    WEBHOOK_TARGET_URL: str = ""
    WEBHOOK_TARGET_SECRET: str = ""
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

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, dotenv: bool = True) -> "Config":
        if environ is None:
            if dotenv:
                load_dotenv(override=False)
            environ = os.environ
        values = {}
        for f in fields(cls):
            raw = environ.get(f.name)
            if raw is None or raw == "":
                continue
            if f.name in ("AMOCRM_USER_MAP", "BITRIX24_USER_MAP"):
                values[f.name] = _user_map(f.name, raw)
            else:
                parse = _PARSERS.get(_type_of(f.type))
                values[f.name] = parse(f.name, raw) if parse else raw.strip()
        config = cls(**values)
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
        if not 0 < self.MANGO_RATE_LIMIT <= 10:
            raise ConfigError(f"MANGO_RATE_LIMIT: must be above 0 and at most MANGO's 10 per second, "
                              f"got {self.MANGO_RATE_LIMIT}")
        if self.MANGO_QUALITY_SOURCE not in QUALITY_SOURCES:
            raise ConfigError(f"MANGO_QUALITY_SOURCE: expected one of {', '.join(QUALITY_SOURCES)}, "
                              f"got {self.MANGO_QUALITY_SOURCE!r}")
        if not -12 <= self.MANGO_STATS_UTC_OFFSET <= 14:
            raise ConfigError(f"MANGO_STATS_UTC_OFFSET: hours from UTC, -12 to 14, got {self.MANGO_STATS_UTC_OFFSET}")
        # MANGO_QUALITY_API needs the PBX's key and salt, from here or entered in the console (checked there):
        # until a pair is in force no command is sent, and the settings page says MANGO is not connected.
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
        if not 1 <= self.LOW_SCORE_TASK_HOURS <= 24 * 90:
            raise ConfigError(f"LOW_SCORE_TASK_HOURS: expected 1 to 2160, got {self.LOW_SCORE_TASK_HOURS}")
        from connector.core.policy import template_problem

        if self.LOW_SCORE_TASK and (problem := template_problem(self.LOW_SCORE_TASK_TEMPLATE, self.QA_SCALE_MAX)):
            raise ConfigError(f"LOW_SCORE_TASK_TEMPLATE: {problem}")
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
        """The extension -> user map a target starts with (the settings API edits it from then on)."""
        return {"amocrm": self.AMOCRM_USER_MAP, "bitrix24": self.BITRIX24_USER_MAP}.get(target, {})

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


SECRET_SETTINGS = frozenset(
    {"SECRET_KEY", "ADMIN_TOKEN", "MANGO_API_SALT", "SCORES_WEBHOOK_SECRET",
     "AMOCRM_CLIENT_SECRET", "AMOCRM_AUTH_CODE", "AMOCRM_LONG_LIVED_TOKEN", "WEBHOOK_TARGET_SECRET",
     "BITRIX24_CLIENT_SECRET", "BITRIX24_AUTH_CODE"}
)


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
