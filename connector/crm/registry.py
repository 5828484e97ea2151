"""Builds the CRM adapter named by the CRM setting. Add a CRM here, nowhere else."""
from __future__ import annotations

import logging

from connector.crm import AccountBlocked, TransientError
from connector.accounts import SharedRateLimiter
from connector.crm.account import OAuthTokens, pause
from connector.crm.amocrm import AmoCrm, StaticToken
from connector.db import Database

log = logging.getLogger(__name__)


def _amocrm(config, db: Database, *, session=None):
    limiter = SharedRateLimiter(db, "amocrm", config.AMOCRM_RATE_LIMIT)
    if config.AMOCRM_LONG_LIVED_TOKEN:
        tokens = StaticToken(config.AMOCRM_LONG_LIVED_TOKEN)
    else:
        tokens = OAuthTokens(db, "amocrm", base_url=config.AMOCRM_BASE_URL, client_id=config.AMOCRM_CLIENT_ID,
                             client_secret=config.AMOCRM_CLIENT_SECRET, redirect_uri=config.AMOCRM_REDIRECT_URI,
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


BUILDERS = {"amocrm": _amocrm}


def build(config, db: Database, **options):
    return BUILDERS[config.CRM](config, db, **options)
