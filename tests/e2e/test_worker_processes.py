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
        calls.post_all(h.post)
        env = process_env(DATABASE_URL=db_url, CRM="amocrm", AMOCRM_BASE_URL=h.amo_url, AMOCRM_LONG_LIVED_TOKEN=TOKEN,
                          SECRET_KEY="test-secret-key", SURVEY_WAIT_SECONDS=0, WORKER_POLL_SECONDS=0.1)
        workers_until_settled(env, tmp_path, h.db, count=2)
        assert_exactly_once(tally(h.fake, calls, h.db))
        assert h.fake.max_requests_in_any_second() <= 7
        assert not any(status == 429 for *_, status in h.fake.requests)
