"""Processes killed without warning: a worker SIGKILLed mid-batch (call notes and tag adds), and the
web process SIGKILLed mid-burst, after which the PBX resends what it did not see acknowledged."""
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from sqlalchemy import select

from connector.core.db import Database
from connector.core.models import InboundEvent
from connector.inbound.mango.callbacks import signed_form
from tests.delivery_helpers import TOKEN, connector_with_fake_amo
from tests.e2e.test_serve_and_simulate import running_connector
from tests.fakes.amocrm import FakeAmo, create_fake_app
from tests.fakes.server import serving
from tests.ledger import ScoredCalls, assert_exactly_once, report, tally, wait_until_settled
from tests.processes import process_env, start_worker, workers_until_settled

pytestmark = pytest.mark.e2e

# What these cases prove is exactly-once delivery across a SIGKILL, not pacing: the fake amoCRM and the
# connector's limiter run at ten times amoCRM's real rate (the connector still under the fake's).
AMO_RATE = 70
# Enough calls for two batches of each kind (amoCRM takes 50 a request; 56 of 70 are tagged): the kill, at
# a known request, leaves one batch in doubt and work not yet claimed.
CALLS = 70


def fast_amo() -> FakeAmo:
    return FakeAmo(long_lived_token=TOKEN, rate_limit=AMO_RATE)


def stored_then_applied(calls: ScoredCalls, post) -> None:
    """Every callback acknowledged (through the MangoPoster `post`, in process), then all applied in one go,
    as the embedded worker applies a burst: the same events and jobs as applying each on arrival, in a
    fraction of the time (an inbox pass per callback cost seconds)."""
    for i in range(calls.count):
        for kind, payload in calls.callbacks(i):
            assert post.client.post(f"/mango/{kind}", data=post.form(payload)).status_code == 200
    assert post.apply() == 2 * calls.count


@pytest.mark.parametrize("method, path, looked_up", [
    ("POST", "/api/v4/calls", "/notes"),  # a batch of calls
    ("PATCH", "/api/v4/contacts", "/api/v4/contacts"),  # a batch of tag adds
])
def test_a_worker_sigkilled_mid_batch(db_url, tmp_path, capsys, method, path, looked_up):
    with connector_with_fake_amo(db_url, fast_amo(), AMOCRM_RATE_LIMIT=AMO_RATE) as h:
        calls = ScoredCalls(count=CALLS).known_to(h.fake)
        stored_then_applied(calls, h.post)
        env = process_env(DATABASE_URL=db_url, CRM="amocrm", AMOCRM_BASE_URL=h.amo_url, AMOCRM_LONG_LIVED_TOKEN=TOKEN,
                          AMOCRM_RATE_LIMIT=AMO_RATE, SECRET_KEY="test-secret-key", SURVEY_WAIT_SECONDS=0, WORKER_LEASE_SECONDS=2,
                          WORKER_POLL_SECONDS=0.1)
        first = start_worker(env, tmp_path)
        killed = []

        def kill_after_the_second_batch(m, p):
            if m == method and p == path and not killed:
                if sum(1 for _, m2, p2, _ in h.fake.requests if m2 == method and p2 == path) == 1:
                    os.kill(first.pid, signal.SIGKILL)  # the batch is applied; its answer never arrives
                    killed.append(time.monotonic())

        h.fake.after_effect = kill_after_the_second_batch
        first.wait(timeout=60)
        assert killed and first.returncode == -signal.SIGKILL
        h.fake.after_effect = None
        workers_until_settled(env, tmp_path, h.db)
        figures = tally(h.fake, calls, h.db)
        report(f"worker-sigkill-mid-{'calls' if 'calls' in path else 'tags'}-batch", figures, capsys)
        assert_exactly_once(figures)
        # The batch in doubt was looked up in the CRM instead of being sent again.
        assert any(m == "GET" and p.endswith(looked_up) for _, m, p, _ in h.fake.requests)


def test_a_worker_sigkilled_mid_webhooks_beside_amocrm(db_url, tmp_path, capsys):
    """Two targets; the worker dies while the webhook receiver applies a message. Afterwards every score
    is applied once at the receiver (a resend carries the same webhook-id) and once in amoCRM."""
    from tests.fakes.receiver import FakeReceiver, create_receiver
    from tests.test_webhook_target import SECRET

    receiver = FakeReceiver(SECRET)
    with serving(create_receiver(receiver)) as hook_url, connector_with_fake_amo(
            db_url, fast_amo(), AMOCRM_RATE_LIMIT=AMO_RATE, CRM="amocrm,webhook", WEBHOOK_TARGET_URL=f"{hook_url}/hook", WEBHOOK_TARGET_SECRET=SECRET) as h:
        calls = ScoredCalls(count=CALLS).known_to(h.fake)
        stored_then_applied(calls, h.post)
        env = process_env(DATABASE_URL=db_url, CRM="amocrm,webhook", AMOCRM_BASE_URL=h.amo_url,
                          AMOCRM_LONG_LIVED_TOKEN=TOKEN, AMOCRM_RATE_LIMIT=AMO_RATE, WEBHOOK_TARGET_URL=f"{hook_url}/hook",
                          WEBHOOK_TARGET_SECRET=SECRET, SECRET_KEY="test-secret-key", SURVEY_WAIT_SECONDS=0,
                          WORKER_LEASE_SECONDS=2, WORKER_POLL_SECONDS=0.1)
        first = start_worker(env, tmp_path)
        killed = []

        def kill_on_the_thirtieth_message(_message_id):
            if len(receiver.applied) == 30 and not killed:
                os.kill(first.pid, signal.SIGKILL)  # applied; the worker never hears the answer
                killed.append(time.monotonic())

        receiver.after_effect = kill_on_the_thirtieth_message
        first.wait(timeout=60)
        assert killed and first.returncode == -signal.SIGKILL
        receiver.after_effect = None
        workers_until_settled(env, tmp_path, h.db)
        figures = tally(h.fake, calls, h.db)
        ids_per_call = {}
        for message_id, body in receiver.received:
            ids_per_call.setdefault(body["data"]["call_id"], set()).add(message_id)
        figures["webhook_lost"] = calls.count - len(ids_per_call)
        figures["webhook_doubled"] = sum(len(ids) - 1 for ids in ids_per_call.values())  # two ids for one score
        figures["webhook_resent"] = len(receiver.received) - len(receiver.applied)
        report("worker-sigkill-mid-webhooks", figures, capsys)
        assert_exactly_once(figures)
        assert figures["webhook_lost"] == 0 and figures["webhook_doubled"] == 0, figures
        assert len(receiver.applied) == calls.count


def test_a_worker_sigkilled_mid_bitrix24_batch(db_url, tmp_path, capsys):
    """The worker dies right after Bitrix24 applied a batch of registered and finished calls. The next
    worker registers those calls again (the same calls, within 30 minutes), finds them finished, and
    finishes nothing twice."""
    from tests.conftest import MangoPoster, make_config
    from tests.fakes.bitrix24 import FakeBitrix24, create_fake_bitrix24

    fake = FakeBitrix24(drain_per_second=50, bucket_size=500)
    calls = ScoredCalls(count=60, prefix="k")
    for i in range(calls.count):
        fake.add_contact(calls.phone(i))
    with serving(create_fake_bitrix24(fake)) as url:
        settings = dict(CRM="bitrix24", **fake.connector_settings(url), SECRET_KEY="test-secret-key",
                        SURVEY_WAIT_SECONDS=0)
        from app import create_app

        app = create_app(make_config(db_url, **settings))
        db = app.extensions["connector"].db
        stored_then_applied(calls, MangoPoster(app.test_client()))
        env = process_env(DATABASE_URL=db_url, WORKER_LEASE_SECONDS=2, WORKER_POLL_SECONDS=0.1, **settings)
        first = start_worker(env, tmp_path)
        killed = []

        def kill_after_the_second_call_batch(method):
            if method == "batch" and not killed and len(fake.finished()) > 16:
                os.kill(first.pid, signal.SIGKILL)  # applied; its answer never arrives
                killed.append(time.monotonic())

        fake.after_effect = kill_after_the_second_call_batch
        first.wait(timeout=60)
        assert killed and first.returncode == -signal.SIGKILL
        fake.after_effect = None
        workers_until_settled(env, tmp_path, db)
        finished = [c["params"]["EXTERNAL_CALL_ID"] for c in fake.finished()]
        figures = {"calls": calls.count, "lost": len(set(calls.entry_ids) - set(finished)),
                   "doubled": len(finished) - len(set(finished)) + len(fake.calls) - calls.count,
                   "comments": len(fake.comments), "requests": len(fake.requests)}
        report("worker-sigkill-mid-bitrix24-batch", figures, capsys)
        assert figures["lost"] == 0 and figures["doubled"] == 0, figures
        assert len(fake.comments) == calls.count  # each score's text once
        db.dispose()


def stored_callbacks(db_url: str) -> set[tuple[str, str]]:
    db = Database(db_url)
    try:
        with db.transaction() as s:
            return set(s.execute(select(InboundEvent.entry_id, InboundEvent.kind)).tuples())
    finally:
        db.dispose()


def test_the_web_process_sigkilled_mid_burst_then_the_pbx_resends(db_url, tmp_path, capsys):
    fake = fast_amo()
    calls = ScoredCalls(count=80, prefix="w").known_to(fake)  # 160 callbacks: 8 senders, killed at a third
    callbacks = [(calls.entry_ids[i], kind, payload)
                 for i in range(calls.count) for kind, payload in calls.callbacks(i)]
    acknowledged: set[int] = set()
    refused: list[int] = []
    processes: list = []

    def send(base: str, index: int) -> bool:
        _, kind, payload = callbacks[index]
        try:
            answer = requests.post(f"{base}/mango/{kind}", data=signed_form("e2e-key", "e2e-salt", payload), timeout=10)
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError):
            return False  # gone, or killed mid-answer: the PBX keeps it for the resend
        if answer.status_code != 200:
            refused.append(answer.status_code)
            return False
        acknowledged.add(index)
        return True

    with serving(create_fake_app(fake)) as amo_url:
        crm = {"CRM": "amocrm", "AMOCRM_BASE_URL": amo_url, "AMOCRM_LONG_LIVED_TOKEN": TOKEN,
               "AMOCRM_RATE_LIMIT": str(AMO_RATE), "AMOCRM_USER_MAP": "101:5551", "SURVEY_WAIT_SECONDS": "0"}
        with running_connector(tmp_path, db_url, processes, **crm) as (base, _env, _cwd):
            kill_once = threading.Lock()

            def send_and_kill(index: int) -> None:
                if send(base, index) and len(acknowledged) >= len(callbacks) // 3 and kill_once.acquire(False):
                    os.kill(processes[0].pid, signal.SIGKILL)

            with ThreadPoolExecutor(8) as senders:
                list(senders.map(send_and_kill, range(len(callbacks))))
            assert processes[0].wait(timeout=10) == -signal.SIGKILL
        before_resend = len(acknowledged)
        assert len(callbacks) // 3 <= before_resend < len(callbacks)
        stored = stored_callbacks(db_url)
        lost_acks = [callbacks[i][:2] for i in acknowledged if callbacks[i][:2] not in stored]
        assert not lost_acks, f"acknowledged but not stored: {lost_acks[:5]}"

        # The PBX resends everything it did not see acknowledged; a few acknowledged ones come twice too.
        with running_connector(tmp_path, db_url, **crm) as (base, _env, _cwd):
            unacknowledged = [i for i in range(len(callbacks)) if i not in acknowledged]
            again = unacknowledged + sorted(acknowledged)[:20]
            with ThreadPoolExecutor(8) as senders:
                assert all(senders.map(lambda i: send(base, i), again))
            db = Database(db_url)
            try:
                wait_until_settled(db)
                figures = {**tally(fake, calls, db), "callbacks": len(callbacks),
                           "acknowledged_before_kill": before_resend, "resent": len(again),
                           "stored_events": len(stored_callbacks(db_url))}
            finally:
                db.dispose()
        report("web-sigkill-mid-burst-and-resend", figures, capsys)
        assert figures["stored_events"] == len(callbacks) and not refused
        assert_exactly_once(figures)
