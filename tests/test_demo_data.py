"""Demo data: `connector simulate`'s operator, line, phone and time, and `connector demo`'s spread of calls,
QA forms, reviews and demo accounts, made through the PBX's intake; the same seed gives the same data.
Every CLI command prints what it did, and no migration log lines."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from sqlalchemy import delete, select
from sqlalchemy.orm import selectinload

from app import create_app
from commands.cli import cli
from commands.demo import HOURS, demo_calls
from connector.core.models import Base, Call, Notification, Score, User
from tests.conftest import ADMIN_TOKEN, MANGO_KEY, MANGO_SALT, console_login, make_config

MOSCOW = ZoneInfo("Europe/Moscow")
UNTIL = "2026-11-20 18:30"  # a Friday, in the account's zone


@pytest.fixture
def cli_env(db_url, monkeypatch):
    """The command line's settings: the same database and PBX credentials as `make_config`'s app. The demo
    accounts' passwords are hashed at a test's cost (what is tested is who logs in, not the hashing cost; the
    real command line in test_commands_print_what_was_asked_for_and_no_migration_lines keeps the real cost)."""
    monkeypatch.setattr("connector.core.users.PASSWORD_METHOD", "scrypt:1024:8:1")
    for key, value in {"DATABASE_URL": db_url, "SECRET_KEY": "test-secret-key", "ADMIN_TOKEN": ADMIN_TOKEN,
                       "MANGO_API_KEY": MANGO_KEY, "MANGO_API_SALT": MANGO_SALT,
                       "MANGO_SURVEY_LOCATION": "ivr.5"}.items():
        monkeypatch.setenv(key, value)
    return db_url


def run(*args) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def stored_calls(app) -> list[Call]:
    with app.extensions["connector"].db.reading() as s:
        return list(s.scalars(select(Call).options(selectinload(Call.scores), selectinload(Call.supervisor_marks))
                              .order_by(Call.entry_id)))


# --- simulate: one call, where and when the user says --------------------------------------------------

@pytest.fixture
def served_app(cli_env):
    """The app over real HTTP with its inbox worker running, as `connector serve` has it."""
    from connector.wiring import build_inbox
    from tests.fakes.server import serving

    config = make_config(cli_env)
    app = create_app(config)
    services = app.extensions["connector"]
    stop = threading.Event()
    worker = threading.Thread(target=build_inbox(config, services.db, wake=services.inbox_wake).run, args=(stop,))
    worker.start()
    try:
        with serving(app) as base:
            yield base
    finally:
        stop.set()
        services.inbox_wake.set()
        worker.join(timeout=10)
        services.db.dispose()


@pytest.mark.parametrize("zone, started", [(None, "2026-11-20T11:05:00Z"),  # Moscow, UTC+3, by default
                                           ("Asia/Yekaterinburg", "2026-11-20T09:05:00Z")])
def test_simulate_stores_the_operator_line_phone_and_time_asked_for(served_app, monkeypatch, zone, started):
    if zone:
        monkeypatch.setenv("CONSOLE_TIMEZONE", zone)
    output = run("simulate", "--url", served_app, "--call-id", "sim-options", "--score", "4", "--operator", "102",
                 "--line", "74950000002", "--phone", "79001112233", "--at", "2026-11-20 14:05")
    call = json.loads(output.split("stored call sim-options:", 1)[1])
    assert (call["operator"], call["line_number"], call["customer_phone"]) == ("102", "74950000002", "79001112233")
    assert call["started_at"] == started and call["talk_seconds"] == 60
    assert call["customer_score"] == 4 and call["recording_id"] == "rec-sim-options"


def test_simulate_without_options_is_the_call_it_always_was(served_app):
    output = run("simulate", "--url", served_app, "--call-id", "sim-plain")
    call = json.loads(output.split("stored call sim-plain:", 1)[1])
    assert (call["operator"], call["line_number"], call["customer_phone"]) == ("101", "74950000000", "79001234567")
    started = datetime.fromisoformat(call["started_at"].replace("Z", "+00:00"))
    assert 60 <= (datetime.now(timezone.utc) - started).total_seconds() <= 120  # 75 s before it ran
    assert (call["customer_score"], call["decision"]["tag"]) == (3, "Оценка 3")


def test_simulate_signs_with_the_pair_saved_in_the_console(served_app, cli_env):
    """Once an admin saved the PBX's key and salt on the settings page, the connector refuses the
    environment's pair: `simulate` signs with the pair in force, as the PBX then does."""
    from connector.core.db import Database
    from connector.wiring import build_pbx_credentials

    config = make_config(cli_env)
    db = Database(cli_env)
    try:
        with db.transaction() as s:
            build_pbx_credentials(config, db).save(s, "console-key-4d2a", "console-salt-9e1b", actor="anna")
    finally:
        db.dispose()
    time.sleep(1.1)  # the server read its pair at start: it reads again after a refusal, at most once a second
    output = run("simulate", "--url", served_app, "--call-id", "sim-console-pair")
    call = json.loads(output.split("stored call sim-console-pair:", 1)[1])
    assert call["customer_score"] == 3


def test_simulate_refuses_a_time_it_cannot_read(cli_env):
    refused = CliRunner().invoke(cli, ["simulate", "--at", "20.11.2026 14:05"])
    assert refused.exit_code == 2 and "--at" in refused.output


# --- demo: a spread of calls for every role ---------------------------------------------------------

def accounts(output: str) -> dict[str, str]:
    """The demo accounts the command printed: username -> password."""
    return dict(re.findall(r"^  (demo-[\w-]+) .* password: (\S+)$", output, re.MULTILINE))


@pytest.fixture
def demo(cli_env):
    """400 demo calls (seed 7) up to a fixed moment, and an app on the same database."""
    output = run("demo", "400", "--seed", "7", "--until", UNTIL)
    app = create_app(make_config(cli_env))
    app.config["TESTING"] = True
    yield output, app
    app.extensions["connector"].reads.close()  # the reports' child processes, if any were started
    app.extensions["connector"].db.dispose()


def test_demo_spreads_calls_over_operators_lines_days_and_working_hours(demo):
    output, app = demo
    calls = stored_calls(app)
    assert len(calls) == 400 and "400 demo calls (seed 7)" in output
    assert {c.operator_extension for c in calls} == {"101", "102", "103", "104", "105", "106"}
    assert len({c.line_number for c in calls}) == 3
    starts = [c.created_at.astimezone(MOSCOW) for c in calls]
    until = datetime(2026, 11, 20, 18, 30, tzinfo=MOSCOW)
    assert len({s.date() for s in starts}) >= 10 and all(s < until for s in starts)  # 14 days, few on Sundays
    assert all(min(HOURS) <= s.hour <= max(HOURS) for s in starts)
    kinds = Counter((c.direction, c.talk_seconds > 0) for c in calls)
    assert kinds[("inbound", True)] > kinds[("outbound", True)] > kinds[("inbound", False)] > 0
    assert kinds[("outbound", False)] > 0
    assert all(c.entry_result == (1 if c.talk_seconds else 0) for c in calls)
    answered = [c for c in calls if c.talk_seconds]
    assert sum(1 for c in answered if c.recording_id) > 0.9 * len(answered)
    assert not any(c.recording_id for c in calls if not c.talk_seconds)


def test_demo_scores_are_mostly_high_with_some_low_ones_and_supervisors_weigh_in(demo):
    _, app = demo
    calls = stored_calls(app)
    scores = [c.customer_score for c in calls if c.customer_score is not None]
    assert len(scores) > 100
    assert sum(1 for s in scores if s >= 9) > 0.55 * len(scores)  # mostly high
    assert sum(1 for s in scores if s <= 4) >= 5  # and some low
    tagged = [c for c in calls if c.decision_tag]
    assert tagged and all(c.decision_tag == f"Оценка {c.customer_score}" for c in tagged)
    assert all(not c.customer_score for c in calls if c.direction == "outbound")
    formed = [c for c in calls if c.supervisor_marks]
    reviewed = [c for c in calls if any(s.origin == "review" for s in c.scores)]
    assert len(formed) >= 10 and len(reviewed) >= 5
    assert all(s.author == "demo-supervisor" for c in reviewed for s in c.scores if s.origin == "review")
    client = app.test_client()
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    shown = client.get(f"/api/v1/calls/{formed[0].entry_id}", headers=auth).json
    assert shown["supervisor_marks"][0]["question"] == "Приветствие" and shown["supervisor_score"] is not None
    assert client.get(f"/api/v1/calls/{reviewed[0].entry_id}", headers=auth).json["reviews"][0]["comment"]
    report = client.get("/api/v1/reports/operators?date_from=2026-11-01&date_to=2026-11-21", headers=auth).json
    assert len(report["items"]) == 6 and report["totals"]["rated"] == len(scores)


def test_demo_accounts_log_in_and_an_operator_sees_only_their_own_calls(demo):
    output, app = demo
    passwords = accounts(output)
    assert set(passwords) == {"demo-admin", "demo-supervisor", "demo-operator-101", "demo-operator-102"}
    assert "DEMO ACCOUNTS" in output and "shown only now" in output
    for username, password in passwords.items():
        client = app.test_client()
        assert console_login(client, username, password).status_code == 302, username
        assert client.get("/calls").status_code == 200
    with app.extensions["connector"].db.transaction() as s:
        users = {u.username: u for u in s.scalars(select(User))}
        assert users["demo-operator-101"].extensions == ["101"] and users["demo-operator-102"].extensions == ["102"]
        kinds = Counter((n.user_id, n.kind) for n in s.scalars(select(Notification)))
        from connector.core.users import issue_token

        token = issue_token(s, "demo-operator-101")
    assert kinds[(users["demo-supervisor"].id, "low_score")] > 0  # told of the low scores as they came
    assert kinds[(users["demo-operator-102"].id, "review")] > 0  # told of reviews of their calls

    client = app.test_client()
    seen, url = [], "/api/v1/calls?per_page=100"
    while url:
        page = client.get(url, headers={"Authorization": f"Bearer {token}"}).json
        seen += page["items"]
        url = page["_links"].get("next")
    calls = stored_calls(app)
    assert {c["operator"] for c in seen} == {"101"}
    assert len(seen) == sum(1 for c in calls if c.operator_extension == "101")
    theirs = next(c.entry_id for c in calls if c.operator_extension == "102")
    assert client.get(f"/api/v1/calls/{theirs}", headers={"Authorization": f"Bearer {token}"}).status_code == 404
    console = app.test_client()
    console_login(console, "demo-operator-101", passwords["demo-operator-101"])
    listed = set(re.findall(r'href="/calls/(demo-[\w-]+)"', console.get("/calls").get_data(as_text=True)))
    assert listed and listed <= {c.entry_id for c in calls if c.operator_extension == "101"}
    assert console.get(f"/calls/{theirs}").status_code == 404


def snapshot(app) -> list[tuple]:
    """What a user sees of the demo's calls, without the moments the run itself took place."""
    return [(c.entry_id, c.direction, c.operator_extension, c.line_number, c.customer_phone, c.created_at,
             c.ended_at, c.talk_seconds, c.recording_id, c.customer_score, c.supervisor_score, c.decision_tag,
             sorted((m.question_id, m.mark, m.comment) for m in c.supervisor_marks),
             sorted((s.source, s.origin, s.raw, s.comment or "") for s in c.scores))
            for c in stored_calls(app)]


def wipe(app) -> None:
    with app.extensions["connector"].db.transaction() as s:
        for table in reversed(Base.metadata.sorted_tables):
            s.execute(delete(table))


def test_the_same_seed_gives_the_same_data_and_running_it_again_changes_nothing(cli_env):
    # 100 calls, not the 400 of `demo`: the command runs four times here, and seed 7's first 100 already hold
    # QA forms and reviews (asserted), the parts a second run could add again.
    run("demo", "100", "--seed", "7", "--until", UNTIL)
    app = create_app(make_config(cli_env))
    try:
        first = snapshot(app)
        assert len(first) == 100 and any(c[12] for c in first)  # QA forms' marks
        assert any(origin == "review" for c in first for _, origin, _, _ in c[13])
        again = run("demo", "100", "--seed", "7", "--until", UNTIL)
        assert "stored before: the same seed again changes nothing" in again and "no demo accounts made" in again
        assert snapshot(app) == first  # no second review either
        wipe(app)
        run("demo", "100", "--seed", "7", "--until", UNTIL)
        assert snapshot(app) == first
        wipe(app)
        run("demo", "100", "--seed", "8", "--until", UNTIL)
        assert snapshot(app) != first
    finally:
        app.extensions["connector"].reads.close()
        app.extensions["connector"].db.dispose()


def test_demo_calls_are_a_pure_function_of_their_arguments():
    until = datetime(2026, 11, 20, 18, 30, tzinfo=MOSCOW)
    one = demo_calls(300, seed=3, until=until, days=7, zone=MOSCOW)
    assert one == demo_calls(300, seed=3, until=until, days=7, zone=MOSCOW)
    assert one != demo_calls(300, seed=4, until=until, days=7, zone=MOSCOW)
    assert [c.entry_id for c in one[:2]] == ["demo-3-00001", "demo-3-00002"]
    assert [c.start for c in one] == sorted(c.start for c in one)
    on_five = demo_calls(300, seed=3, until=until, days=7, zone=MOSCOW, scale=(1, 5))
    assert {int(c.digits) for c in on_five if c.digits} <= {1, 2, 3, 4, 5}
    assert {m.mark for c in on_five for m in c.marks} <= {1, 2, 3, 4, 5}


@pytest.mark.parametrize("setting, says", [({"CRM": "webhook", "WEBHOOK_TARGET_URL": "https://bi.example/hook",
                                             "WEBHOOK_TARGET_SECRET": "whsec_" + "QUJD" * 8}, "CRM=webhook"),
                                            ({"MANGO_QUALITY_API": "true"}, "MANGO_QUALITY_API=true")])
def test_demo_refuses_a_connector_that_would_send_its_calls_on(cli_env, monkeypatch, setting, says):
    for key, value in setting.items():
        monkeypatch.setenv(key, value)
    refused = CliRunner().invoke(cli, ["demo", "10"])
    assert refused.exit_code == 1 and says in refused.output
    app = create_app(make_config(cli_env))
    assert stored_calls(app) == []
    app.extensions["connector"].db.dispose()


def test_demo_refuses_a_database_with_real_calls(cli_env, mango_post):
    from tests.conftest import summary

    mango_post("events/summary", summary("MToxMDA-real"))
    refused = CliRunner().invoke(cli, ["demo", "10"])
    assert refused.exit_code == 1 and "1 call(s) that are not made up" in refused.output


def test_demo_needs_a_working_hour_in_its_period(cli_env):
    refused = CliRunner().invoke(cli, ["demo", "10", "--days", "1", "--until", "2026-11-20 08:00"])
    assert refused.exit_code == 2 and "no working hour" in refused.output


# --- the real command line: what was asked for, and no migration log ---------------------------------

def connector(*args, env: dict, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "import app; app.main()", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_commands_print_what_was_asked_for_and_no_migration_lines(db_url, tmp_path):
    import os

    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "PYTHONPATH")}
    base["PYTHONPATH"] = os.pathsep.join(filter(None, [str(os.path.dirname(os.path.dirname(__file__))),
                                                       base.get("PYTHONPATH")]))
    outputs = []
    if db_url.startswith("sqlite"):  # a fresh SQLite file under DATA_DIR, whichever database the test is on:
        fresh = {**base, "DATA_DIR": str(tmp_path / "fresh"), "SECRET_KEY": "k"}  # once is enough
        upgraded = connector("db", "upgrade", env=fresh, cwd=tmp_path)
        assert (upgraded.returncode, upgraded.stdout, upgraded.stderr) == (0, "database upgraded to head\n", "")
        outputs.append(upgraded)
    env = {**base, "DATABASE_URL": db_url, "SECRET_KEY": "k", "MANGO_API_KEY": "k", "MANGO_API_SALT": "s",
           "MANGO_SURVEY_LOCATION": "ivr.5"}
    made = connector("demo", "30", "--seed", "2", env=env, cwd=tmp_path)
    assert made.returncode == 0 and made.stderr == "", made.stderr
    assert made.stdout.startswith("30 demo calls (seed 2)") and "DEMO ACCOUNTS" in made.stdout
    listed = connector("users", "list", env=env, cwd=tmp_path)
    assert listed.returncode == 0 and listed.stderr == "" and listed.stdout.count("demo-") == 4
    for output in (*outputs, made, listed):
        assert "alembic" not in output.stdout + output.stderr and " INFO " not in output.stdout + output.stderr
