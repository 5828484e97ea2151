"""Two real worker processes at once share the work and amoCRM's rate limit (a worker SIGKILLed
mid-batch is a case of tests/faults)."""
import pytest

from tests.delivery_helpers import TOKEN, connector_with_fake_amo
from tests.ledger import ScoredCalls, assert_exactly_once, tally
from tests.processes import process_env, workers_until_settled

pytestmark = pytest.mark.e2e


def test_two_workers_share_the_work_and_the_rate_limit(db_url, tmp_path):
    if not db_url.startswith("postgresql"):
        pytest.skip("many workers is the PostgreSQL path")
    with connector_with_fake_amo(db_url) as h:
        calls = ScoredCalls(count=600).known_to(h.fake)
        calls.post_all(h.post, at_once=True)
        env = process_env(DATABASE_URL=db_url, CRM="amocrm", AMOCRM_BASE_URL=h.amo_url, AMOCRM_LONG_LIVED_TOKEN=TOKEN,
                          SECRET_KEY="test-secret-key", SURVEY_WAIT_SECONDS=0, WORKER_POLL_SECONDS=0.1)
        workers_until_settled(env, tmp_path, h.db, count=2)
        assert_exactly_once(tally(h.fake, calls, h.db))
        assert h.fake.max_requests_in_any_second() <= 7
        assert not any(status == 429 for *_, status in h.fake.requests)


def test_two_workers_on_bitrix24_and_the_webhook_share_the_work_exactly_once(db_url, tmp_path):
    """The other targets under two worker processes: each call registered and finished once in
    Bitrix24, each score applied once at the receiver, the portal's bucket never overflowing."""
    if not db_url.startswith("postgresql"):
        pytest.skip("many workers is the PostgreSQL path")
    from app import create_app
    from tests.conftest import MangoPoster, make_config
    from tests.fakes.bitrix24 import FakeBitrix24, create_fake_bitrix24
    from tests.fakes.receiver import FakeReceiver, create_receiver
    from tests.fakes.server import serving
    from tests.test_webhook_target import SECRET

    fake, receiver = FakeBitrix24(drain_per_second=5), FakeReceiver(SECRET)
    calls = ScoredCalls(count=200, prefix="w")
    for i in range(calls.count):
        fake.add_contact(calls.phone(i))
    with serving(create_fake_bitrix24(fake)) as url, serving(create_receiver(receiver)) as hook_url:
        settings = dict(CRM="bitrix24,webhook", **fake.connector_settings(url), WEBHOOK_TARGET_URL=f"{hook_url}/hook",
                        WEBHOOK_TARGET_SECRET=SECRET, SECRET_KEY="test-secret-key", SURVEY_WAIT_SECONDS=0)
        app = create_app(make_config(db_url, **settings))
        db = app.extensions["connector"].db
        try:
            calls.post_all(MangoPoster(app.test_client()), at_once=True)
            workers_until_settled(process_env(DATABASE_URL=db_url, WORKER_POLL_SECONDS=0.1, **settings), tmp_path,
                                  db, count=2)
        finally:
            db.dispose()
    finished = [c["params"]["EXTERNAL_CALL_ID"] for c in fake.finished()]
    assert sorted(finished) == sorted(calls.entry_ids) and len(fake.calls) == calls.count
    assert len(fake.comments) == calls.count
    assert not any(status == 503 for *_, status in fake.requests)
    assert len(receiver.applied) == calls.count and len({m for m, _ in receiver.received}) == calls.count
