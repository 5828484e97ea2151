"""Fixtures: every database test runs on SQLite, and on PostgreSQL when TEST_DATABASE_URL is set."""
from __future__ import annotations

import base64
import json
import os
import re
import shutil
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import make_url

from app import create_app
from connector.core.config import Config
from connector.core.db import upgrade
from connector.core.models import Base
from connector.inbound.mango import callbacks as mango
from connector.wiring import load_settings

from hypothesis import settings as hypothesis_settings

# CI explores the same examples on every run, so a red build is never a roll of the dice;
# local runs keep exploring new ones.
hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")

PG_URL = os.environ.get("TEST_DATABASE_URL")
MANGO_KEY, MANGO_SALT = "test-vpbx-key", "test-vpbx-salt"
ADMIN_TOKEN = "test-admin-token-Xq7vR2mK9pL4sT8wZ3nB6cJ1"
SCORES_SECRET = "whsec_" + base64.b64encode(b"test-scores-secret-32-bytes-long").decode()

DATABASES = ["sqlite", pytest.param("postgresql", marks=pytest.mark.skipif(
    not PG_URL, reason="TEST_DATABASE_URL not set"))]


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory):
    path = tmp_path_factory.mktemp("template") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


def worker_database(url: str) -> str:
    """Under pytest-xdist (`make test` runs the suite in parallel) each worker process has a PostgreSQL
    database of its own beside the one given (`test` -> `test_gw0`), made on first use."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not worker:
        return url
    given = make_url(url)
    name = f"{given.database}_{worker}"
    admin = create_engine(given.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        if conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}).first() is None:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return given.set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def pg_migrated():
    url = worker_database(PG_URL)
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    upgrade(url)
    return url


def empty_database(kind: str, request, tmp_path) -> str:
    """A migrated database with no rows: a copy of the SQLite template, or the PostgreSQL one truncated."""
    if kind == "sqlite":
        path = tmp_path / "connector.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    url = request.getfixturevalue("pg_migrated")
    engine = create_engine(url)
    tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()
    return url


@pytest.fixture(params=DATABASES)
def db_url(request, tmp_path):
    yield empty_database(request.param, request, tmp_path)


def make_config(db_url: str, **overrides) -> Config:
    values = {
        "DATABASE_URL": db_url, "SECRET_KEY": "test-secret-key", "ADMIN_TOKEN": ADMIN_TOKEN,
        "MANGO_API_KEY": MANGO_KEY, "MANGO_API_SALT": MANGO_SALT, "MANGO_SURVEY_LOCATION": "ivr.5",
        "SCORES_WEBHOOK_SECRET": SCORES_SECRET,
    }
    values.update({k: str(v) for k, v in overrides.items()})
    return load_settings(values)  # as `connector serve` reads them: with each target's own rules


@pytest.fixture
def config_overrides():
    """Override in a test module (or with indirect parametrisation) to change settings."""
    return {}


@pytest.fixture
def app(db_url, config_overrides):
    app = create_app(make_config(db_url, **config_overrides))
    app.config["TESTING"] = True
    yield app
    app.extensions["connector"].reads.close()  # the reports' child processes, if any were started
    app.extensions["connector"].db.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@dataclass
class Target:
    """One database's app, as `every_database` gives it."""

    name: str
    app: object
    client: object
    db: object

    def mango_post(self) -> "MangoPoster":
        return MangoPoster(self.client)


@pytest.fixture
def every_database(request, tmp_path, config_overrides):
    """Opt-in, for property tests whose examples reach the database: an app on SQLite, and one on PostgreSQL when
    TEST_DATABASE_URL is set, side by side, so that each example Hypothesis draws is sent to both (drawing an
    example costs more than sending it; with `db_url` each database drew the same examples again)."""
    targets = []
    kinds = ["sqlite"] + (["postgresql"] if PG_URL else [])
    try:
        for kind in kinds:
            app = create_app(make_config(empty_database(kind, request, tmp_path), **config_overrides))
            app.config["TESTING"] = True
            targets.append(Target(kind, app, app.test_client(), app.extensions["connector"].db))
        yield targets
    finally:
        for target in targets:
            target.app.extensions["connector"].reads.close()
            target.db.dispose()


@pytest.fixture
def db(app):
    return app.extensions["connector"].db


@contextmanager
def counted_statements(db, *, verbs: bool = True):
    """The SQL statements run on `db` inside the block: their first words, or their whole text."""
    statements = []

    def count(conn, cursor, statement, *args):
        statements.append(statement.split()[0].upper() if verbs else statement)

    for engine in db.engines:
        event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        for engine in db.engines:
            event.remove(engine, "before_cursor_execute", count)


def csrf_token(page) -> str:
    """The CSRF token of a console page's form, as a browser would post it back."""
    return re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.get_data(as_text=True)).group(1)


def console_login(client, username: str, password: str):
    """Log in to the console through its form (CSRF token included); the client keeps the cookie."""
    token = csrf_token(client.get("/login"))
    return client.post("/login", data={"username": username, "password": password, "csrf_token": token})


class MangoPoster:
    """Posts signed VPBX callbacks, as the PBX does, then lets the inbox apply them, as the worker
    embedded in `connector serve` does at once: the test then sees what a user would."""

    def __init__(self, client):
        from connector.wiring import build_inbox

        self.client = client
        services = client.application.extensions["connector"]
        self.inbox = build_inbox(services.config, services.db)

    def form(self, payload, key=MANGO_KEY, salt=MANGO_SALT):
        return mango.signed_form(key, salt, payload)

    def apply(self) -> int:
        return self.inbox.drain()

    def __call__(self, kind: str, payload, **kwargs):
        response = self.client.post(f"/mango/{kind}", data=self.form(payload, **kwargs))
        self.apply()
        return response


@pytest.fixture
def mango_post(client):
    return MangoPoster(client)


def sign_score(body: str, *, msg_id: str | None = None, timestamp: int | None = None,
               secret: str = SCORES_SECRET) -> dict:
    from datetime import datetime, timezone

    from standardwebhooks.webhooks import Webhook

    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    ts = int(time.time()) if timestamp is None else timestamp
    signature = Webhook(secret).sign(msg_id, datetime.fromtimestamp(ts, timezone.utc), body)
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": signature,
            "Content-Type": "application/json"}


@pytest.fixture
def post_score(client):
    def post(payload: dict, **sign_kwargs):
        body = json.dumps(payload)
        return client.post("/api/v1/scores", data=body, headers=sign_score(body, **sign_kwargs))

    return post


@pytest.fixture
def auth():
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def summary(entry_id="call-1", *, direction=1, extension="101", customer="79001234567",
            line="74950000000", start=1_763_800_000, talk=10, talk_seconds=60):
    """An events/summary payload in the PBX's shape."""
    operator = {"extension": extension, "number": line}
    caller = {"number": customer}
    from_, to = (caller, operator) if direction != 2 else (operator, caller)
    return {"entry_id": entry_id, "call_direction": direction, "from": from_, "to": to,
            "line_number": line, "create_time": start, "forward_time": start + 2,
            "talk_time": start + talk, "end_time": start + talk + talk_seconds,
            "entry_result": 1, "disconnect_reason": 1110}


def dtmf(entry_id="call-1", digits="3", *, seq=5, location="ivr.5", timestamp=1_763_800_100):
    return {"entry_id": entry_id, "call_id": f"{entry_id}-leg", "seq": seq, "dtmf": digits,
            "location": location, "timestamp": timestamp, "initiator": "79001234567"}


def recording(entry_id="call-1", recording_id="rec-1", state="Completed", code=1000, seq=7):
    return {"entry_id": entry_id, "call_id": f"{entry_id}-leg", "recording_id": recording_id,
            "recording_state": state, "completion_code": code, "seq": seq, "extension": "101",
            "timestamp": 1_763_800_090}


# The calls export's columns as a person reads them (Russian, the console's default), in order.
EXPORT_HEADERS = ("Звонок", "Начало", "Направление", "Оператор", "Линия", "Клиент", "Разговор, с", "Опрос",
                  "Оценка клиента", "Оценка супервизора", "Тег", "Отзывы супервизоров", "Статус в CRM",
                  "Запись в CRM")


def csv_rows(response, separator: str = ";") -> list[list[str]]:
    """A CSV export as Excel reads it: UTF-8 with a byte-order mark, fields split on `separator`."""
    import csv
    import io

    data = response.data if hasattr(response, "data") else response
    assert data.startswith(b"\xef\xbb\xbf"), data[:20]
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline=""), delimiter=separator))


# What a run left out, said once per reason at its end with how to get it (one line per skipped test buried
# the reason among hundreds of lines).
HOW_TO_RUN = {
    "TEST_DATABASE_URL not set": "start PostgreSQL on 127.0.0.1:5432 (trust auth, database `test`) or set "
                                 "TEST_DATABASE_URL; `make test` then uses it",
    "browser tests need": "install Debian's chromium and chromium-driver",
}


def pytest_terminal_summary(terminalreporter):
    from collections import Counter

    reasons = Counter()
    for report in terminalreporter.stats.get("skipped", []):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        reasons[reason.removeprefix("Skipped: ")] += 1
    if not reasons:
        return
    terminalreporter.section("left out of this run")
    for reason, count in reasons.most_common():
        how = next((h for key, h in HOW_TO_RUN.items() if key in reason), None)
        terminalreporter.write_line(f"{count} skipped: {reason}" + (f"\n    to run them: {how}" if how else ""))


@pytest.fixture
def smtp():
    """A real SMTP server for the test (tests/fakes/smtp.py): (its inbox, its port)."""
    from tests.fakes.smtp import smtp_server

    with smtp_server(auth_require_tls=False) as (inbox, port):
        yield inbox, port


@pytest.fixture
def telegram():
    """The fake Telegram Bot API, served over HTTP (tests/fakes/telegram.py)."""
    from tests.fakes.server import serving
    from tests.fakes.telegram import FakeTelegram, create_fake_telegram

    fake = FakeTelegram()
    with serving(create_fake_telegram(fake)) as fake.url:
        yield fake
