"""Every call to amoCRM, Bitrix24 and a webhook receiver at once, while one of them is down for a while:
no effect lost or doubled in any, and the others never wait for the one that is down."""
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import update

from app import create_app
from connector.core.models import DeliveryJob
from connector.wiring import build_workers
from tests.conftest import MangoPoster, dtmf, make_config, summary
from tests.delivery_helpers import TOKEN
from tests.fakes.amocrm import FakeAmo, create_fake_app
from tests.fakes.bitrix24 import FakeBitrix24, create_fake_bitrix24
from tests.fakes.receiver import FakeReceiver, create_receiver
from tests.fakes.server import serving
from tests.test_webhook_target import SECRET

CALLS = 20


def phone(i: int) -> str:
    return f"7955{i:07d}"


@pytest.mark.parametrize("down", ["amocrm", "bitrix24", "webhook"])
def test_three_targets_one_down_for_a_while(db_url, down):
    # No target's rate limit is tested here: Bitrix24's bucket drains at 50/s, not 2/s, and the connector goes
    # at that drain rate (below), as BITRIX24_RATE_LIMIT sets it (a setting that stops at the real 5/s).
    amo, b24, receiver = FakeAmo(long_lived_token=TOKEN, rate_limit=1000), FakeBitrix24(drain_per_second=50), \
        FakeReceiver(SECRET)
    for i in range(CALLS):
        amo.add_contact(phone(i))
        b24.add_contact(phone(i))
    b24.add_past_call(5551)  # the operator's earlier calls show the connector may read their statistics
    with serving(create_fake_app(amo)) as amo_url, serving(create_fake_bitrix24(b24)) as b24_url, \
            serving(create_receiver(receiver)) as hook_url:
        config = make_config(
            db_url, CRM="amocrm,bitrix24,webhook", SURVEY_WAIT_SECONDS=0,
            AMOCRM_BASE_URL=amo_url, AMOCRM_LONG_LIVED_TOKEN=TOKEN, AMOCRM_USER_MAP="101:5551", AMOCRM_RATE_LIMIT=50,
            **b24.connector_settings(b24_url), WEBHOOK_TARGET_URL=f"{hook_url}/hook", WEBHOOK_TARGET_SECRET=SECRET)
        app = create_app(config)
        db = app.extensions["connector"].db
        try:
            workers = {w.crm: w for w in build_workers(config, db)}
            workers["bitrix24"].target.limiter.interval = 1.0 / b24.drain_per_second
            post = MangoPoster(app.test_client())
            outage = {"amocrm": lambda: amo.inject(503, times=10_000),
                      "bitrix24": lambda: setattr(b24, "failing", True),
                      "webhook": lambda: receiver.answers.extend([503] * 10_000)}
            outage[down]()
            for i in range(CALLS):  # acknowledged, then applied as one backlog, as the running inbox does
                for kind, payload in [("events/summary", summary(f"t{i}", extension="101", customer=phone(i))),
                                      ("events/dtmf", dtmf(f"t{i}", str(1 + i % 10)))]:
                    assert post.client.post(f"/mango/{kind}", data=post.form(payload)).status_code == 200
            post.apply()

            def run_all(rounds=40, make_due=False):
                for _ in range(rounds):
                    if make_due:
                        with db.transaction() as s:
                            s.execute(update(DeliveryJob).where(DeliveryJob.status == "pending")
                                      .values(not_before=datetime.now(timezone.utc) - timedelta(seconds=1)))
                    if not sum(w.run_once() for w in workers.values()):
                        return

            run_all()
            # The two that are up are complete while the third is down.
            up = {"amocrm": len({c["uniq"] for c in amo.calls}), "bitrix24": len(b24.finished()),
                  "webhook": len(receiver.applied)}
            assert up[down] == 0 and all(n == CALLS for name, n in up.items() if name != down), up
            # Back up: everything arrives, once.
            amo.injected.clear()
            b24.failing = False
            receiver.answers.clear()
            run_all(make_due=True)
            assert sorted(Counter(c["uniq"] for c in amo.calls).values()) == [1] * CALLS
            assert len(b24.finished()) == len(b24.calls) == CALLS
            assert len(receiver.applied) == CALLS
            assert len({m for m, _ in receiver.received}) == CALLS  # resends carried the same ids
            assert len(b24.comments) == CALLS
            tagged = [c for c in amo.contacts.values() if c["tags"]]
            assert len(tagged) == sum(1 for i in range(CALLS) if 1 + i % 10 < 9)
        finally:
            db.dispose()
