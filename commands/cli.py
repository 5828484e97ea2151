"""The `connector` command line: serve, worker, db, simulate."""
from __future__ import annotations

import signal
import threading
from datetime import datetime, timezone

from contextlib import contextmanager

import click

from connector.config import Config


def load_config() -> Config:
    from app import VAR_DIR

    return Config.from_env().with_secret_key(VAR_DIR)


@contextmanager
def database(config: Config):
    from connector.db import Database

    db = Database(config.DATABASE_URL)
    try:
        yield db
    finally:
        db.dispose()


@click.group(help="Post-call QA connector between a cloud PBX and a CRM.")
def cli() -> None:
    pass


def _start_worker(config: Config, db, stop: threading.Event) -> threading.Thread | None:
    from app import build_worker

    worker = build_worker(config, db)
    if worker is None:
        return None
    thread = threading.Thread(target=worker.run, args=(stop,), name="delivery-worker", daemon=True)
    thread.start()
    return thread


def _stop_on_signals(stop: threading.Event) -> None:
    def handler(signum, _frame):
        stop.set()
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


@cli.command(help="Apply migrations, then serve HTTP (with an embedded delivery worker).")
@click.option("--no-worker", is_flag=True, help="Run the delivery worker elsewhere (`connector worker`).")
def serve(no_worker: bool) -> None:
    from waitress import serve as waitress_serve

    from app import create_app
    from connector.db import upgrade

    config = load_config()
    upgrade(config.DATABASE_URL)
    app = create_app(config)
    stop = threading.Event()
    _stop_on_signals(stop)
    worker = None if no_worker else _start_worker(config, app.extensions["connector"].db, stop)
    click.echo(f"connector listening on http://{config.HOST}:{config.PORT} (CRM={config.CRM}, "
               f"worker={'embedded' if worker else 'none'})")
    try:
        waitress_serve(app, host=config.HOST, port=config.PORT, threads=8, ident="connector")
    finally:
        stop.set()


@cli.command(help="Run a standalone delivery worker; start many against PostgreSQL.")
def worker() -> None:
    config = load_config()
    if config.CRM == "none":
        raise click.UsageError("CRM=none: there is nothing to deliver")
    from app import build_worker

    stop = threading.Event()
    _stop_on_signals(stop)
    with database(config) as db:
        build_worker(config, db).run(stop)


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


@cli.command(help="Post a signed sample call, recording and survey score to a running connector.")
@click.option("--url", default=None, help="Connector base URL (default: PUBLIC_BASE_URL).")
@click.option("--score", default=3, show_default=True, type=int, help="The survey digits to press.")
@click.option("--call-id", default=None, help="The entry_id to use (default: a new one).")
def simulate(url: str | None, score: int, call_id: str | None) -> None:
    import json
    import time
    import uuid

    import requests

    from connector.pbx.mango import signed_form

    config = load_config()
    base = (url or config.PUBLIC_BASE_URL).rstrip("/")
    if not (config.MANGO_API_KEY and config.MANGO_API_SALT and config.MANGO_SURVEY_LOCATION):
        raise click.UsageError("set MANGO_API_KEY, MANGO_API_SALT and MANGO_SURVEY_LOCATION (in .env) "
                               "for both the connector and this command; see README, 'Try it'")
    entry_id = call_id or f"sim-{uuid.uuid4().hex[:12]}"
    now = int(time.time())
    leg = f"{entry_id}-1"
    events = [
        ("events/dtmf", {"entry_id": entry_id, "call_id": leg, "seq": 4, "dtmf": str(score),
                         "location": config.MANGO_SURVEY_LOCATION, "timestamp": now,
                         "initiator": "79001234567"}),
        ("events/recording", {"entry_id": entry_id, "call_id": leg, "recording_id": f"rec-{entry_id}",
                              "recording_state": "Completed", "completion_code": 1000, "seq": 5,
                              "extension": "101", "timestamp": now}),
        ("events/summary", {"entry_id": entry_id, "call_direction": 1, "from": {"number": "79001234567"},
                            "to": {"extension": "101", "number": "74950000000"},
                            "line_number": "74950000000", "create_time": now - 75, "forward_time": now - 73,
                            "talk_time": now - 70, "end_time": now - 10, "entry_result": 1,
                            "disconnect_reason": 1110}),
    ]
    for kind, payload in events:
        form = signed_form(config.MANGO_API_KEY, config.MANGO_API_SALT, payload)
        response = requests.post(f"{base}/mango/{kind}", data=form, timeout=10)
        click.echo(f"POST /mango/{kind:<17} -> {response.status_code} {response.text.strip()}")
        if response.status_code != 200:
            raise click.ClickException(f"the connector refused {kind}")
    if not config.ADMIN_TOKEN:
        click.echo("set ADMIN_TOKEN to see the stored call here")
        return
    stored = requests.get(f"{base}/api/v1/calls/{entry_id}", timeout=10,
                          headers={"Authorization": f"Bearer {config.ADMIN_TOKEN}"})
    click.echo(f"stored call {entry_id}:")
    click.echo(json.dumps(stored.json(), ensure_ascii=False, indent=2))


@cli.group(help="Inspect and replay CRM deliveries.")
def deliveries() -> None:
    pass


STATUSES = click.Choice(["pending", "waiting", "done", "dead", "unmatched"])


@deliveries.command("list", help="Show delivery jobs, newest first.")
@click.option("--status", type=STATUSES, default=None)
@click.option("--limit", default=50, show_default=True)
def deliveries_list(status: str | None, limit: int) -> None:
    config = load_config()
    with database(config) as db:
        _print_jobs(db, config, status, limit)


def _print_jobs(db, config: Config, status: str | None, limit: int) -> None:
    from connector import outbox
    from connector.crm.account import pause_state

    if config.CRM != "none":
        paused, reason, since = pause_state(db, config.CRM)
        if paused:
            click.echo(f"{config.CRM} is PAUSED since {since:%Y-%m-%d %H:%M} UTC: {reason}")
            click.echo("resume with: connector deliveries resume")
    with db.transaction() as s:
        jobs = outbox.list_jobs(s, status, limit)
        click.echo(f"{'id':>6}  {'status':<9} {'kind':<8} {'tries':>5}  {'next try (UTC)':<16}  key / last error")
        for job in jobs:
            when = job.not_before.strftime("%Y-%m-%d %H:%M") if job.status == "pending" else ""
            click.echo(f"{job.id:>6}  {job.status:<9} {job.kind:<8} {job.attempts:>5}  {when:<16}  {job.key}")
            if job.last_error and job.status != "done":
                click.echo(f"{'':>40}{job.last_error[:200]}")
        if not jobs:
            click.echo("no delivery jobs" + (f" with status {status}" if status else ""))


@deliveries.command("replay", help="Send dead (or unmatched) jobs again, with a fresh retry budget.")
@click.option("--status", type=click.Choice(["dead", "unmatched"]), default="dead", show_default=True)
@click.option("--since", type=click.DateTime(), default=None, help="Only jobs that failed at or after this (UTC).")
def deliveries_replay(status: str, since: datetime | None) -> None:
    from connector import outbox

    since_utc = since.replace(tzinfo=timezone.utc) if since else None
    with database(load_config()) as db:
        with db.transaction() as s:
            job_ids = outbox.jobs_to_replay(s, status, since_utc)
        with click.progressbar(job_ids, label=f"replaying {len(job_ids)} {status} job(s)") as bar:
            for job_id in bar:
                with db.transaction() as s:
                    outbox.replay(s, job_id)
    click.echo(f"{len(job_ids)} job(s) queued again; a running worker sends them")


@deliveries.command("resume", help="Resume deliveries to a paused CRM account.")
def deliveries_resume() -> None:
    from connector.crm.account import resume

    config = load_config()
    if config.CRM == "none":
        raise click.UsageError("CRM=none: there is no account to resume")
    with database(config) as db:
        was_paused = resume(db, config.CRM)
    click.echo(f"{config.CRM} resumed" if was_paused else f"{config.CRM} was not paused")
