"""Composition root: settings -> database -> use-case context -> HTTP faces and CLI."""
from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from flask import Flask

from connector.config import Config, ConfigError
from connector.db import Database
from connector.ingest import IngestContext
from connector.outbox import DeliveryOptions
from connector.threshold import policy_from_config

VAR_DIR = Path("var")


@dataclass
class Services:
    """What the faces need, in one place: `current_app.extensions["connector"]`."""

    config: Config
    db: Database
    ingest: IngestContext


def delivery_options(config: Config) -> DeliveryOptions:
    return DeliveryOptions(crm=config.CRM, log_calls=config.AMOCRM_LOG_CALLS,
                           survey_wait_seconds=config.SURVEY_WAIT_SECONDS,
                           score_field_id=config.AMOCRM_SCORE_FIELD_ID)


def build_services(config: Config) -> Services:
    return Services(
        config=config,
        db=Database(config.DATABASE_URL),
        ingest=IngestContext(initial_policy=policy_from_config(config), delivery=delivery_options(config),
                             survey_location=config.MANGO_SURVEY_LOCATION),
    )


def build_worker(config: Config, db: Database, **adapter_options):
    """The delivery worker for the configured CRM, or None when CRM=none."""
    if config.CRM == "none":
        return None
    from connector.crm import registry
    from connector.worker import DeliveryWorker, WorkerOptions

    adapter, limiter = registry.build(config, db, **adapter_options)
    opts = WorkerOptions(delivery=delivery_options(config), initial_policy=policy_from_config(config),
                         initial_user_map=config.AMOCRM_USER_MAP, public_base_url=config.PUBLIC_BASE_URL,
                         secret_key=config.SECRET_KEY, create_contacts=config.AMOCRM_CREATE_CONTACTS,
                         lease_seconds=config.WORKER_LEASE_SECONDS, poll_seconds=config.WORKER_POLL_SECONDS)
    return DeliveryWorker(db, adapter, opts, limiter=limiter)


def create_app(config: Config | None = None) -> Flask:
    config = (config or Config.from_env()).with_secret_key(VAR_DIR)
    services = build_services(config)

    app = Flask(__name__)
    app.config.update(SECRET_KEY=config.SECRET_KEY, MAX_CONTENT_LENGTH=config.MAX_BODY_BYTES,
                      MAX_FORM_MEMORY_SIZE=config.MAX_BODY_BYTES)
    app.json.ensure_ascii = False  # tags and score texts are Russian
    app.json.sort_keys = False  # keep the documented field order of a call
    app.extensions["connector"] = services

    from webhooks import api, errors, mango, recordings

    errors.register_error_handlers(app)
    app.register_blueprint(mango.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(api.health_bp)
    app.register_blueprint(recordings.bp)

    # The same commands under `flask --app app ...` as under `connector ...`.
    from commands.cli import cli

    for name, command in cli.commands.items():
        app.cli.add_command(command, name)
    return app


def main(argv: list[str] | None = None) -> None:
    """The `connector` console script."""
    from commands.cli import cli

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cli.main(args=argv, prog_name="connector", standalone_mode=True)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
