"""Delivery throughput against the fake amoCRM at its real limit of 7 requests per second.

Every call has a low score, so each needs two requests (log the call, tag the entity).
With batches of 50 the bound is 7 x 50 / 2 = 175 calls per second; the baseline sends
one call per request (bound 3.5 per second). Run:

    .venv/bin/python bench/delivery.py [--calls 1750] [--baseline-calls 35] [--workers 1]
"""
from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import func, select  # noqa: E402

from app import create_app  # noqa: E402
from connector.wiring import build_worker  # noqa: E402
from connector.db import downgrade, upgrade  # noqa: E402
from connector.models import DeliveryJob  # noqa: E402
from tests.conftest import MangoPoster, dtmf, make_config, summary  # noqa: E402
from tests.fakes.amocrm import FakeAmo, create_fake_app  # noqa: E402
from tests.fakes.server import serving  # noqa: E402

RATE = 7
logging.getLogger("werkzeug").setLevel(logging.WARNING)


def open_jobs(db) -> int:
    with db.transaction() as s:
        return s.scalar(select(func.count()).select_from(DeliveryJob).where(DeliveryJob.status != "done"))


def run(calls: int, batch: int, workers: int, database_url: str | None) -> tuple[float, FakeAmo]:
    fake = FakeAmo(rate_limit=RATE, long_lived_token="bench-token")
    with tempfile.TemporaryDirectory() as tmp, serving(create_fake_app(fake), ) as amo_url:
        url = database_url or f"sqlite:///{tmp}/bench.db"
        if database_url:
            downgrade(url, "base")  # each run starts from an empty schema: the database is wiped
        upgrade(url)
        config = make_config(url, CRM="amocrm", AMOCRM_BASE_URL=amo_url, AMOCRM_LONG_LIVED_TOKEN="bench-token",
                             SURVEY_WAIT_SECONDS=0, AMOCRM_RATE_LIMIT=RATE, AMOCRM_USER_MAP="101:5551")
        app = create_app(config)
        db = app.extensions["connector"].db
        post = MangoPoster(app.test_client())
        for i in range(calls):
            phone = f"7933{i:07d}"
            fake.add_contact(phone)
            post("events/summary", summary(f"b{i}", customer=phone))
            post("events/dtmf", dtmf(f"b{i}", str(1 + i % 8)))
        pool = [build_worker(config, db) for _ in range(workers)]
        for worker in pool:
            worker.adapter.max_batch = batch
        stop = threading.Event()
        threads = [threading.Thread(target=w.run, args=(stop,), daemon=True) for w in pool]
        started = time.monotonic()
        for t in threads:
            t.start()
        while open_jobs(db):
            time.sleep(0.05)
        elapsed = time.monotonic() - started
        stop.set()
        for t in threads:
            t.join(timeout=10)
        assert len(fake.calls) == calls, f"{len(fake.calls)} calls logged, expected {calls}"
        assert set(fake.tag_adds.values()) == {1}, "a tag was added twice"
        db.dispose()
        return calls / elapsed, fake


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=1750)
    parser.add_argument("--baseline-calls", type=int, default=35)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--database-url", default=None,
                        help="default: a temporary SQLite file; a given database is WIPED")
    args = parser.parse_args()

    bound = RATE * 50 / 2
    batched, fake = run(args.calls, 50, args.workers, args.database_url)
    baseline, _ = run(args.baseline_calls, 1, args.workers, args.database_url)
    requests_sent = len([r for r in fake.requests if r[2].startswith("/api/")])
    print(f"scored calls delivered per second, fake amoCRM at {RATE} requests/s, {args.workers} worker(s):")
    print(f"  batched (50 per request): {batched:7.1f} calls/s  ({args.calls} calls, {requests_sent} requests, "
          f"max {fake.max_requests_in_any_second()} requests in any second, "
          f"{sum(1 for r in fake.requests if r[3] == 429)} x 429)")
    print(f"  bound 7 x 50 / 2:         {bound:7.1f} calls/s  -> {100 * batched / bound:.1f} % of the bound "
          f"(target >= 90 %)")
    print(f"  baseline (1 per request): {baseline:7.1f} calls/s  ({args.baseline_calls} calls; bound 3.5)")


if __name__ == "__main__":
    main()
