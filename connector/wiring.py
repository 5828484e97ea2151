"""Builds the domain's services from the settings. No Flask here: the web app (`app.py`) and the
command line both start from these, and the command line never imports the web app."""
from __future__ import annotations

from connector.config import Config
from connector.db import Database
from connector.ingest import IngestContext
from connector.outbox import DeliveryOptions
from connector.pbx.mango_api import MangoApi, MangoGuard
from connector.threshold import policy_from_config


def delivery_options(config: Config) -> DeliveryOptions:
    return DeliveryOptions(crm=config.CRM, log_calls=config.AMOCRM_LOG_CALLS,
                           survey_wait_seconds=config.SURVEY_WAIT_SECONDS,
                           score_field_id=config.AMOCRM_SCORE_FIELD_ID)


def ingest_context(config: Config) -> IngestContext:
    return IngestContext(initial_policy=policy_from_config(config), delivery=delivery_options(config),
                         survey_location=config.MANGO_SURVEY_LOCATION, poll_quality=config.MANGO_QUALITY_API)


def build_pbx_api(config: Config, db: Database, *, session=None) -> MangoApi:
    """The PBX's command API, shared by the recording player and the quality poller."""
    return MangoApi(config.MANGO_API_URL, config.MANGO_API_KEY, config.MANGO_API_SALT,
                    MangoGuard(db, config.MANGO_RATE_LIMIT), session=session)


def build_worker(config: Config, db: Database, **adapter_options):
    """The delivery worker for the configured CRM, or None when CRM=none."""
    if config.CRM == "none":
        return None
    from connector.crm import registry
    from connector.crm.amocrm_target import AmoCrmOptions, AmoCrmTarget
    from connector.worker import DeliveryWorker, WorkerOptions

    adapter, limiter = registry.build(config, db, **adapter_options)
    target = AmoCrmTarget(adapter, AmoCrmOptions(delivery=delivery_options(config),
                                                 public_base_url=config.PUBLIC_BASE_URL, secret_key=config.SECRET_KEY,
                                                 create_contacts=config.AMOCRM_CREATE_CONTACTS), limiter)
    opts = WorkerOptions(initial_policy=policy_from_config(config), initial_user_map=config.AMOCRM_USER_MAP,
                         lease_seconds=config.WORKER_LEASE_SECONDS, poll_seconds=config.WORKER_POLL_SECONDS)
    return DeliveryWorker(db, target, opts)


def build_poller(config: Config, db: Database, *, session=None):
    """The PBX quality poller, or None when MANGO_QUALITY_API is off. It runs whatever CRM is."""
    if not config.MANGO_QUALITY_API:
        return None
    from connector.poller import QualityPoller

    return QualityPoller(db, build_pbx_api(config, db, session=session), ingest_context(config),
                         survey_wait_seconds=config.SURVEY_WAIT_SECONDS, poll_seconds=config.WORKER_POLL_SECONDS)


def build_inbox(config: Config, db: Database, *, wake=None):
    """Applies the PBX events the webhook stored; `wake` lets a web thread of this process start it at once."""
    from connector.inbox import InboxApplier
    from connector.pbx import mango

    return InboxApplier(db, ingest_context(config), {"mango": mango.parse}, wake=wake,
                        idle_seconds=config.INBOX_POLL_SECONDS)


def build_loops(config: Config, db: Database, *, wake=None) -> list:
    """Every background loop this configuration needs: the inbox, delivery, PBX polling."""
    loops = (build_inbox(config, db, wake=wake), build_worker(config, db), build_poller(config, db))
    return [loop for loop in loops if loop is not None]
