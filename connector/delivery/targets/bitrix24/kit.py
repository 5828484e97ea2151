"""Bitrix24 as the registry knows it: its settings read into its REST client, target and planning."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from connector.core.config import ConfigError
from connector.core.accounts import SharedRateLimiter
from connector.core.db import Database
from connector.delivery.kit import TargetKit
from connector.delivery.oauth import exchange_at_start
from connector.delivery.targets.bitrix24.client import Bitrix24Api
from connector.delivery.targets.bitrix24.install import Bitrix24Tokens, InstallStore, UninstallHandler, handler_url
from connector.delivery.targets.bitrix24.kinds import JobKind
from connector.delivery.targets.bitrix24.target import (NAME, Bitrix24Options, Bitrix24Planning, Bitrix24Target,
                                                       TodoReader)

PREFIX = "BITRIX24_"


@dataclass(frozen=True)
class Bitrix24Settings:
    """Bitrix24's own settings, each read from BITRIX24_<NAME> (settings.example.env documents them)."""

    portal_url: str = ""  # empty: the portal that installed the application from the settings page
    client_id: str = ""
    client_secret: str = ""  # secret
    auth_code: str = ""  # secret
    # The code exchange, and renewals until the portal names a trusted server (install.py)
    oauth_url: str = "https://oauth.bitrix24.tech/oauth/token/"
    user_map: dict = field(default_factory=dict)
    rate_limit: float = 2.0
    create_crm: bool = False
    score_field: str = ""
    low_score_field: str = ""
    default_user_id: int = 0  # owns calls with no operator (or one no Bitrix24 user has); 0: none


def settings_of(config) -> Bitrix24Settings:
    return config.section(NAME, Bitrix24Settings, PREFIX)


def build_bitrix24_install(config, db: Database):
    """The Bitrix24 portal that installed the application from the console (its events' handler)."""
    return InstallStore(db, config.SECRET_KEY)


def _bitrix24(config, db: Database, *, session=None, exchange: bool = True):
    """The portal's REST client and its rate limiter."""
    own = settings_of(config)
    # The portal's limit is a leaky bucket of 50 draining at the rate (docs limits.md): jitter waits in the
    # bucket, so requests go at the drain rate itself; a 503 QUERY_LIMIT_EXCEEDED (another application on the
    # portal) holds the slot for everyone.
    limiter = SharedRateLimiter(db, NAME, own.rate_limit, headroom=1.0)
    client = {"client_id": own.client_id, "client_secret": own.client_secret}
    # Renewed at the OAuth server the portal named at install (and each refresh since), else at
    # BITRIX24_OAUTH_URL (connector.delivery.targets.bitrix24.install says why the portal's wins).
    tokens = Bitrix24Tokens(db, NAME, token_url=own.oauth_url, secret_key=config.SECRET_KEY,
                            client=client, auth_code=own.auth_code, wait_turn=limiter.wait_turn,
                            http=session, grant_in_query=True, vendor="Bitrix24",
                            auth_code_setting="BITRIX24_AUTH_CODE (or install the application: settings page)")
    if exchange:
        exchange_at_start(db, NAME, tokens, own.auth_code)
    # The portal installed from the settings page wins over BITRIX24_PORTAL_URL, read at each request.
    return Bitrix24Api(own.portal_url, tokens, limiter.wait_turn, session=session,
                       installed_portal=build_bitrix24_install(config, db).portal_url), limiter


def _bitrix24_target(config, db: Database, *, session=None):
    own = settings_of(config)
    api, limiter = _bitrix24(config, db, session=session)
    uninstall = UninstallHandler(db, handler_url(config.PUBLIC_BASE_URL, config.SECRET_KEY), api.call)
    options = Bitrix24Options(public_base_url=config.PUBLIC_BASE_URL, secret_key=config.SECRET_KEY,
                              create_crm=own.create_crm,
                              score_field=own.score_field,
                              low_score_field=own.low_score_field,
                              task_hours=config.LOW_SCORE_TASK_HOURS, task_template=config.LOW_SCORE_TASK_TEMPLATE,
                              default_user_id=own.default_user_id)
    return Bitrix24Target(api, options, _planning(config), limiter, uninstall=uninstall)


def _planning(config) -> Bitrix24Planning:
    return Bitrix24Planning(config.SURVEY_WAIT_SECONDS, config.LOW_SCORE_TASK)


def _build(config, db: Database, *, plannings: tuple = (), session=None):
    return _bitrix24_target(config, db, session=session)


def _read_users(config, db: Database, *, session=None):
    return _bitrix24(config, db, session=session, exchange=False)[0].users


def _read_tasks(config, db: Database, *, session=None):
    """What reads the follow-up to-dos back, through the portal's client and its rate limiter."""
    return TodoReader(_bitrix24(config, db, session=session, exchange=False)[0])


def validate(config) -> None:
    """Bitrix24's settings."""
    own = settings_of(config)
    # Without it the portal comes from the application's install (the settings page's handler URL).
    if own.portal_url and not own.portal_url.startswith(("https://", "http://")):
        raise ConfigError("BITRIX24_PORTAL_URL: expected https://<portal>.bitrix24.ru")
    if NAME in config.targets and not (own.client_id and own.client_secret):
        raise ConfigError("BITRIX24_CLIENT_ID: set it and BITRIX24_CLIENT_SECRET (the local application's keys)")
    if not 0 < own.rate_limit <= 5:
        raise ConfigError(f"BITRIX24_RATE_LIMIT: expected above 0 and at most 5, got {own.rate_limit}")
    if own.default_user_id < 0:
        raise ConfigError(f"BITRIX24_DEFAULT_USER_ID: expected a Bitrix24 user id, got {own.default_user_id}")
    for name, code in ((f"{PREFIX}SCORE_FIELD", own.score_field), (f"{PREFIX}LOW_SCORE_FIELD", own.low_score_field)):
        if code and not re.fullmatch(r"UF_CRM_[A-Z0-9_]{1,40}", code):
            raise ConfigError(f"{name}: expected a user field code like UF_CRM_QA_SCORE")


KIT = TargetKit(NAME, tuple(JobKind), planning=_planning, build=_build, settings_type=Bitrix24Settings, env_prefix=PREFIX,
                read_users=_read_users, validate=validate, read_tasks=_read_tasks)
