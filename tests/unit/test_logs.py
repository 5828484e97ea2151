"""Log lines never carry a caller's number, whatever put it there; they keep the call id."""
import io
import logging

import pytest

from connector.core.logs import RedactingFormatter, configure_logging, mask_phones


@pytest.mark.parametrize("text", [
    "amoCRM: phone 79001234567 not found", "caller +7 (900) 123-45-67 hung up", "to +79001234567.",
    "numbers 9001234567,89161234567",
])
def test_phone_numbers_are_masked(text):
    masked = mask_phones(text)
    assert not any(n in masked.replace(" ", "").replace("-", "").replace("(", "").replace(")", "")
                   for n in ("9001234567", "9161234567"))
    assert "<phone …" in masked


@pytest.mark.parametrize("text", [
    "call MTAyMjQ0Njg0NDA6MTA3 job 12345678 dead", "until 2026-11-23 11:32:57", "entry 4242:log_call",
    "took 0.12345678901 s", "id 1234567890123456789",
])
def test_ids_dates_and_figures_are_kept(text):
    assert mask_phones(text) == text


def test_configured_handlers_mask_messages_and_tracebacks():
    root = logging.getLogger()
    saved = root.handlers[:]
    stream = io.StringIO()
    root.handlers = [logging.StreamHandler(stream)]
    try:
        configure_logging()
        log = logging.getLogger("connector.test")
        log.error("call %s: amoCRM said %s", "abc-1", "phone 79001234567 is invalid")
        try:
            raise ValueError("bad number +7 900 123 45 67")
        except ValueError:
            log.exception("call abc-2 failed")
    finally:
        root.handlers = saved
    written = stream.getvalue()
    assert "call abc-1" in written and "call abc-2" in written and "ValueError" in written
    assert "79001234567" not in written and "900 123 45 67" not in written
    assert isinstance(RedactingFormatter(), logging.Formatter)


def test_database_errors_name_the_statement_but_not_its_values(tmp_path):
    from sqlalchemy import text
    from sqlalchemy.exc import IntegrityError

    from connector.core.db import make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE calls (phone TEXT UNIQUE)"))
        conn.execute(text("INSERT INTO calls VALUES (:p)"), {"p": "79001234567"})
    with pytest.raises(IntegrityError) as refused:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO calls VALUES (:p)"), {"p": "79001234567"})
    engine.dispose()
    assert "INSERT INTO calls" in str(refused.value) and "79001234567" not in str(refused.value)
