"""amoCRM as the registry knows it: its settings read into its client, target and planning."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

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
VENDOR = "amoCRM"  # as people read it in a pause reason
PREFIX = "AMOCRM_"


@dataclass(frozen=True)
class AmoCrmSettings:
    """amoCRM's own settings, each read from AMOCRM_<NAME> (settings.example.env documents them)."""

    base_url: str = ""  # https://<subdomain>.amocrm.ru; empty: connected on the settings page
    client_id: str = ""
    client_secret: str = ""  # secret
    redirect_uri: str = ""
    auth_code: str = ""  # secret: traded once for tokens
    long_lived_token: str = ""  # secret
    authorize_url: str = "https://www.amocrm.ru/oauth"  # amoCRM's authorization page (Kommo: its own)
    log_calls: bool = True
    score_field_id: int = 0
    rate_limit: float = 7.0
    user_map: dict = field(default_factory=dict)
    create_contacts: bool = True


def settings_of(config) -> AmoCrmSettings:
    return config.section(NAME, AmoCrmSettings, PREFIX)


def _amocrm(config, db: Database, *, session=None, exchange: bool = True):
    own = settings_of(config)
    limiter = SharedRateLimiter(db, NAME, own.rate_limit)
    environment = None
    if own.long_lived_token:
        environment = StaticToken(own.long_lived_token)
    elif own.base_url and own.client_id and own.client_secret \
            and own.redirect_uri:
        environment = OAuthTokens(db, NAME, token_url=own.base_url.rstrip("/") + "/oauth2/access_token",
                                  client={"client_id": own.client_id,
                                          "client_secret": own.client_secret,
                                          "redirect_uri": own.redirect_uri},
                                  secret_key=config.SECRET_KEY, auth_code=own.auth_code,
                                  wait_turn=limiter.wait_turn, http=session, vendor=VENDOR,
                                  auth_code_setting=f"{PREFIX}AUTH_CODE")
    store = build_amocrm_connection(config, db, wait_turn=limiter.wait_turn, session=session)
    if exchange and isinstance(environment, OAuthTokens) and not _console_connected(store):
        exchange_at_start(db, NAME, environment, own.auth_code)
    # The console's connection, once an admin saved one, wins over the environment's, in every process.
    tokens = InForceTokens(store, environment, own.base_url)
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
    own = settings_of(config)
    environment = Environment(own.base_url.rstrip("/"), own.client_id,
                              own.client_secret, own.redirect_uri, own.long_lived_token)
    return AmoConnectionStore(db, environment, config.SECRET_KEY, public_base_url=config.PUBLIC_BASE_URL,
                              authorize_url=own.authorize_url, wait_turn=wait_turn, http=session)


def delivery_options(config):
    """amoCRM's planning rules."""
    own = settings_of(config)
    return AmoCrmPlanning(crm=NAME, log_calls=own.log_calls,
                           survey_wait_seconds=config.SURVEY_WAIT_SECONDS,
                           score_field_id=own.score_field_id, low_score_task=config.LOW_SCORE_TASK)


def _amocrm_target(config, db: Database, **options):
    own = settings_of(config)
    adapter, limiter = _amocrm(config, db, **options)
    return AmoCrmTarget(adapter, AmoCrmOptions(delivery=delivery_options(config),
                                               public_base_url=config.PUBLIC_BASE_URL, secret_key=config.SECRET_KEY,
                                               create_contacts=own.create_contacts,
                                               task_hours=config.LOW_SCORE_TASK_HOURS,
                                               task_template=config.LOW_SCORE_TASK_TEMPLATE), limiter)


def _build(config, db: Database, *, plannings: tuple = (), session=None):
    return _amocrm_target(config, db, session=session)


def _read_users(config, db: Database, *, session=None):
    return _amocrm(config, db, session=session, exchange=False)[0].users


def _read_tasks(config, db: Database, *, session=None):
    """What reads the follow-up tasks back: the client itself, with its shared rate limiter."""
    return _amocrm(config, db, session=session, exchange=False)[0]


def validate(config) -> None:
    """amoCRM's settings. CRM=amocrm without AMOCRM_BASE_URL and keys is allowed: an admin connects amoCRM on
    the settings page; until then the target is paused with that reason."""
    own = settings_of(config)
    if own.rate_limit <= 0:
        raise ConfigError(f"AMOCRM_RATE_LIMIT: must be positive, got {own.rate_limit}")
    if own.base_url and not re.fullmatch(r"https?://[^/\s]+/?", own.base_url):
        raise ConfigError(f"AMOCRM_BASE_URL: expected https://<subdomain>.amocrm.ru, got {own.base_url!r}")


KIT = TargetKit(NAME, tuple(JobKind), planning=delivery_options, build=_build, settings_type=AmoCrmSettings, env_prefix=PREFIX,
                read_users=_read_users, validate=validate, read_tasks=_read_tasks)
