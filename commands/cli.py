"""The `connector` command line: serve, worker, db, simulate."""
from __future__ import annotations

import logging
import signal
import sys
import threading
from datetime import datetime, timezone

from contextlib import contextmanager

import click

from connector.core.config import Config
from connector.core.models import JobStatus
from connector.inbound.mango.settings import NAME as PBX, settings_of as pbx_settings

CONNECTION_LIMIT = 4000  # connections `connector serve` holds at once (idle ones time out after 30 s)
# Requests in progress at once. A callback's thread mostly waits (for the group commit, for the interpreter), so
# on a busy machine, or with PostgreSQL's commits slowed by other work, 8 of them capped intake below the PBX's
# rate and its backlog grew to seconds (bench/export_load.py); idle threads cost little. Logins are admitted
# two at a time whatever this is (connector.core.users.LOGINS_ADMITTED).
WEB_THREADS = 32
SWITCH_INTERVAL = 0.0005  # seconds: how long `connector serve` lets a busy thread keep the GIL from a waiting one


def load_config() -> Config:
    from connector.wiring import load_settings

    return load_settings().with_secret_key()


@contextmanager
def database(config: Config):
    from connector.core.db import Database

    db = Database(config.DATABASE_URL)
    try:
        yield db
    finally:
        db.dispose()


@click.group(help="Post-call QA connector between a cloud PBX and a CRM.")
def cli() -> None:
    pass


def _start_loops(config: Config, db, stop: threading.Event, wake: threading.Event | None = None) -> list[str]:
    """The inbox, delivery and PBX polling, each in its own thread; returns their names."""
    from connector.wiring import build_loops

    names = []
    for loop in build_loops(config, db, wake=wake):
        name = type(loop).__name__
        threading.Thread(target=loop.run, args=(stop,), name=name, daemon=True).start()
        names.append(name)
    return names


def _stop_on_signals(stop: threading.Event) -> None:
    def handler(signum, _frame):
        stop.set()
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def _warn_about_missing_settings(config: Config) -> None:
    if not (pbx_settings(config).api_key and pbx_settings(config).api_salt):
        click.echo("warning: MANGO_API_KEY and MANGO_API_SALT are not both set: the PBX's events are refused (403) "
                   "unless an admin entered them on the settings page", err=True)
    if not config.ADMIN_TOKEN:
        click.echo("warning: ADMIN_TOKEN is not set: only personal tokens (connector users token) open the API",
                   err=True)


def _where_data_lives(settings: Config) -> str:
    from connector.core.config import redact_url

    key = "from the SECRET_KEY setting" if settings.SECRET_KEY else str(settings.secret_key_path)
    return f"database: {redact_url(settings.DATABASE_URL)}\nsecret key: {key}"


@cli.command(help="Apply migrations, then serve HTTP (with the embedded worker: inbox, delivery, PBX polling).")
@click.option("--no-worker", is_flag=True, help="Run the worker elsewhere (`connector worker`): then events are "
                                                "stored but applied only by a worker.")
@click.pass_context
def serve(ctx: click.Context, no_worker: bool) -> None:
    from flask.cli import ScriptInfo
    from waitress import create_server

    from connector.core.db import upgrade
    from connector.wiring import load_settings

    settings = load_settings()
    config = settings.with_secret_key()
    _warn_about_missing_settings(config)
    upgrade(config.DATABASE_URL)
    # One interpreter serves the webhook beside exports, reports and the worker. A callback hands over
    # between threads several times (server, request, group-commit writer), and each time waits for the
    # GIL up to the switch interval: 0.5 ms instead of 5 keeps intake quick while CPU-bound work runs.
    sys.setswitchinterval(SWITCH_INTERVAL)
    app = ctx.ensure_object(ScriptInfo).load_app()
    stop = threading.Event()
    _stop_on_signals(stop)
    services = app.extensions["connector"]
    loops = [] if no_worker else _start_loops(config, services.db, stop, services.inbox_wake)
    # Idle and slow connections must not lock others out: waitress's default limit is 100 connections,
    # kept 120 s. Here each may idle 30 s, and CONNECTION_LIMIT of them are held at once; waitress polls
    # them with poll(), since select() stops at descriptor 1024 and stalls the server beyond about a
    # thousand connections. More than this is a reverse proxy's job (docs/deployment.md).
    # Its "Task queue depth" warning comes once per request under load: errors only.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    connection_limit = _descriptors_for(CONNECTION_LIMIT)
    # With TRUSTED_PROXIES, the app's ProxyFix reads X-Forwarded-For (its last N entries only): waitress must
    # hand the header over instead of dropping it as it does from a peer it was not told to trust.
    server = create_server(app, host=config.HOST, port=config.PORT, threads=WEB_THREADS, ident="connector",
                           connection_limit=connection_limit, channel_timeout=30, cleanup_interval=10,
                           asyncore_use_poll=True, clear_untrusted_proxy_headers=not config.TRUSTED_PROXIES)
    # Before saying it listens: a stop signal that lands inside a collection's weakref callbacks is swallowed
    # there (Python ignores exceptions in them), and a supervisor stops the server as soon as it may.
    freeze_what_is_loaded()
    click.echo(_where_data_lives(settings))
    # Only now is the port bound: say so.
    click.echo(f"connector listening on http://{config.HOST}:{config.PORT} (CRM={config.CRM}, "
               f"background: {', '.join(loops) or 'none'})")
    try:
        server.run()
    finally:
        stop.set()


def freeze_what_is_loaded() -> None:
    """The app, its modules and settings live as long as the process: moved out of the garbage collector's
    sight, a full collection no longer walks them (~40 ms with the GIL held, now and then under load, which
    every callback in flight waits out) and only looks at what requests leave behind."""
    import gc

    gc.collect()
    gc.freeze()


def _descriptors_for(connections: int) -> int:
    """Raise this process's open-file limit (soft, up to the hard one) to hold `connections` plus the
    database's and the server's own files; returns how many connections it can hold."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = connections + 256
    if soft != resource.RLIM_INFINITY and soft < wanted:
        soft = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return connections if soft == resource.RLIM_INFINITY else max(100, min(connections, soft - 256))


@cli.command(help="Run the worker (inbox, delivery, PBX polling) without the web server; start many against "
                  "PostgreSQL.")
def worker() -> None:
    config = load_config()
    stop = threading.Event()
    _stop_on_signals(stop)
    with database(config) as db:
        loops = _start_loops(config, db, stop)
        click.echo(f"worker running: {', '.join(loops)}")
        while not stop.wait(1.0):
            pass


@cli.group(help="Database migrations.")
def db() -> None:
    pass


@db.command(help="Upgrade the database to the latest schema.")
@click.argument("revision", default="head")
def upgrade(revision: str) -> None:
    from connector.core.db import upgrade as run_upgrade

    run_upgrade(load_config().DATABASE_URL, revision)
    click.echo(f"database upgraded to {revision}")


@db.command(help="Downgrade the database to REVISION; `base` (every table dropped) needs --yes.")
@click.argument("revision", required=False)
@click.option("--yes", is_flag=True, help="Confirm dropping every table (downgrade to base).")
def downgrade(revision: str | None, yes: bool) -> None:
    from connector.core.db import downgrade as run_downgrade

    revision = revision or ("base" if yes else None)
    if revision is None:
        raise click.UsageError("give the revision to go down to (e.g. 0003), or --yes to drop every table")
    if revision == "base" and not yes:
        raise click.UsageError("downgrading to base drops every table and all data: add --yes to confirm")
    run_downgrade(load_config().DATABASE_URL, revision)
    click.echo(f"database downgraded to {revision}")


# A moment in the account's zone (the console's setting, else CONSOLE_TIMEZONE), as people write one.
MOMENT = click.DateTime(formats=["%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S",
                                 "%Y-%m-%d"])


def _account_zone(config: Config):
    """The account's zone as the console reads times in it (connector.core.time_zone): the one an admin chose on the
    settings page, else CONSOLE_TIMEZONE (also before the first migration)."""
    from zoneinfo import ZoneInfo

    from sqlalchemy.exc import SQLAlchemyError

    from connector.core.time_zone import zone_in_force

    try:
        with database(config) as db, db.reading() as s:
            return zone_in_force(s, config.CONSOLE_TIMEZONE).zone
    except SQLAlchemyError:  # no tables yet: nothing was chosen
        return ZoneInfo(config.CONSOLE_TIMEZONE)


def _in_account_zone(moment: datetime, config: Config) -> datetime:
    return moment.replace(tzinfo=_account_zone(config))


def _local_url(config: Config) -> str:
    """Where this machine reaches `connector serve`."""
    host = "127.0.0.1" if config.HOST in ("0.0.0.0", "::", "") else config.HOST
    return f"http://{host}:{config.PORT}"


def _pbx_in_force(config: Config):
    """The PBX's settings with its key and salt in force, as `connector serve` checks callbacks with them: the
    pair an admin saved in the console, else the environment's (before the first migration, the
    environment's). Refuses, saying what to set, when there is none or no survey location."""
    from dataclasses import replace

    from sqlalchemy.exc import SQLAlchemyError

    from connector.wiring import build_pbx_credentials

    try:
        with database(config) as db:
            pair = build_pbx_credentials(config, db).current()
    except SQLAlchemyError:  # no tables yet
        pair = None
    pbx = pbx_settings(config)
    if pair is not None and pair.configured:
        pbx = replace(pbx, api_key=pair.api_key, api_salt=pair.salt)
    if not (pbx.api_key and pbx.api_salt and pbx.survey_location):
        raise click.UsageError("set MANGO_API_KEY, MANGO_API_SALT and MANGO_SURVEY_LOCATION (in .env) "
                               "for both the connector and this command, or the key and salt on the settings "
                               "page; see README, 'Try it'")
    return pbx


@cli.command(help="Post a signed sample call, recording and survey score to a running connector.")
@click.option("--url", default=None, help="Connector base URL (default: http://HOST:PORT of the settings).")
@click.option("--score", default=3, show_default=True, type=int, help="The survey digits to press.")
@click.option("--call-id", default=None, help="The entry_id to use (default: a new one).")
@click.option("--operator", default="101", show_default=True, help="The operator's extension (who answered).")
@click.option("--line", default="74950000000", show_default=True, help="The account's number the customer called.")
@click.option("--phone", default="79001234567", show_default=True, help="The customer's number.")
@click.option("--at", type=MOMENT, default=None,
              help="When the call began, in the account's time zone (the settings page's, else "
                   "CONSOLE_TIMEZONE, Europe/Moscow unless set), e.g. "
                   "'2026-11-20 14:05' (default: 75 seconds ago). It lasts 65 seconds.")
@click.option("--wait", default=0, show_default=True, type=click.IntRange(0, 600),
              help="Seconds to wait for the connector to answer (e.g. right after starting it).")
def simulate(url: str | None, score: int, call_id: str | None, operator: str, line: str, phone: str,
             at: datetime | None, wait: int) -> None:
    import json
    import time
    import uuid

    import requests

    from commands.demo import SimulatedCall
    from connector.inbound.mango.callbacks import signed_form

    config = load_config()
    base = (url or _local_url(config)).rstrip("/")
    pbx = _pbx_in_force(config)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            requests.get(f"{base}/healthz", timeout=2)
            break
        except requests.ConnectionError:
            time.sleep(0.5)
    entry_id = call_id or f"sim-{uuid.uuid4().hex[:12]}"
    start = int(_in_account_zone(at, config).timestamp()) if at else int(time.time()) - 75
    call = SimulatedCall(entry_id, inbound=True, operator=operator, line=line, phone=phone, start=start, ring=5,
                         talk=60, digits=str(score))
    for kind, payload in call.callbacks(pbx.survey_location):
        form = signed_form(pbx.api_key, pbx.api_salt, payload)
        try:
            response = requests.post(f"{base}/mango/{kind}", data=form, timeout=10)
        except requests.ConnectionError:
            raise click.ClickException(f"nothing listens at {base}: start the connector with "
                                       "`connector serve`, or pass --url") from None
        click.echo(f"POST /mango/{kind:<17} -> {response.status_code} {response.text.strip()}")
        if response.status_code != 200:
            raise click.ClickException(f"the connector refused {kind}")
    if not config.ADMIN_TOKEN:
        click.echo("set ADMIN_TOKEN to see the stored call here")
        return
    # The connector stores events and its worker applies them a moment later: wait for the summary.
    deadline = time.monotonic() + 10
    while True:
        stored = requests.get(f"{base}/api/v1/calls/{entry_id}", timeout=10,
                              headers={"Authorization": f"Bearer {config.ADMIN_TOKEN}"})
        if stored.status_code == 200 and stored.json().get("started_at") or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    if stored.status_code != 200:
        raise click.ClickException(f"the call was stored but not applied: is a worker running? "
                                   f"({stored.status_code} {stored.text.strip()[:100]})")
    click.echo(f"stored call {entry_id}:")
    click.echo(json.dumps(stored.json(), ensure_ascii=False, indent=2))


@cli.command(help="Fill a fresh connector with COUNT made-up calls to try the console with: the working hours "
                  "of the last --days, six operators (101-106), three lines, inbound, outbound and missed, "
                  "customer scores, supervisors' QA forms and reviews, recordings. They go through the PBX's "
                  "intake as signed callbacks would. With no console user yet, it also makes demo accounts "
                  "and prints their passwords once. For trying out only: it refuses a connector with a CRM, "
                  "MANGO_QUALITY_API, or calls that are not made up.")
@click.argument("count", type=click.IntRange(1, 100_000))
@click.option("--seed", default=1, show_default=True, type=int,
              help="The same seed (with the same --until) gives the same calls; another seed, other calls.")
@click.option("--days", default=14, show_default=True, type=click.IntRange(1, 366), help="Days the calls spread over.")
@click.option("--until", type=MOMENT, default=None,
              help="The end of the period, in the account's time zone (the settings page's, else "
                   "CONSOLE_TIMEZONE; default: now).")
def demo(count: int, seed: int, days: int, until: datetime | None) -> None:
    from commands import demo as made_up
    from connector.core.db import upgrade
    from connector.core.policy import policy_from_config
    from connector.core.runtime_settings import current_policy

    config = load_config()
    config = config.with_section(PBX, _pbx_in_force(config))
    upgrade(config.DATABASE_URL)  # a fresh install may never have been served
    zone = _account_zone(config)
    end = until.replace(tzinfo=zone) if until else datetime.now(zone)
    with database(config) as db:
        if problem := made_up.refusal(config, db):
            raise click.ClickException(problem)
        with db.transaction() as s:
            policy = current_policy(s, policy_from_config(config))
        try:
            calls = made_up.demo_calls(count, seed=seed, until=end, days=days, zone=zone,
                                       scale=(policy.scale_min, policy.scale_max))
        except made_up.NoWorkingHours as exc:
            raise click.UsageError(f"{exc}: give more --days or a later --until") from None
        outcome = made_up.fill(config, db, calls)
    _say_what_the_demo_made(calls, outcome, policy, zone, seed, config)


def _say_what_the_demo_made(calls, outcome, policy, zone, seed: int, config: Config) -> None:
    first, last = (datetime.fromtimestamp(c.start, zone) for c in (calls[0], calls[-1]))
    inbound = [c for c in calls if c.inbound]
    outbound = [c for c in calls if not c.inbound]
    scored = [int(c.digits) for c in calls if c.digits is not None]
    click.echo(f"{len(calls)} demo calls (seed {seed}), {first:%Y-%m-%d} to {last:%Y-%m-%d}, working hours "
               f"in {zone.key}:")
    click.echo(f"  inbound {len(inbound)} ({sum(1 for c in inbound if not c.talk)} missed), outbound "
               f"{len(outbound)} ({sum(1 for c in outbound if not c.talk)} not answered), "
               f"{sum(1 for c in calls if c.recorded and c.talk)} recorded")
    click.echo(f"  operators {', '.join(sorted({c.operator for c in calls}))}; "
               f"lines {', '.join(sorted({c.line for c in calls}))}")
    click.echo(f"  customer scores {len(scored)} ({sum(1 for s in scored if s < policy.max_threshold)} below the "
               f"threshold {policy.max_threshold}), QA forms {outcome.qa_forms}, reviews {outcome.reviews}"
               + (f" by {outcome.reviewer}" if outcome.reviewer else " (no supervisor or admin to write them)"))
    duplicates = outcome.events - outcome.new
    click.echo(f"  {outcome.events} PBX events stored and applied"
               + (f" ({duplicates} of them stored before: the same seed again changes nothing)" if duplicates else "")
               + f"; all done in {outcome.seconds:.1f} s")
    if outcome.accounts:
        click.echo("DEMO ACCOUNTS, made up for trying the console out (the passwords are shown only now):")
        for username, role, extensions, password in outcome.accounts:
            what = f"{role} of {', '.join(extensions)}" if extensions else role
            click.echo(f"  {username:<18} {what:<16} password: {password}")
        click.echo("  disable them before real use: connector users disable NAME")
    else:
        click.echo("no demo accounts made: the connector has users already")
    click.echo(f"open {_local_url(config)}/ (with `connector serve` running) and log in")


@cli.command("demo-pbx", help="Stand in for MANGO's recording API so the calls of `simulate` and `demo` play in "
                               "the console, and print the rating link's SMS instead of sending them (set "
                               "MANGO_API_URL=http://127.0.0.1:PORT/vpbx/). For trying out only.")
@click.option("--port", default=8081, show_default=True, type=click.IntRange(1, 65535))
def demo_pbx(port: int) -> None:
    from waitress import create_server

    from commands.demo_pbx import create_demo_pbx

    config = load_config()
    pbx = pbx_settings(config)
    if not (pbx.api_key and pbx.api_salt):
        raise click.UsageError("set MANGO_API_KEY and MANGO_API_SALT (in .env), the same as the connector's")
    demo = create_demo_pbx(pbx.api_key, pbx.api_salt, connector_url=_local_url(config), say=click.echo)
    server = create_server(demo, host="127.0.0.1", port=port, threads=2, ident="demo-pbx")
    expected = f"http://127.0.0.1:{port}/vpbx/"
    click.echo(f"demo PBX listening on {expected} (recordings of `connector simulate` and `demo` only)")
    if pbx.api_url != expected:
        click.echo(f"warning: the connector asks {pbx.api_url}; set MANGO_API_URL={expected} for it "
                   "to ask this one", err=True)
    server.run()


@cli.command("mail-test", help="Send one test e-mail through the SMTP server the settings name (SMTP_*) and say "
                               "what happened.")
@click.option("--to", "to", required=True, help="The address to send it to.")
def mail_test(to: str) -> None:
    from connector.delivery.contract import PermanentError, TransientError
    from connector.delivery.mail import Mail, Mailer, mail_settings

    settings = mail_settings(load_config())
    if settings is None:
        raise click.UsageError("set SMTP_HOST and SMTP_FROM (and SMTP_USERNAME, SMTP_PASSWORD if the server wants a "
                               "login): see settings.example.env")
    if "@" not in to or len(to) > 254 or any(ch.isspace() for ch in to):
        raise click.UsageError(f"--to: expected an e-mail address, got {to!r}")
    mail = Mail(to=to, subject="Проверка почты коннектора оценок",
                text="Это проверочное письмо коннектора оценок качества: почта настроена верно.")
    try:
        Mailer(settings).send(mail)
    except TransientError as exc:
        raise click.ClickException(f"not sent, try again later: {exc.message}") from None
    except PermanentError as exc:
        raise click.ClickException(f"not sent, fix the settings: {exc.message}") from None
    click.echo(f"sent to {to} through {settings.host}:{settings.port} ({settings.security.value})")


@cli.group(help="Inspect and replay CRM deliveries.")
def deliveries() -> None:
    pass


STATUSES = click.Choice([s.value for s in JobStatus])


@deliveries.command("list", help="Show delivery jobs, newest first.")
@click.option("--status", type=STATUSES, default=None)
@click.option("--target", default=None, help="Only this target's jobs (one of CRM's list, or sms: the rating link's).")
@click.option("--limit", default=50, show_default=True)
def deliveries_list(status: str | None, target: str | None, limit: int) -> None:
    config = load_config()
    with database(config) as db:
        _print_jobs(db, config, status, _targets(config, target), limit)


def _targets(config: Config, target: str | None) -> tuple[str, ...] | None:
    """The targets a deliveries command acts on: `--target`, or None for all (jobs of a target dropped
    from CRM since included)."""
    from connector import registry

    if target is None:
        return None
    if target not in (*config.targets, *registry.CHANNELS):
        raise click.UsageError(f"--target: {target!r} is not in CRM={config.CRM} nor one of "
                               f"{', '.join(registry.CHANNELS)}")
    return (target,)


def _print_jobs(db, config: Config, status: str | None, targets: tuple[str, ...] | None, limit: int) -> None:
    from connector.core.accounts import pause_state
    from connector.delivery import outbox

    for name in targets or config.targets:
        paused, reason, since = pause_state(db, name)
        if paused:
            click.echo(f"{name} is PAUSED since {since:%Y-%m-%d %H:%M} UTC: {reason}")
            click.echo(f"resume with: connector deliveries resume --target {name}")
    with db.reading() as s:
        jobs = outbox.list_jobs(s, status, limit, targets=targets)
        click.echo(f"{'id':>6}  {'target':<8} {'status':<9} {'kind':<14} {'tries':>5}  {'next try (UTC)':<16}  "
                   "key / last error")
        for job in jobs:
            when = job.not_before.strftime("%Y-%m-%d %H:%M") if job.status == JobStatus.PENDING else ""
            click.echo(f"{job.id:>6}  {job.crm:<8} {job.status:<9} {job.kind:<14} {job.attempts:>5}  {when:<16}  "
                       f"{job.key}")
            if job.last_error and job.status != JobStatus.DONE:
                click.echo(f"{'':>55}{job.last_error[:200]}")
        if not jobs:
            click.echo("no delivery jobs" + (f" with status {status}" if status else ""))


@deliveries.command("replay", help="Send dead (or unmatched) jobs again, with a fresh retry budget.")
@click.option("--status", type=click.Choice(["dead", "unmatched"]), default="dead", show_default=True)
@click.option("--since", type=click.DateTime(), default=None, help="Only jobs that failed at or after this (UTC).")
@click.option("--target", default=None, help="Only this target's jobs (one of CRM's list, or sms, email, telegram); email: with the "
                   "report e-mails given up.")
def deliveries_replay(status: str, since: datetime | None, target: str | None) -> None:
    from connector import registry
    from connector.delivery import outbox

    since_utc = since.replace(tzinfo=timezone.utc) if since else None
    config = load_config()
    targets = _targets(config, target)
    plannings = {planning.name: planning for planning in registry.plannings(config)}
    with database(config) as db:
        with db.transaction() as s:
            job_ids = outbox.jobs_to_replay(s, status, since_utc, targets=targets)
        with click.progressbar(job_ids, label=f"replaying {len(job_ids)} {status} job(s)") as bar:
            for job_id in bar:
                with db.transaction() as s:
                    outbox.replay(s, job_id, plannings)
        reports = 0
        if status == "dead" and target in (None, "email"):  # the scheduled report e-mails go by e-mail too
            from connector.console import report_mail
            with db.transaction() as s:
                reports = report_mail.replay(s, since_utc)
    click.echo(f"{len(job_ids)} job(s) queued again; a running worker sends them"
               + (f"; {reports} report e-mail(s) too" if reports else ""))


@deliveries.command("resume", help="Resume deliveries to a paused target (every paused one without --target).")
@click.option("--target", default=None, help="Only this target (one of CRM's list).")
def deliveries_resume(target: str | None) -> None:
    from connector.core.accounts import resume

    config = load_config()
    if not config.targets:
        raise click.UsageError("CRM=none: there is no account to resume")
    with database(config) as db:
        for name in _targets(config, target) or config.targets:
            click.echo(f"{name} resumed" if resume(db, name) else f"{name} was not paused")


@cli.group(help="Console users: admins, supervisors and operators (who see only their own extensions' calls).")
def users() -> None:
    pass


@contextmanager
def _users_transaction():
    """A transaction on the users' database; a refused change (UserError) ends the command with its reason."""
    from connector.core.db import upgrade
    from connector.core.users import UserError

    config = load_config()
    upgrade(config.DATABASE_URL)  # the first user may come before the first `serve`
    with database(config) as db:
        try:
            with db.transaction() as s:
                yield s
        except UserError as exc:
            raise click.ClickException(str(exc)) from None


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return click.prompt("Password (at least 10 characters)", hide_input=True, confirmation_prompt=True)


@users.command("add", help="Create a user. The password is read from stdin with --password-stdin, else prompted.")
@click.argument("username")
@click.option("--role", type=click.Choice(["admin", "supervisor", "operator"]), required=True)
@click.option("--extension", "extensions", multiple=True, help="A PBX extension of the operator (repeatable).")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
def users_add(username: str, role: str, extensions: tuple[str, ...], password_stdin: bool) -> None:
    from connector.core.users import add_user

    password = _read_password(password_stdin)
    with _users_transaction() as s:
        add_user(s, username, role, password, list(extensions))
    click.echo(f"user {username} added ({role}{': ' + ', '.join(extensions) if extensions else ''})")


@users.command("list", help="Show the users.")
def users_list() -> None:
    from connector.core.users import list_users

    with _users_transaction() as s:
        rows = list_users(s)
        for user in rows:
            state = "disabled" if user.disabled else "active"
            click.echo(f"{user.username:<24} {user.role:<10} {state:<8} {','.join(user.extensions or []) or '-'}")
        if not rows:
            click.echo("no users yet: connector users add USERNAME --role admin")


@users.command("disable", help="Disable a user: no more logins, their console sessions end, and their tokens "
                                 "stop working.")
@click.argument("username")
def users_disable(username: str) -> None:
    from connector.core.users import CLI_ACTOR, disable_user

    with _users_transaction() as s:
        disable_user(s, username, actor=CLI_ACTOR)
    click.echo(f"user {username} disabled")


@users.command("password", help="Set a user's password (the same rule as `users add`); their console sessions end.")
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
def users_password(username: str, password_stdin: bool) -> None:
    from connector.core.users import CLI_ACTOR, set_password

    password = _read_password(password_stdin)
    with _users_transaction() as s:
        set_password(s, username, password, actor=CLI_ACTOR)
    click.echo(f"password of {username} changed; their sessions ended")


@users.command("token", help="Print a new personal API token for the user (shown once, stored hashed). It expires "
                               "after --days; revoke it sooner with `connector users revoke-token ID`.")
@click.argument("username")
@click.option("--days", default=90, show_default=True, type=click.IntRange(1, 3650), help="Days it works.")
@click.option("--name", default=None, help="What it is for (shown in `connector users tokens`).")
def users_token(username: str, days: int, name: str | None) -> None:
    from connector.core.users import issue_token

    with _users_transaction() as s:
        token = issue_token(s, username, days=days, name=name)
    click.echo(token)
    click.echo(f"valid {days} days; see it with: connector users tokens {username}", err=True)


def _when(moment) -> str:
    return moment.strftime("%Y-%m-%d %H:%M") if moment else "-"


@users.command("tokens", help="List personal tokens (all, or one user's) with their use and state.")
@click.argument("username", required=False)
def users_tokens(username: str | None) -> None:
    from connector.core.users import list_tokens, token_state

    with _users_transaction() as s:
        rows = list_tokens(s, username)
        click.echo(f"{'id':>5}  {'user':<16} {'state':<8} {'created (UTC)':<16}  {'expires':<16}  {'last used':<16}  name")
        for token, owner in rows:
            click.echo(f"{token.id:>5}  {owner:<16} {token_state(token):<8} {_when(token.created_at):<16}  "
                       f"{_when(token.expires_at):<16}  {_when(token.last_used_at):<16}  {token.name or ''}")
        if not rows:
            click.echo("no tokens" + (f" for {username}" if username else ""))


@users.command("revoke-token", help="Revoke one personal token by its id (from `connector users tokens`); audited.")
@click.argument("token_id", type=int)
def users_revoke_token(token_id: int) -> None:
    from connector.core.users import CLI_ACTOR, revoke_token

    with _users_transaction() as s:
        token = revoke_token(s, token_id, actor=CLI_ACTOR)
    click.echo(f"token {token_id} revoked{f' ({token.name})' if token.name else ''}")


@users.command("unlock", help="Lift the login throttle of a user (every address and browser) and/or of a client "
                                "address (logins and tokens); audited.")
@click.argument("username", required=False)
@click.option("--address", default=None, help="A client address (IPv4, or IPv6 for its /64).")
def users_unlock(username: str | None, address: str | None) -> None:
    from connector.core.users import CLI_ACTOR, unlock

    with _users_transaction() as s:
        lifted = unlock(s, actor=CLI_ACTOR, username=username, address=address)
    click.echo(f"unlocked {', '.join(filter(None, [username, address]))}: {len(lifted)} throttle bucket(s) lifted")


@users.command("lockouts", help="Show failed logins and tokens of the last hour, and what is held back now.")
def users_lockouts() -> None:
    from connector.core import throttle

    with _users_transaction() as s:
        at = throttle.now()
        rows = throttle.active(s)
        for row in rows:
            held = "-"
            if row.blocked_until and row.blocked_until > at:
                held = f"{'locked' if row.locked else 'delayed'} until {_when(row.blocked_until)}"
            click.echo(f"{row.key:<60} {row.failures:>4} failures, last {_when(row.last_failed_at)}  {held}")
        if not rows:
            click.echo("no failed logins in the last hour")
