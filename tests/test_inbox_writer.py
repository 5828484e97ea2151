"""The webhook's group commit (connector/inbound/inbox.py InboxWriter): callbacks that come together share a
commit, each is answered only after its own, one the database refuses fails alone, and a request that dies
while it leads a commit never leaves the others waiting. SQLite and PostgreSQL."""
import json
import threading

import pytest
from sqlalchemy import event, func, select, text
from sqlalchemy.exc import OperationalError

from connector.core.models import InboundEvent
from connector.inbound.inbox import InboxWriter
from connector.inbound.mango import callbacks
from tests.conftest import DATABASES, counted_statements, dtmf


def message(n: int, entry: str = "call-w"):
    return callbacks.parse("events/dtmf", json.dumps(dtmf(entry, str(1 + n % 9), seq=n)))


def stored(db) -> int:
    with db.reading() as s:
        return s.scalar(select(func.count()).select_from(InboundEvent))


def submit_all(writer, messages, results, errors):
    def one(index, m):
        try:
            results[index] = writer.submit("mango", m, timeout=10)
        except BaseException as exc:  # noqa: BLE001 - what each request would answer with
            errors[index] = exc

    threads = [threading.Thread(target=one, args=(i, m)) for i, m in enumerate(messages)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert not any(t.is_alive() for t in threads), "a request is still waiting for its commit"


@pytest.mark.parametrize("db_url", DATABASES, indirect=True)
def test_callbacks_that_come_together_share_commits_and_each_learns_its_own_outcome(db):
    writer = InboxWriter(db)
    messages = [message(n) for n in range(60)] + [message(0)]  # the last repeats the first
    results, errors = {}, {}
    with counted_statements(db) as statements:
        submit_all(writer, messages, results, errors)
    assert not errors
    assert stored(db) == 60
    assert sorted(results.values()).count(False) == 1 and sum(results.values()) == 60
    assert statements.count("INSERT") < 60  # shared commits, not one per callback


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_message_the_database_refuses_fails_alone(db, monkeypatch):
    writer = InboxWriter(db)
    poison = message(99, "call-poison")
    store = writer._store

    def refusing(batch):
        if any(t.message is poison for t in batch):
            raise ValueError("refused")
        store(batch)

    monkeypatch.setattr(writer, "_store", refusing)
    results, errors = {}, {}
    submit_all(writer, [message(n) for n in range(20)] + [poison], results, errors)
    assert list(errors) == [20] and isinstance(errors[20], ValueError)
    assert stored(db) == 20 and all(results[i] for i in range(20))


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_request_that_dies_while_leading_hands_the_lead_on(db, monkeypatch):
    """A gunicorn worker's timeout or a server stopping may end a request mid-commit (a BaseException):
    the callbacks waiting behind it are still stored and answered, and later ones too."""
    writer = InboxWriter(db)
    store, entered, release = writer._store, threading.Event(), threading.Event()

    class Stopped(BaseException):
        pass

    def dying_once(batch):
        if not entered.is_set():
            entered.set()
            release.wait(5)
            raise Stopped()
        store(batch)

    monkeypatch.setattr(writer, "_store", dying_once)
    first = {}
    leader = threading.Thread(target=lambda: first.setdefault("error", _raises(writer, message(0))))
    leader.start()
    assert entered.wait(5)
    results, errors = {}, {}
    followers = threading.Thread(target=submit_all, args=(writer, [message(n) for n in range(1, 11)], results, errors))
    followers.start()
    while writer.waiting < 10:  # they wait behind the dying leader
        threading.Event().wait(0.01)
    release.set()
    leader.join(10)
    followers.join(20)
    assert isinstance(first["error"], Stopped)
    assert not errors and all(results.values()) and len(results) == 10
    assert writer.submit("mango", message(11)) is True
    assert stored(db) == 11


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_callbacks_in_the_commit_of_a_request_that_dies_are_told_it_failed(db, monkeypatch):
    """Those whose message was in the cut-short commit are never answered as stored (nor as duplicates): they
    hear the database failed (503), and the PBX sends them again."""
    writer = InboxWriter(db)
    store, calls, queued = writer._store, [], threading.Event()

    class Stopped(BaseException):
        pass

    def second_dies(batch):
        calls.append(len(batch))
        if len(calls) == 1:
            queued.wait(5)  # the others wait behind the first commit, to share the second
            store(batch)
        else:
            raise Stopped()

    monkeypatch.setattr(writer, "_store", second_dies)
    first = threading.Thread(target=lambda: writer.submit("mango", message(0)))
    first.start()
    while not calls:
        threading.Event().wait(0.01)
    results, errors = {}, {}
    followers = threading.Thread(target=submit_all, args=(writer, [message(n) for n in range(1, 6)], results, errors))
    followers.start()
    while writer.waiting < 5:
        threading.Event().wait(0.01)
    queued.set()
    first.join(10)
    followers.join(20)
    assert calls == [1, 5]
    dead_leader = [i for i, e in errors.items() if isinstance(e, Stopped)]
    assert len(dead_leader) == 1 and not results
    assert all(isinstance(e, OperationalError) for i, e in errors.items() if i not in dead_leader)
    assert stored(db) == 1


def _raises(writer, m):
    try:
        writer.submit("mango", m)
    except BaseException as exc:  # noqa: BLE001
        return exc
    return None


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_when_the_database_is_down_every_waiting_callback_hears_it(db, monkeypatch):
    writer = InboxWriter(db)

    def down(batch):
        raise OperationalError("INSERT", {}, ConnectionError("server closed the connection"))

    monkeypatch.setattr(writer, "_store", down)
    results, errors = {}, {}
    submit_all(writer, [message(n) for n in range(8)], results, errors)
    assert len(errors) == 8 and all(isinstance(e, OperationalError) for e in errors.values())
    assert stored(db) == 0


POSTGRESQL = [p for p in DATABASES if p != "sqlite"]


def backend_pids(db) -> set[int]:
    """The server processes of the connections `db` hands out from now on (recorded as each is checked out)."""
    pids: set[int] = set()
    for engine in db.engines:
        event.listen(engine, "checkout", lambda dbapi, record, proxy: pids.add(dbapi.info.backend_pid))
    return pids


@pytest.mark.parametrize("db_url", POSTGRESQL, indirect=True)
def test_a_commit_reaches_postgresql_in_one_round_trip(db, tmp_path):
    writer = InboxWriter(db)
    pooled = []
    for engine in db.engines:
        event.listen(engine, "checkout", lambda dbapi, record, proxy: pooled.append(dbapi))
    writer.submit("mango", message(0))  # the pool holds its connection now
    trace_path = tmp_path / "libpq.trace"
    with open(trace_path, "w") as trace:
        for connection in pooled:
            connection.pgconn.trace(trace.fileno())
        assert writer.submit("mango", message(1)) is True
        for connection in pooled:
            connection.pgconn.untrace()
    # What the client sent the server (libpq's trace: "F" lines), ending in Sync once per round trip: no ping
    # before the statement, no BEGIN and no COMMIT around it (the insert commits itself).
    sent = [line.split("\t")[3] for line in trace_path.read_text().splitlines() if line.split("\t")[1:2] == ["F"]]
    assert sent.count("Sync") + sent.count("Query") == 1, sent
    assert stored(db) == 2


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_commit_on_sqlite_is_its_one_statement(db):
    writer = InboxWriter(db)
    pooled = []
    event.listen(db.engine, "checkout", lambda dbapi, record, proxy: pooled.append(dbapi))
    writer.submit("mango", message(0))
    run = []
    for connection in pooled:
        connection.set_trace_callback(run.append)  # every statement SQLite runs on it, BEGIN and COMMIT too
    assert writer.submit("mango", message(1)) is True
    for connection in pooled:
        connection.set_trace_callback(None)
    assert [statement.split()[0] for statement in run] == ["INSERT"]  # its own transaction: no BEGIN, no COMMIT
    assert stored(db) == 2


@pytest.mark.parametrize("db_url", POSTGRESQL, indirect=True)
def test_a_connection_the_server_dropped_costs_no_callback(db):
    writer = InboxWriter(db)
    pids = backend_pids(db)
    assert writer.submit("mango", message(0)) is True
    pooled = set(pids)
    with db.transaction() as s:  # the server ends the pooled connection, as a restart or an idle timeout does
        for pid in pooled:
            s.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    assert writer.submit("mango", message(1)) is True  # sent again on a new connection, once
    assert writer.submit("mango", message(1)) is False
    assert stored(db) == 2
