"""Builds the delivery targets the CRM setting names. Add a target here, nowhere else."""
from __future__ import annotations

import logging

from connector.core.accounts import SharedRateLimiter, pause
from connector.core.db import Database
from connector.delivery.contract import AccountBlocked, TransientError
from connector.delivery.oauth import OAuthTokens
from connector.delivery.targets.amocrm.client import AmoCrm, StaticToken

log = logging.getLogger(__name__)


def _exchange_at_start(db: Database, name: str, tokens: OAuthTokens, auth_code: str) -> None:
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


def _amocrm(config, db: Database, *, session=None, exchange: bool = True):
    from connector.delivery.targets.amocrm.connection import InForceTokens

    limiter = SharedRateLimiter(db, "amocrm", config.AMOCRM_RATE_LIMIT)
    environment = None
    if config.AMOCRM_LONG_LIVED_TOKEN:
        environment = StaticToken(config.AMOCRM_LONG_LIVED_TOKEN)
    elif config.AMOCRM_BASE_URL and config.AMOCRM_CLIENT_ID and config.AMOCRM_CLIENT_SECRET \
            and config.AMOCRM_REDIRECT_URI:
        environment = OAuthTokens(db, "amocrm", token_url=config.AMOCRM_BASE_URL.rstrip("/") + "/oauth2/access_token",
                                  client={"client_id": config.AMOCRM_CLIENT_ID,
                                          "client_secret": config.AMOCRM_CLIENT_SECRET,
                                          "redirect_uri": config.AMOCRM_REDIRECT_URI},
                                  secret_key=config.SECRET_KEY, auth_code=config.AMOCRM_AUTH_CODE,
                                  wait_turn=limiter.wait_turn, http=session)
    store = build_amocrm_connection(config, db, wait_turn=limiter.wait_turn, session=session)
    if exchange and isinstance(environment, OAuthTokens) and not _console_connected(store):
        _exchange_at_start(db, "amocrm", environment, config.AMOCRM_AUTH_CODE)
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
    from connector.delivery.targets.amocrm.connection import AmoConnectionStore, Environment

    environment = Environment(config.AMOCRM_BASE_URL.rstrip("/"), config.AMOCRM_CLIENT_ID,
                              config.AMOCRM_CLIENT_SECRET, config.AMOCRM_REDIRECT_URI, config.AMOCRM_LONG_LIVED_TOKEN)
    return AmoConnectionStore(db, environment, config.SECRET_KEY, public_base_url=config.PUBLIC_BASE_URL,
                              authorize_url=config.AMOCRM_AUTHORIZE_URL, wait_turn=wait_turn, http=session)


def build_bitrix24_install(config, db: Database):
    """The Bitrix24 portal that installed the application from the console (its events' handler)."""
    from connector.delivery.targets.bitrix24.install import InstallStore

    return InstallStore(db, config.SECRET_KEY)


def build_webhook_connection(config, db: Database):
    """The outbound webhook's URL and secret in force: the console's once saved, else the environment's."""
    from connector.delivery.targets.webhook import WebhookConnection

    return WebhookConnection(db, config.WEBHOOK_TARGET_URL, config.WEBHOOK_TARGET_SECRET, config.SECRET_KEY)


def delivery_options(config):
    """amoCRM's planning rules."""
    from connector.delivery.targets.amocrm.target import AmoCrmPlanning

    return AmoCrmPlanning(crm="amocrm", log_calls=config.AMOCRM_LOG_CALLS,
                           survey_wait_seconds=config.SURVEY_WAIT_SECONDS,
                           score_field_id=config.AMOCRM_SCORE_FIELD_ID, low_score_task=config.LOW_SCORE_TASK)


def _amocrm_target(config, db: Database, **options):
    from connector.delivery.targets.amocrm.target import AmoCrmOptions, AmoCrmTarget

    adapter, limiter = _amocrm(config, db, **options)
    return AmoCrmTarget(adapter, AmoCrmOptions(delivery=delivery_options(config),
                                               public_base_url=config.PUBLIC_BASE_URL, secret_key=config.SECRET_KEY,
                                               create_contacts=config.AMOCRM_CREATE_CONTACTS,
                                               task_hours=config.LOW_SCORE_TASK_HOURS,
                                               task_template=config.LOW_SCORE_TASK_TEMPLATE), limiter)


def _webhook_target(config, db: Database, *, session=None):
    from connector.delivery.targets.webhook import NAME, WebhookTarget

    # The CRMs beside it, with their defaults for high scores: each message says which of them writes the score.
    crm_defaults = {p.name: p.high_scores for p in plannings(config) if p.name != NAME}
    return WebhookTarget(config.WEBHOOK_TARGET_URL, config.WEBHOOK_TARGET_SECRET, session=session,
                         crm_defaults=crm_defaults, connection=build_webhook_connection(config, db))


def _bitrix24(config, db: Database, *, session=None, exchange: bool = True):
    """The portal's REST client and its rate limiter."""
    from connector.delivery.targets.bitrix24.client import Bitrix24Api
    from connector.delivery.targets.bitrix24.install import Bitrix24Tokens

    # The portal's limit is a leaky bucket of 50 draining at the rate (docs limits.md): jitter waits in the
    # bucket, so requests go at the drain rate itself; a 503 QUERY_LIMIT_EXCEEDED (another application on the
    # portal) holds the slot for everyone.
    limiter = SharedRateLimiter(db, "bitrix24", config.BITRIX24_RATE_LIMIT, headroom=1.0)
    client = {"client_id": config.BITRIX24_CLIENT_ID, "client_secret": config.BITRIX24_CLIENT_SECRET}
    # Renewed at the OAuth server the portal named at install (and each refresh since), else at
    # BITRIX24_OAUTH_URL (connector.delivery.targets.bitrix24.install says why the portal's wins).
    tokens = Bitrix24Tokens(db, "bitrix24", token_url=config.BITRIX24_OAUTH_URL, secret_key=config.SECRET_KEY,
                            client=client, auth_code=config.BITRIX24_AUTH_CODE, wait_turn=limiter.wait_turn,
                            http=session, grant_in_query=True, vendor="Bitrix24",
                            auth_code_setting="BITRIX24_AUTH_CODE (or install the application: settings page)")
    if exchange:
        _exchange_at_start(db, "bitrix24", tokens, config.BITRIX24_AUTH_CODE)
    # The portal installed from the settings page wins over BITRIX24_PORTAL_URL, read at each request.
    return Bitrix24Api(config.BITRIX24_PORTAL_URL, tokens, limiter.wait_turn, session=session,
                       installed_portal=build_bitrix24_install(config, db).portal_url), limiter


def _bitrix24_target(config, db: Database, *, session=None):
    from connector.delivery.targets.bitrix24.install import UninstallHandler, handler_url
    from connector.delivery.targets.bitrix24.target import Bitrix24Options, Bitrix24Planning, Bitrix24Target

    api, limiter = _bitrix24(config, db, session=session)
    uninstall = UninstallHandler(db, handler_url(config.PUBLIC_BASE_URL, config.SECRET_KEY), api.call)
    options = Bitrix24Options(public_base_url=config.PUBLIC_BASE_URL, secret_key=config.SECRET_KEY,
                              create_crm=config.BITRIX24_CREATE_CRM,
                              score_field=config.BITRIX24_SCORE_FIELD,
                              low_score_field=config.BITRIX24_LOW_SCORE_FIELD,
                              task_hours=config.LOW_SCORE_TASK_HOURS, task_template=config.LOW_SCORE_TASK_TEMPLATE,
                              default_user_id=config.BITRIX24_DEFAULT_USER_ID)
    return Bitrix24Target(api, options, Bitrix24Planning(config.SURVEY_WAIT_SECONDS, config.LOW_SCORE_TASK), limiter,
                          uninstall=uninstall)


BUILDERS = {"amocrm": _amocrm_target, "bitrix24": _bitrix24_target, "webhook": _webhook_target}


def build_user_reader(name: str, config, db: Database, *, session=None):
    """What reads target `name`'s users (`() -> list[CrmUser]`), through the target's own client and rate
    limiter; None for a target without users (the webhook). It never trades an authorization code: the
    delivery worker does that at its start."""
    if name == "amocrm":
        return _amocrm(config, db, session=session, exchange=False)[0].users
    if name == "bitrix24":
        return _bitrix24(config, db, session=session, exchange=False)[0].users
    return None


def plannings(config) -> tuple:
    """Each configured target's planning rules, as ingest applies them."""
    from connector.delivery.targets.webhook import WebhookPlanning

    from connector.delivery.targets.bitrix24.target import Bitrix24Planning

    known = {"amocrm": lambda: delivery_options(config), "webhook": WebhookPlanning,
             "bitrix24": lambda: Bitrix24Planning(config.SURVEY_WAIT_SECONDS, config.LOW_SCORE_TASK)}
    return tuple(known[name]() for name in config.targets)


def build_target(name: str, config, db: Database, **options):
    """The delivery target `name` of the CRM setting."""
    return BUILDERS[name](config, db, **options)
