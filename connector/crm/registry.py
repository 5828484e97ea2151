"""Builds the delivery targets the CRM setting names. Add a target here, nowhere else."""
from __future__ import annotations

import logging

from connector.crm import AccountBlocked, TransientError
from connector.accounts import SharedRateLimiter
from connector.crm.account import OAuthTokens, pause
from connector.crm.amocrm import AmoCrm, StaticToken
from connector.db import Database
from connector.outbox import DeliveryOptions

log = logging.getLogger(__name__)


def _amocrm(config, db: Database, *, session=None):
    limiter = SharedRateLimiter(db, "amocrm", config.AMOCRM_RATE_LIMIT)
    if config.AMOCRM_LONG_LIVED_TOKEN:
        tokens = StaticToken(config.AMOCRM_LONG_LIVED_TOKEN)
    else:
        tokens = OAuthTokens(db, "amocrm", token_url=config.AMOCRM_BASE_URL.rstrip("/") + "/oauth2/access_token",
                             client={"client_id": config.AMOCRM_CLIENT_ID, "client_secret": config.AMOCRM_CLIENT_SECRET,
                                     "redirect_uri": config.AMOCRM_REDIRECT_URI},
                             secret_key=config.SECRET_KEY, auth_code=config.AMOCRM_AUTH_CODE,
                             wait_turn=limiter.wait_turn, http=session)
        if not tokens.has_tokens() and config.AMOCRM_AUTH_CODE:
            try:  # exchange at start so a bad code shows at once; otherwise the first request does it
                tokens.exchange_code()
            except AccountBlocked as exc:  # a spent or wrong code: say so and wait for an admin
                pause(db, "amocrm", exc.message)
            except TransientError as exc:
                log.warning("amoCRM token endpoint unavailable at start-up (%s); will retry", exc.message)
    adapter = AmoCrm(config.AMOCRM_BASE_URL, tokens, limiter.wait_turn, session=session)
    return adapter, limiter


def delivery_options(config) -> DeliveryOptions:
    """amoCRM's planning rules."""
    return DeliveryOptions(crm="amocrm", log_calls=config.AMOCRM_LOG_CALLS,
                           survey_wait_seconds=config.SURVEY_WAIT_SECONDS,
                           score_field_id=config.AMOCRM_SCORE_FIELD_ID, low_score_task=config.LOW_SCORE_TASK)


def _amocrm_target(config, db: Database, **options):
    from connector.crm.amocrm_target import AmoCrmOptions, AmoCrmTarget

    adapter, limiter = _amocrm(config, db, **options)
    return AmoCrmTarget(adapter, AmoCrmOptions(delivery=delivery_options(config),
                                               public_base_url=config.PUBLIC_BASE_URL, secret_key=config.SECRET_KEY,
                                               create_contacts=config.AMOCRM_CREATE_CONTACTS,
                                               task_hours=config.LOW_SCORE_TASK_HOURS,
                                               task_template=config.LOW_SCORE_TASK_TEMPLATE), limiter)


def _webhook_target(config, db: Database, *, session=None):
    from connector.crm.webhook import WebhookTarget

    return WebhookTarget(config.WEBHOOK_TARGET_URL, config.WEBHOOK_TARGET_SECRET, session=session)


BUILDERS = {"amocrm": _amocrm_target, "webhook": _webhook_target}


def plannings(config) -> tuple:
    """Each configured target's planning rules, as ingest applies them."""
    from connector.crm.webhook import WebhookPlanning

    known = {"amocrm": lambda: delivery_options(config), "webhook": WebhookPlanning}
    return tuple(known[name]() for name in config.targets)


def build_target(name: str, config, db: Database, **options):
    """The delivery target `name` of the CRM setting."""
    return BUILDERS[name](config, db, **options)
