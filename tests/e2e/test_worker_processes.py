"""Real worker processes against the fake amoCRM: a SIGKILL mid-batch, and two workers at once."""
import os
import signal
import subprocess
import sys
import time

import pytest
from sqlalchemy import func, select

from connector.models import DeliveryJob
from tests.conftest import dtmf, summary
from tests.delivery_helpers import TOKEN, connector_with_fake_amo

pytestmark = pytest.mark.e2e
CALLS = 120


def worker_env(h, db_url):
    return {**{k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")},
            "DATABASE_URL": db_url, "CRM": "amocrm", "AMOCRM_BASE_URL": h.amo_url,
            "AMOCRM_LONG_LIVED_TOKEN": TOKEN, "SECRET_KEY": "test-secret-key", "SURVEY_WAIT_SECONDS": "0",
            "WORKER_LEASE_SECONDS": "2", "WORKER_POLL_SECONDS": "0.1"}


def start_worker(env, cwd):
    return subprocess.Popen([sys.executable, "-c", "import app; app.main()", "worker"], env=env, cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def enqueue_scored_calls(h, count=CALLS):
    for i in range(count):
        phone = f"7922{i:07d}"
        h.fake.add_contact(phone)
        assert h.post("events/summary", summary(f"k{i}", customer=phone)).status_code == 200
        assert h.post("events/dtmf", dtmf(f"k{i}", str(1 + i % 8))).status_code == 200


def wait_until_delivered(h, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with h.db.transaction() as s:
            open_jobs = s.scalar(select(func.count()).select_from(DeliveryJob)
                                 .where(DeliveryJob.status.in_(["pending", "waiting"])))
            total = s.scalar(select(func.count()).select_from(DeliveryJob))
        if total and not open_jobs:
            return
        time.sleep(0.2)
    raise AssertionError(f"{open_jobs} jobs still open")


def assert_each_effect_once(h, count=CALLS):
    for i in range(count):
        assert len(h.fake.calls_by_uniq(f"k{i}")) == 1, f"call k{i} logged {len(h.fake.calls_by_uniq(f'k{i}'))}x"
    assert len(h.fake.calls) == count
    assert len(h.fake.tag_adds) == count and set(h.fake.tag_adds.values()) == {1}
    with h.db.transaction() as s:
        statuses = set(s.scalars(select(DeliveryJob.status)))
    assert statuses == {"done"}


@pytest.mark.parametrize("method, path, looked_up", [
    ("POST", "/api/v4/calls", "/notes"),  # a batch of calls
    ("PATCH", "/api/v4/contacts", "/api/v4/contacts"),  # a batch of tag adds
])
def test_sigkill_mid_batch_loses_nothing_and_duplicates_nothing(db_url, tmp_path, method, path, looked_up):
    with connector_with_fake_amo(db_url) as h:
        enqueue_scored_calls(h)
        first = start_worker(worker_env(h, db_url), tmp_path)
        killed = []

        def kill_after_the_second_batch(m, p):
            if m == method and p == path and not killed:
                sent = sum(1 for _, m2, p2, _ in h.fake.requests if m2 == method and p2 == path)
                if sent == 1:  # this is the second batch: applied, but its answer never reaches the worker
                    os.kill(first.pid, signal.SIGKILL)
                    killed.append(time.monotonic())

        h.fake.after_effect = kill_after_the_second_batch
        try:
            first.wait(timeout=60)
            assert killed and first.returncode == -signal.SIGKILL
            h.fake.after_effect = None
            second = start_worker(worker_env(h, db_url), tmp_path)
            try:
                wait_until_delivered(h)
            finally:
                second.terminate()
                second.wait(timeout=10)
                second.stderr.close()
        finally:
            first.stderr.close()
        assert_each_effect_once(h)  # every call logged once, every tag added once
        # The batch in doubt was looked up in the CRM instead of being sent again.
        assert any(m == "GET" and p.endswith(looked_up) for _, m, p, _ in h.fake.requests)


def test_two_workers_share_the_work_and_the_rate_limit(db_url, tmp_path):
    if not db_url.startswith("postgresql"):
        pytest.skip("many workers is the PostgreSQL path")
    with connector_with_fake_amo(db_url) as h:
        enqueue_scored_calls(h, CALLS * 5)
        workers = [start_worker(worker_env(h, db_url), tmp_path) for _ in range(2)]
        try:
            wait_until_delivered(h)
        finally:
            for w in workers:
                w.terminate()
                w.wait(timeout=10)
                w.stderr.close()
        assert_each_effect_once(h, CALLS * 5)
        assert h.fake.max_requests_in_any_second() <= 7
        assert not any(status == 429 for *_, status in h.fake.requests)
