"""amoCRM as the registry knows it: its settings read into its client, target and planning."""
from __future__ import annotations

import re

from connector.core.config import ConfigError
from connector.core.accounts import SharedRateLimiter
from connector.core.db import Database
from connector.delivery.contract import AccountBlocked
from connector.delivery.kit import TargetKit
from connector.delivery.oauth import OAuthTokens, exchange_at_start
from connector.delivery.targets.amocrm.client import AmoCrm, StaticToken
from connector.delivery.targets.amocrm.connection import AmoConnectionStore, Environment, InForceTokens
from connector.delivery.targets.amocrm.kinds import JobKind
from connector.delivery.targets.amocrm.target import AmoCrmOptions, AmoCrmPlanning, AmoCrmTarget

NAME = "amocrm"


def _amocrm(config, db: Database, *, session=None, exchange: bool = True):
    limiter = SharedRateLimiter(db, NAME, config.AMOCRM_RATE_LIMIT)
    environment = None
    if config.AMOCRM_LONG_LIVED_TOKEN:
        environment = StaticToken(config.AMOCRM_LONG_LIVED_TOKEN)
    elif config.AMOCRM_BASE_URL and config.AMOCRM_CLIENT_ID and config.AMOCRM_CLIENT_SECRET \
            and config.AMOCRM_REDIRECT_URI:
        environment = OAuthTokens(db, NAME, token_url=config.AMOCRM_BASE_URL.rstrip("/") + "/oauth2/access_token",
                                  client={"client_id": config.AMOCRM_CLIENT_ID,
                                          "client_secret": config.AMOCRM_CLIENT_SECRET,
                                          "redirect_uri": config.AMOCRM_REDIRECT_URI},
                                  secret_key=config.SECRET_KEY, auth_code=config.AMOCRM_AUTH_CODE,
                                  wait_turn=limiter.wait_turn, http=session)
    store = build_amocrm_connection(config, db, wait_turn=limiter.wait_turn, session=session)
    if exchange and isinstance(environment, OAuthTokens) and not _console_connected(store):
        exchange_at_start(db, NAME, environment, config.AMOCRM_AUTH_CODE)
    # The console's connection, once an admin saved one, wins over the environment's, in every process.
    tokens = InForceTokens(store, environment, config.AMOCRM_BASE_URL)
    adapter = AmoCrm(tokens.base_url, tokens, limiter.wait_turn, session=session)
    return adapter, limiter


def _console_connected(store) -> bool:
    """A connection saved in the console (one SECRET_KEY no longer opens counts: the first request says so)."""
    try:
        return store.current() is not None
    except AccountBlocked:
        return True


def build_amocrm_connection(config, db: Database, *, wait_turn=lambda: None, session=None):
    """amoCRM's connection as the console saves it and every process reads it."""
    environment = Environment(config.AMOCRM_BASE_URL.rstrip("/"), config.AMOCRM_CLIENT_ID,
                              config.AMOCRM_CLIENT_SECRET, config.AMOCRM_REDIRECT_URI, config.AMOCRM_LONG_LIVED_TOKEN)
    return AmoConnectionStore(db, environment, config.SECRET_KEY, public_base_url=config.PUBLIC_BASE_URL,
                              authorize_url=config.AMOCRM_AUTHORIZE_URL, wait_turn=wait_turn, http=session)


def delivery_options(config):
    """amoCRM's planning rules."""
    return AmoCrmPlanning(crm=NAME, log_calls=config.AMOCRM_LOG_CALLS,
                           survey_wait_seconds=config.SURVEY_WAIT_SECONDS,
                           score_field_id=config.AMOCRM_SCORE_FIELD_ID, low_score_task=config.LOW_SCORE_TASK)


def _amocrm_target(config, db: Database, **options):
    adapter, limiter = _amocrm(config, db, **options)
    return AmoCrmTarget(adapter, AmoCrmOptions(delivery=delivery_options(config),
                                               public_base_url=config.PUBLIC_BASE_URL, secret_key=config.SECRET_KEY,
                                               create_contacts=config.AMOCRM_CREATE_CONTACTS,
                                               task_hours=config.LOW_SCORE_TASK_HOURS,
                                               task_template=config.LOW_SCORE_TASK_TEMPLATE), limiter)


def _build(config, db: Database, *, plannings: tuple = (), session=None):
    return _amocrm_target(config, db, session=session)


def _read_users(config, db: Database, *, session=None):
    return _amocrm(config, db, session=session, exchange=False)[0].users


def validate(config) -> None:
    """amoCRM's settings. CRM=amocrm without AMOCRM_BASE_URL and keys is allowed: an admin connects amoCRM on
    the settings page; until then the target is paused with that reason."""
    if config.AMOCRM_RATE_LIMIT <= 0:
        raise ConfigError(f"AMOCRM_RATE_LIMIT: must be positive, got {config.AMOCRM_RATE_LIMIT}")
    if config.AMOCRM_BASE_URL and not re.fullmatch(r"https?://[^/\s]+/?", config.AMOCRM_BASE_URL):
        raise ConfigError(f"AMOCRM_BASE_URL: expected https://<subdomain>.amocrm.ru, got {config.AMOCRM_BASE_URL!r}")


KIT = TargetKit(NAME, tuple(JobKind), planning=delivery_options, build=_build, user_map_setting="AMOCRM_USER_MAP",
                read_users=_read_users, validate=validate)
