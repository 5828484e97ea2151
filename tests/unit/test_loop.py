"""The background loop while the database is down: it rests longer after each failure, says so in
one line instead of a traceback per attempt, and says when it works again."""
import logging
import threading

from sqlalchemy.exc import OperationalError

from connector.core import loop


def test_failure_pause_doubles_and_is_capped():
    assert [loop.failure_pause(n) for n in (1, 2, 3, 4, 5, 6, 10)] == [0.5, 1, 2, 4, 8, 10, 10]


def test_a_database_outage_is_logged_once_and_its_end_too(monkeypatch, caplog):
    monkeypatch.setattr(loop, "failure_pause", lambda failures: 0.0)
    stop, calls = threading.Event(), []

    def run_once():
        calls.append(1)
        if len(calls) <= 5:
            raise OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused\nmore detail"))
        stop.set()
        return 1

    caplog.set_level(logging.INFO, logger="connector.core.loop")
    loop.run_until_stopped("inbox", run_once, stop, idle_seconds=0.01)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["inbox: database unavailable (connection refused); retrying",
                        "inbox: working again after 5 failed attempt(s)"]
    assert not any(r.exc_info for r in caplog.records)


def test_any_other_failure_keeps_its_traceback(monkeypatch, caplog):
    monkeypatch.setattr(loop, "failure_pause", lambda failures: 0.0)
    stop = threading.Event()

    def run_once():
        if not stop.is_set():
            stop.set()
            raise KeyError("bug")
        return 0

    loop.run_until_stopped("worker", run_once, stop, idle_seconds=0.01)
    assert [r.exc_info[0] for r in caplog.records if r.exc_info] == [KeyError]
