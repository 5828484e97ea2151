"""Reads never hold up intake (issue 16): exports, reports, pages and API reads run in read-only
transactions that take no writer lock (SQLite: deferred BEGIN in WAL; PostgreSQL: READ ONLY), exports read
one short transaction per page, and the password is checked with nothing held. Each test fails on the code
before it: there every transaction took the process's writer lock (SQLite: BEGIN IMMEDIATE), exports and
reports read inside one writable transaction, and scrypt ran inside it."""
import threading
import time

import pytest
from sqlalchemy import select, text

from connector.core.models import Call
from connector.core.users import add_user
from tests.conftest import ADMIN_TOKEN, console_login, csv_rows, dtmf, summary

PASSWORD = "correct horse battery"
QUICK = 1.0  # seconds: a callback answered later than this waited for something it must not wait for


@pytest.fixture
def config_overrides():
    """Exports and reports in this process, where a test can hold their reads open (in child processes, the
    default, they cannot hold up this process's intake at all: tests/test_heavy_reads.py)."""
    return {"HEAVY_READS_IN_CHILDREN": "false"}


@pytest.fixture
def sam(db, monkeypatch):
    monkeypatch.setattr("connector.core.users.PASSWORD_METHOD", "scrypt:1024:8:1")
    with db.transaction() as s:
        add_user(s, "sam", "supervisor", PASSWORD)
        add_user(s, "olga", "operator", PASSWORD, ["101"])


@pytest.fixture
def five_calls(mango_post):
    for n in range(5):
        mango_post("events/summary", summary(f"call-{n}", extension="101" if n % 2 else "102",
                                             start=1_763_800_000 + 60 * n))
        mango_post("events/dtmf", dtmf(f"call-{n}", str(2 + n)))


def read_only(session) -> bool:
    """Whether the transaction `session` is in can write nothing."""
    if session.bind.dialect.name == "postgresql":
        return session.execute(text("SHOW transaction_read_only")).scalar() == "on"
    return session.execute(text("PRAGMA query_only")).scalar() == 1


def acknowledged_in(app, form, timeout: float) -> float | None:
    """Post a signed callback from another thread, as the PBX does; seconds until it was answered 200,
    or None if it was not answered within `timeout`."""
    answer = {}

    def post():
        started = time.monotonic()
        response = app.test_client().post("/mango/events/summary", data=form)
        answer["status"], answer["seconds"] = response.status_code, time.monotonic() - started

    poster = threading.Thread(target=post, daemon=True)
    poster.start()
    poster.join(timeout)
    if "seconds" not in answer:
        return None
    assert answer["status"] == 200
    return answer["seconds"]


# (what is read, where it reads: a function called inside the read's transaction, patched to hold it open)
READERS = [
    ("/calls/export.xlsx", "connector.console.exports.find_calls"),
    ("/calls/export.csv", "connector.console.exports.find_calls"),
    ("/reports", "connector.console.reports.counts"),
    ("/reports/export.xlsx", "connector.console.reports.counts"),
    ("/api/v1/reports/operators", "connector.console.reports.counts"),
    ("/api/v1/calls", "web.api.calls.find_calls"),
]


@pytest.mark.parametrize("path, inside", READERS, ids=[p for p, _ in READERS])
def test_a_callback_is_acknowledged_at_once_while_an_export_or_report_is_reading(
        app, client, db, sam, five_calls, mango_post, monkeypatch, path, inside):
    module, name = inside.rsplit(".", 1)
    real = getattr(__import__(module, fromlist=[name]), name)
    holding, release, seen = threading.Event(), threading.Event(), {}

    def held_open(session, *args, **kwargs):
        result = real(session, *args, **kwargs)
        if not holding.is_set():  # the first read: hold its transaction open, as a long export does
            seen["read_only"] = read_only(session)
            holding.set()
            release.wait(30)
        return result

    monkeypatch.setattr(inside, held_open)
    if path.startswith("/api/"):
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    else:
        console_login(client, "sam", PASSWORD)
        headers = {}
    answer = {}

    def read():  # the whole body in this thread: a streamed export runs as it is read
        response = client.get(path, headers=headers)
        answer.update(status=response.status_code, body=response.get_data())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert holding.wait(10), "the read never started"
        seconds = acknowledged_in(app, mango_post.form(summary("during-the-read")), timeout=5)
        assert seconds is not None, f"a callback waited more than 5 s for {path}"
        assert seconds < QUICK, f"a callback waited {seconds:.2f} s for {path}"
        assert seen["read_only"], f"{path} reads in a transaction that could write"
    finally:
        release.set()
        reader.join(30)
    assert answer["status"] == 200
    if path == "/calls/export.csv":
        assert len(csv_rows(answer["body"])) == 1 + 5
    with db.reading() as s:  # the callback is stored (committed before it was answered)
        assert s.scalar(text("SELECT count(*) FROM inbound_events WHERE entry_id = 'during-the-read'")) == 1


def test_an_export_holds_nothing_between_its_pages_and_its_output_is_the_same(
        app, client, db, sam, five_calls, monkeypatch):
    import connector.console.exports as exports

    console_login(client, "sam", PASSWORD)
    whole = client.get("/calls/export.csv?sort=lowest_score").data
    rows = csv_rows(whole)
    assert [r[0] for r in rows[1:]] == ["call-0", "call-1", "call-2", "call-3", "call-4"]

    real, held = exports.find_calls, []

    def page(session, *args, **kwargs):
        held.append(db.engine.pool.checkedout())  # connections in use as this page's read starts
        return real(session, *args, **kwargs)

    monkeypatch.setattr(exports, "PAGE", 2)
    monkeypatch.setattr(exports, "find_calls", page)
    paged = client.get("/calls/export.csv?sort=lowest_score").data
    assert paged == whole  # three pages of two, byte for byte the one-page export
    assert len(held) == 3
    # Each page is its own short read: when a page starts, the previous page's transaction is over.
    assert held[1:] == [0, 0], f"connections held between pages: {held}"


def test_the_password_is_checked_with_no_transaction_connection_or_lock_held(app, client, db, sam, monkeypatch):
    import connector.core.users as users

    real, during = users.check_password_hash, []

    def check(pwhash, password):
        lock_free = db.is_postgres or _lock_is_free(db)
        during.append((db.engine.pool.checkedout(), lock_free))
        return real(pwhash, password)

    monkeypatch.setattr(users, "check_password_hash", check)
    assert console_login(client, "sam", PASSWORD).status_code == 302  # right
    assert console_login(client, "sam", "wrong password").status_code == 401
    assert console_login(client, "nobody", PASSWORD).status_code == 401  # an unknown user costs the same
    with db.transaction() as s:
        users.disable_user(s, "olga")
    assert console_login(client, "olga", PASSWORD).status_code == 401  # disabled: refused after the check
    assert len(during) == 4
    assert during == [(0, True)] * 4, f"(connections in use, writer lock free) while hashing: {during}"


def _lock_is_free(db) -> bool:
    """Whether another thread could take the process's writer lock right now."""
    free = []

    def probe():
        if db._writer.acquire(blocking=False):
            db._writer.release()
            free.append(True)

    thread = threading.Thread(target=probe)
    thread.start()
    thread.join()
    return bool(free)


def test_a_read_never_waits_for_a_writer_nor_a_writer_for_a_read(db, client, five_calls):
    """The primitive: a read transaction held open does not delay a commit, sees one snapshot, and
    cannot write; an API read answers while a writer holds the writer lock."""
    with db.reading() as r:
        before = r.scalar(select(Call.id).where(Call.entry_id == "call-0"))
        assert read_only(r)
        started = time.monotonic()
        with db.transaction() as w:  # another thread would be the same: no lock is shared with readers
            w.execute(text("UPDATE calls SET customer_score = 1 WHERE entry_id = 'call-0'"))
        assert time.monotonic() - started < QUICK
        assert r.scalar(select(Call.customer_score).where(Call.id == before)) == 2  # its snapshot
        with pytest.raises(Exception, match="read-?only"):
            r.execute(text("UPDATE calls SET customer_score = 5"))

    writing, done = threading.Event(), threading.Event()

    def writer():
        with db.transaction() as w:  # holds the writer lock (SQLite: and SQLite's write lock)
            w.execute(text("UPDATE calls SET customer_score = 7 WHERE entry_id = 'call-1'"))
            writing.set()
            done.wait(10)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        assert writing.wait(5)
        started = time.monotonic()
        answer = client.get("/api/v1/calls?per_page=10", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert answer.status_code == 200 and len(answer.json["items"]) == 5
        assert time.monotonic() - started < QUICK, "an API read waited for a writer"
        assert {c["call_id"]: c["customer_score"] for c in answer.json["items"]}["call-1"] == 3  # not yet committed
    finally:
        done.set()
        thread.join(10)


def test_a_first_read_does_not_write_the_settings_it_finds_missing(db, client):
    """Settings rows are seeded on first use; a read shows the initial values and writes nothing."""
    from connector.core.models import RuntimeSettings

    answer = client.get("/api/v1/settings", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert answer.status_code == 200 and answer.json["max_threshold"] == 9  # the initial policy (QA_MAX_THRESHOLD)
    with db.reading() as s:
        assert s.scalar(select(RuntimeSettings.id).limit(1)) is None
