"""Composition root: settings -> database -> use-case context -> HTTP faces and CLI."""
from __future__ import annotations

import sys
import threading
from dataclasses import dataclass

from flask import Flask

from connector.console.offload import HeavyReads
from connector.console.reports import RecentFigures
from connector.core.config import Config, ConfigError
from connector.core.db import Database
from connector.core.logs import configure_logging
from connector.inbound.inbox import InboxWriter
from connector.inbound.ingest import IngestContext
from connector.inbound.pbx import PbxCommands
from connector.inbound.mango.credentials import CredentialStore
from connector.wiring import build_pbx_api, build_pbx_credentials, ingest_context, load_settings


@dataclass
class Services:
    """What the faces need, in one place: `current_app.extensions["connector"]`."""

    config: Config
    db: Database
    ingest: IngestContext
    pbx: PbxCommands
    pbx_credentials: CredentialStore  # the PBX's key and salt in force (console or environment)
    intake: InboxWriter  # stores the webhook's messages, many per commit
    # Set after stored events commit: wakes the inbox worker embedded in this process.
    inbox_wake: threading.Event
    reads: HeavyReads  # exports and reports' figures, in child processes unless HEAVY_READS_IN_CHILDREN=false
    figures: RecentFigures  # the reports' figures as the faces ask for them (reads.figures, one at a time, reused)


def build_services(config: Config) -> Services:
    db = Database(config.DATABASE_URL)
    wake = threading.Event()
    credentials = build_pbx_credentials(config, db)
    credentials.warm()
    reads = HeavyReads(db, in_children=config.HEAVY_READS_IN_CHILDREN)
    return Services(config=config, db=db, ingest=ingest_context(config),
                    pbx=build_pbx_api(config, db, credentials=credentials), pbx_credentials=credentials,
                    intake=InboxWriter(db, wake=wake), inbox_wake=wake, reads=reads,
                    figures=RecentFigures(db, reads.figures))


def create_app(config: Config | None = None) -> Flask:
    config = (config or load_settings()).with_secret_key()
    services = build_services(config)

    app = Flask(__name__)
    app.config.update(SECRET_KEY=config.SECRET_KEY, MAX_CONTENT_LENGTH=config.MAX_BODY_BYTES,
                      MAX_FORM_MEMORY_SIZE=config.MAX_BODY_BYTES)
    app.json.ensure_ascii = False  # tags and score texts are Russian
    app.json.sort_keys = False  # keep the documented field order of a call
    app.extensions["connector"] = services
    import webui
    from web import api, bitrix24, errors, health, mango, openapi, rating, recordings, security

    errors.register_error_handlers(app, page_for_people=webui.error_page)
    security.protect(app)
    app.register_blueprint(bitrix24.bp)  # the Bitrix24 application's events (installed from the settings page)
    app.register_blueprint(api.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(recordings.bp)
    app.register_blueprint(openapi.bp)
    app.register_blueprint(rating.bp)  # the public rating page a rating request's SMS links to (no login)
    app.register_blueprint(webui.bp)
    webui.configure(app)
    # The PBX's callbacks are answered in front of the framework (web/mango.py).
    app.wsgi_app = mango.MangoCallbacks(app.wsgi_app, intake=services.intake, credentials=services.pbx_credentials,
                                        max_body=config.MAX_BODY_BYTES)
    if config.TRUSTED_PROXIES:  # the client's address (login and token throttling) from X-Forwarded-For
        from werkzeug.middleware.proxy_fix import ProxyFix  # outermost: every layer below sees it

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=config.TRUSTED_PROXIES)

    # The same commands under `flask --app app ...` as under `connector ...`.
    from commands.cli import cli

    for name, command in cli.commands.items():
        app.cli.add_command(command, name)
    return app


def main(argv: list[str] | None = None) -> None:
    """The `connector` console script. `serve` gets the web app through Flask's ScriptInfo,
    as under `flask --app app serve`, so the command line never imports this module."""
    from flask.cli import ScriptInfo

    from commands.cli import cli

    configure_logging()
    try:
        cli.main(args=argv, prog_name="connector", standalone_mode=True,
                 obj=ScriptInfo(create_app=create_app, set_debug_flag=False))
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
