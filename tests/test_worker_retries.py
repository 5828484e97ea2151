"""The worker's retry path with `responses`: 500, 500, then 200 delivers the call once."""
from datetime import datetime, timezone

import responses
from responses.registries import OrderedRegistry
from sqlalchemy import select, update

from app import create_app
from connector.core.models import DeliveryJob
from connector.delivery.retry import backoff_seconds
from connector.wiring import build_worker
from tests.conftest import MangoPoster, dtmf, make_config, summary

BASE = "https://example.amocrm.ru"


@responses.activate(registry=OrderedRegistry, assert_all_requests_are_fired=True)
def test_500_500_200_is_delivered_on_the_third_try(db_url):
    config = make_config(db_url, CRM="amocrm", AMOCRM_BASE_URL=BASE, AMOCRM_LONG_LIVED_TOKEN="t",
                         SURVEY_WAIT_SECONDS=0, AMOCRM_RATE_LIMIT=1000)
    app = create_app(config)
    db = app.extensions["connector"].db
    post = MangoPoster(app.test_client())
    post("events/summary", summary())
    post("events/dtmf", dtmf(digits="10"))
    calls_url = f"{BASE}/api/v4/calls"
    responses.post(calls_url, status=500)
    responses.get(f"{BASE}/api/v4/leads/notes", status=204)  # look-ups after a maybe-applied 500
    responses.get(f"{BASE}/api/v4/contacts/notes", status=204)
    responses.get(f"{BASE}/api/v4/companies/notes", status=204)
    responses.get(f"{BASE}/api/v4/customers/notes", status=204)
    responses.post(calls_url, status=500)
    for path in ("leads", "contacts", "companies", "customers"):
        responses.get(f"{BASE}/api/v4/{path}/notes", status=204)
    responses.post(calls_url, json={"_embedded": {"calls": [{"id": 1, "entity_id": 5, "entity_type": "contacts",
                                                             "request_id": "0"}]}})
    worker = build_worker(config, db)
    for attempt in range(3):
        with db.transaction() as s:
            s.execute(update(DeliveryJob).values(not_before=datetime.now(timezone.utc)))
        assert worker.run_once() == 1
    with db.transaction() as s:
        job = s.scalars(select(DeliveryJob)).one()
        assert (job.status, job.attempts, job.result["entity_id"]) == ("done", 3, 5)
    db.dispose()


def test_backoff_grows_with_jitter_and_is_capped():
    first, fifth, late = backoff_seconds(1), backoff_seconds(5), backoff_seconds(30)
    assert 30 <= first <= 60 and 480 <= fifth <= 510 and 3600 <= late <= 3630
    total = sum(backoff_seconds(n) for n in range(1, 31))
    assert 20 * 3600 < total < 30 * 3600  # about a day of retries before dead
