"""The CRM misbehaving while 120 scored calls are delivered: an outage, a 429 storm, a 401 while two
worker processes share a rotating refresh token, a 403 block and its resume. Time passing between
retries is simulated by moving the jobs' times back (the schedule itself is tested in test_worker_retries)."""
import time

import pytest
from click.testing import CliRunner

from commands.cli import cli
from connector.core.accounts import pause_state
from tests.delivery_helpers import TOKEN, connector_with_fake_amo
from tests.fakes.amocrm import FakeAmo
from tests.ledger import ScoredCalls, assert_exactly_once, open_jobs, report, tally
from tests.processes import process_env, workers_until_settled

pytestmark = pytest.mark.e2e


# Not a case about the rate limit: the connector and the fake both go ten times amoCRM's 7/s (the connector
# still at the fake's limit with its usual headroom), so no request waits 0.15 s for its slot.
FAST = {"AMOCRM_RATE_LIMIT": 70}


def fast_fake(**kwargs) -> FakeAmo:
    return FakeAmo(rate_limit=FAST["AMOCRM_RATE_LIMIT"], **kwargs)


def rounds(h, count: int) -> None:
    """The worker takes `count` batches, an hour apart: every retry's wait (capped at 1 h) has passed,
    and the jobs come in the order they fell due."""
    for _ in range(count):
        h.advance(3600)
        h.worker.run_once()


def test_a_5xx_outage_longer_than_the_first_retries(db_url, capsys):
    with connector_with_fake_amo(db_url, fast_fake(long_lived_token=TOKEN), **FAST) as h:
        calls = ScoredCalls().known_to(h.fake)
        calls.post_all(h.post, at_once=True)
        h.worker.run_once()  # the first batch of calls goes through
        # The outage starts with an answer lost after the effect was applied (a proxy timing out),
        # then every request fails for longer than the first three retries.
        h.fake.inject("lost", path="/api/v4/calls")
        h.fake.inject(503, times=10_000)
        rounds(h, 8)
        during = tally(h.fake, calls, h.db)
        assert during["max_attempts"] >= 4 and during["jobs"].get("dead", 0) == 0  # still retrying
        assert h.status()["crm"]["failing_since"] is not None
        h.fake.injected.clear()
        h.drain(make_due=True)
        figures = tally(h.fake, calls, h.db)
        report("crm-5xx-outage", figures, capsys)
        assert_exactly_once(figures)
        assert figures["crm_answers"][503] >= 7 and figures["crm_answers"][504] == 1


def test_a_429_storm(db_url, capsys, monkeypatch):
    from connector.delivery.targets.amocrm import client

    # Each 429 holds every worker for amoCRM's second (its length is test_delivery_amocrm's case of a 429
    # naming no wait); here a tenth of it, or the storm's rounds would spend their time asleep.
    monkeypatch.setattr(client, "RATE_LIMIT_PAUSE", 0.1)
    with connector_with_fake_amo(db_url, fast_fake(long_lived_token=TOKEN), **FAST) as h:
        calls = ScoredCalls().known_to(h.fake)
        calls.post_all(h.post, at_once=True)
        h.fake.inject(429, times=10_000)  # amoCRM sends no Retry-After: the schedule decides
        rounds(h, 6)
        waiting = [job for job in h.jobs() if job.status == "pending"]
        assert waiting and all(job.attempts >= 2 and job.sent_at is None for job in waiting)  # not in doubt
        h.fake.injected.clear()
        h.drain(make_due=True)
        figures = tally(h.fake, calls, h.db)
        report("crm-429-storm", figures, capsys)
        assert_exactly_once(figures)
        assert figures["crm_answers"][429] >= 6


def test_a_403_block_pauses_every_job_until_resumed(db_url, capsys, monkeypatch):
    with connector_with_fake_amo(db_url, fast_fake(long_lived_token=TOKEN), **FAST) as h:
        calls = ScoredCalls().known_to(h.fake)
        calls.post_all(h.post, at_once=True)
        h.worker.run_once()
        h.fake.blocked = {"title": "Forbidden", "status": 403, "error_code": 110, "detail": "account blocked"}
        rounds(h, 5)
        paused, reason, _ = pause_state(h.db, "amocrm")
        assert paused and "403" in reason
        answered_while_paused = len(h.fake.requests)
        rounds(h, 5)
        assert len(h.fake.requests) == answered_while_paused  # a paused account is not hammered
        assert h.status()["status"] == "degraded" and open_jobs(h.db)
        assert all(job.attempts <= 1 for job in h.jobs())  # the block cost no retries
        h.fake.blocked = False
        for key, value in {"DATABASE_URL": db_url, "CRM": "amocrm", "AMOCRM_BASE_URL": h.amo_url,
                           "AMOCRM_LONG_LIVED_TOKEN": TOKEN, "SECRET_KEY": "test-secret-key"}.items():
            monkeypatch.setenv(key, value)
        resumed = CliRunner().invoke(cli, ["deliveries", "resume"], catch_exceptions=False)
        assert "amocrm resumed" in resumed.output
        h.drain()
        figures = tally(h.fake, calls, h.db)
        report("crm-403-block-and-resume", figures, capsys)
        assert_exactly_once(figures)
        assert figures["crm_answers"][403] == 1


def test_a_401_while_two_workers_share_a_rotating_refresh_token(db_url, tmp_path, capsys):
    fake = fast_fake()
    oauth = {"AMOCRM_CLIENT_ID": fake.client_id, "AMOCRM_CLIENT_SECRET": fake.client_secret,
             "AMOCRM_REDIRECT_URI": fake.redirect_uri, "AMOCRM_AUTH_CODE": fake.new_auth_code()}
    with connector_with_fake_amo(db_url, fake, **oauth, **FAST) as h:  # the code is exchanged here, once
        calls = ScoredCalls(count=240).known_to(fake)
        calls.post_all(h.post, at_once=True)
        env = process_env(**oauth, **FAST, DATABASE_URL=db_url, CRM="amocrm", AMOCRM_BASE_URL=h.amo_url,
                          AMOCRM_USER_MAP="101:5551", SECRET_KEY="test-secret-key", SURVEY_WAIT_SECONDS=0,
                          WORKER_POLL_SECONDS=0.1)
        expired = []

        def expire_after_the_first_batch(method, path):
            if path == "/api/v4/calls" and not expired:
                expired.append(time.monotonic())
                fake.expire_access_tokens()  # both workers now hold a dead access token

        fake.after_effect = expire_after_the_first_batch
        workers_until_settled(env, tmp_path, h.db, count=2)
        figures = {**tally(fake, calls, h.db), "refreshes": fake.refreshes,
                   "refused_refreshes": sum(1 for _, m, p, s in fake.requests if p == "/oauth2/access_token"
                                            and s != 200)}
        report("crm-401-two-workers", figures, capsys)
        assert_exactly_once(figures)
        assert expired and figures["crm_answers"][401] >= 1
        # One refresh for both workers: a second use of the spent refresh token would have been refused
        # and would have paused the account until someone authorised it again.
        assert fake.refreshes == 1 and figures["refused_refreshes"] == 0
