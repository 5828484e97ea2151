"""A worker SIGKILLed in the middle of sending a digest or a scheduled report (issue #20): the SMTP exchange is
held at RCPT by the test's real SMTP server while the worker is killed, then a new worker takes the message
over when the lease runs out, and the person has it exactly once."""
from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from connector.console.report_mail import subscribe
from connector.core.models import Alert, AlertStatus, Call, ReportPeriod
from connector.core.users import add_user
from tests.conftest import summary
from tests.fakes.smtp import smtp_settings
from tests.ports import free_port
from tests.processes import process_env, start_worker, stop

pytestmark = pytest.mark.e2e


class HeldInbox:
    """Accepts mail; the first RCPT waits until the test lets it go (the worker is killed meanwhile). A
    message counts once the DATA is in, as with any server."""

    def __init__(self):
        self.entered, self.release = threading.Event(), threading.Event()
        self.subjects: list[str] = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if not self.entered.is_set():
            self.entered.set()
            while not self.release.is_set():
                await asyncio.sleep(0.05)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        import email
        import email.policy
        self.subjects.append(email.message_from_bytes(envelope.content, policy=email.policy.default)["Subject"])
        return "250 Message accepted"


@pytest.fixture
def held_smtp():
    inbox = HeldInbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield inbox, controller.port
    finally:
        inbox.release.set()
        controller.stop()


@pytest.fixture
def config_overrides(held_smtp):
    return smtp_settings(held_smtp[1])


@pytest.mark.parametrize("message", ["digest", "report"])
def test_a_worker_killed_mid_send_leaves_the_message_to_the_next_exactly_once(db_url, db, mango_post, held_smtp,
                                                                             tmp_path, message):
    inbox, port = held_smtp
    now = datetime.now(timezone.utc)
    with db.transaction() as s:
        sam = add_user(s, "sam", "supervisor", "correct horse battery")
        sam.email = "sam@example.ru"
        s.flush()
        if message == "report":
            subscribe(s, sam.id, ReportPeriod.DAILY, hour=0, now=now - timedelta(days=2))
        sam_id = sam.id
    if message == "digest":  # two alerts that quiet hours held, due now
        for entry in ("call-1", "call-2"):
            assert mango_post("events/summary", summary(entry)).status_code == 200
        with db.transaction() as s:
            for call in s.scalars(select(Call)):
                s.add(Alert(call_row=call.id, trigger="low_score", user_id=sam_id, channel="email",
                            status=AlertStatus.HELD, held_until=now - timedelta(minutes=1)))
    env = process_env(DATABASE_URL=db_url, SECRET_KEY="test-secret-key", CRM="none", **smtp_settings(port),
                      WORKER_LEASE_SECONDS=2, WORKER_POLL_SECONDS=0.2)
    first = start_worker(env, tmp_path)
    try:
        assert inbox.entered.wait(60), "the worker never reached the SMTP server"
        os.kill(first.pid, signal.SIGKILL)  # mid-exchange: the server has not taken the message
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
    inbox.release.set()
    assert inbox.subjects == []
    second = start_worker(env, tmp_path)
    try:
        deadline = time.monotonic() + 60
        while not inbox.subjects and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(3)  # past another lease: a second copy would have come by now
    finally:
        stop(second)
    expected = "Сводка оповещений: 2 звонка" if message == "digest" else "Отчёт о качестве звонков за"
    assert len(inbox.subjects) == 1 and inbox.subjects[0].startswith(expected)
