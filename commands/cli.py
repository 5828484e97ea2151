"""The `connector` command line: serve, worker, db, simulate."""
from __future__ import annotations

import click

from connector.config import Config


def load_config() -> Config:
    from app import VAR_DIR

    return Config.from_env().with_secret_key(VAR_DIR)


@click.group(help="Post-call QA connector between a cloud PBX and a CRM.")
def cli() -> None:
    pass


@cli.command(help="Apply migrations, then serve HTTP (with an embedded delivery worker).")
@click.option("--no-worker", is_flag=True, help="Run the delivery worker elsewhere (`connector worker`).")
def serve(no_worker: bool) -> None:
    from waitress import serve as waitress_serve

    from app import create_app
    from connector.db import upgrade

    config = load_config()
    upgrade(config.DATABASE_URL)
    app = create_app(config)
    click.echo(f"connector listening on http://{config.HOST}:{config.PORT} (CRM={config.CRM})")
    waitress_serve(app, host=config.HOST, port=config.PORT, threads=8, ident="connector")


@cli.group(help="Database migrations.")
def db() -> None:
    pass


@db.command(help="Upgrade the database to the latest schema.")
@click.argument("revision", default="head")
def upgrade(revision: str) -> None:
    from connector.db import upgrade as run_upgrade

    run_upgrade(load_config().DATABASE_URL, revision)
    click.echo(f"database upgraded to {revision}")


@db.command(help="Downgrade the database (to base by default).")
@click.argument("revision", default="base")
def downgrade(revision: str) -> None:
    from connector.db import downgrade as run_downgrade

    run_downgrade(load_config().DATABASE_URL, revision)
    click.echo(f"database downgraded to {revision}")
