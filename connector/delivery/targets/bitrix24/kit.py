"""Bitrix24 as the registry knows it: its settings read into its REST client, target and planning."""
from __future__ import annotations

import re

from connector.core.config import ConfigError
from connector.core.accounts import SharedRateLimiter
from connector.core.db import Database
from connector.delivery.kit import TargetKit
from connector.delivery.oauth import exchange_at_start
from connector.delivery.targets.bitrix24.client import Bitrix24Api
from connector.delivery.targets.bitrix24.install import Bitrix24Tokens, InstallStore, UninstallHandler, handler_url
from connector.delivery.targets.bitrix24.kinds import JobKind
from connector.delivery.targets.bitrix24.target import NAME, Bitrix24Options, Bitrix24Planning, Bitrix24Target


def build_bitrix24_install(config, db: Database):
    """The Bitrix24 portal that installed the application from the console (its events' handler)."""
    return InstallStore(db, config.SECRET_KEY)


def _bitrix24(config, db: Database, *, session=None, exchange: bool = True):
    """The portal's REST client and its rate limiter."""
    # The portal's limit is a leaky bucket of 50 draining at the rate (docs limits.md): jitter waits in the
    # bucket, so requests go at the drain rate itself; a 503 QUERY_LIMIT_EXCEEDED (another application on the
    # portal) holds the slot for everyone.
    limiter = SharedRateLimiter(db, NAME, config.BITRIX24_RATE_LIMIT, headroom=1.0)
    client = {"client_id": config.BITRIX24_CLIENT_ID, "client_secret": config.BITRIX24_CLIENT_SECRET}
    # Renewed at the OAuth server the portal named at install (and each refresh since), else at
    # BITRIX24_OAUTH_URL (connector.delivery.targets.bitrix24.install says why the portal's wins).
    tokens = Bitrix24Tokens(db, NAME, token_url=config.BITRIX24_OAUTH_URL, secret_key=config.SECRET_KEY,
                            client=client, auth_code=config.BITRIX24_AUTH_CODE, wait_turn=limiter.wait_turn,
                            http=session, grant_in_query=True, vendor="Bitrix24",
                            auth_code_setting="BITRIX24_AUTH_CODE (or install the application: settings page)")
    if exchange:
        exchange_at_start(db, NAME, tokens, config.BITRIX24_AUTH_CODE)
    # The portal installed from the settings page wins over BITRIX24_PORTAL_URL, read at each request.
    return Bitrix24Api(config.BITRIX24_PORTAL_URL, tokens, limiter.wait_turn, session=session,
                       installed_portal=build_bitrix24_install(config, db).portal_url), limiter


def _bitrix24_target(config, db: Database, *, session=None):
    api, limiter = _bitrix24(config, db, session=session)
    uninstall = UninstallHandler(db, handler_url(config.PUBLIC_BASE_URL, config.SECRET_KEY), api.call)
    options = Bitrix24Options(public_base_url=config.PUBLIC_BASE_URL, secret_key=config.SECRET_KEY,
                              create_crm=config.BITRIX24_CREATE_CRM,
                              score_field=config.BITRIX24_SCORE_FIELD,
                              low_score_field=config.BITRIX24_LOW_SCORE_FIELD,
                              task_hours=config.LOW_SCORE_TASK_HOURS, task_template=config.LOW_SCORE_TASK_TEMPLATE,
                              default_user_id=config.BITRIX24_DEFAULT_USER_ID)
    return Bitrix24Target(api, options, _planning(config), limiter, uninstall=uninstall)


def _planning(config) -> Bitrix24Planning:
    return Bitrix24Planning(config.SURVEY_WAIT_SECONDS, config.LOW_SCORE_TASK)


def _build(config, db: Database, *, plannings: tuple = (), session=None):
    return _bitrix24_target(config, db, session=session)


def _read_users(config, db: Database, *, session=None):
    return _bitrix24(config, db, session=session, exchange=False)[0].users


def validate(config) -> None:
    """Bitrix24's settings."""
    # Without it the portal comes from the application's install (the settings page's handler URL).
    if config.BITRIX24_PORTAL_URL and not config.BITRIX24_PORTAL_URL.startswith(("https://", "http://")):
        raise ConfigError("BITRIX24_PORTAL_URL: expected https://<portal>.bitrix24.ru")
    if NAME in config.targets and not (config.BITRIX24_CLIENT_ID and config.BITRIX24_CLIENT_SECRET):
        raise ConfigError("BITRIX24_CLIENT_ID: set it and BITRIX24_CLIENT_SECRET (the local application's keys)")
    if not 0 < config.BITRIX24_RATE_LIMIT <= 5:
        raise ConfigError(f"BITRIX24_RATE_LIMIT: expected above 0 and at most 5, got {config.BITRIX24_RATE_LIMIT}")
    if config.BITRIX24_DEFAULT_USER_ID < 0:
        raise ConfigError(f"BITRIX24_DEFAULT_USER_ID: expected a Bitrix24 user id, got {config.BITRIX24_DEFAULT_USER_ID}")
    for name in ("BITRIX24_SCORE_FIELD", "BITRIX24_LOW_SCORE_FIELD"):
        if getattr(config, name) and not re.fullmatch(r"UF_CRM_[A-Z0-9_]{1,40}", getattr(config, name)):
            raise ConfigError(f"{name}: expected a user field code like UF_CRM_QA_SCORE")


KIT = TargetKit(NAME, tuple(JobKind), planning=_planning, build=_build, user_map_setting="BITRIX24_USER_MAP",
                read_users=_read_users, validate=validate)
