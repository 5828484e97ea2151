"""Backlog benchmark: 100,000 scored calls waiting in the inbox, drained by one `connector worker`
process: applied to calls, then logged and tagged in a fake amoCRM that allows 10,000 requests per
second (so the worker's own pace is measured, not amoCRM's 7/s). Prints the time and rate of each
stage and the worker's peak RSS (target < 200 MB).

    .venv/bin/python bench/backlog.py [--calls 100000] [--database-url postgresql+psycopg://.../bench]

A PostgreSQL database given is wiped.
"""
from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, select  # noqa: E402

from connector.core.db import Database, upgrade  # noqa: E402
from connector.inbound.ingest import receive_many  # noqa: E402
from connector.core.models import DeliveryJob, InboundEvent  # noqa: E402
from connector.inbound.mango import callbacks as mango  # noqa: E402
from tests.conftest import dtmf, summary  # noqa: E402
from tests.fakes.amocrm import FakeAmo, create_fake_app  # noqa: E402
from tests.fakes.server import serving  # noqa: E402

logging.getLogger("werkzeug").setLevel(logging.WARNING)
KEY, SALT = "bench-key", "bench-salt"


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def count(db: Database, query) -> int:
    with db.transaction() as s:
        return s.scalar(query)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="backlog-bench-")
    url = args.database_url or f"sqlite:///{tmp}/connector.db"
    if url.startswith("postgresql"):
        from bench.common import wipe_postgres

        wipe_postgres(url)
    upgrade(url)
    db = Database(url)
    fake = FakeAmo(rate_limit=10_000, long_lived_token="bench-token")
    started = time.monotonic()
    for start in range(0, args.calls, 500):
        messages = []
        for i in range(start, min(start + 500, args.calls)):
            phone = f"7944{i:07d}"
            fake.add_contact(phone)
            for kind, payload in (("events/dtmf", dtmf(f"q{i}", str(1 + i % 10))),
                                  ("events/summary", summary(f"q{i}", customer=phone))):
                messages.append(("mango", mango.parse(kind, mango.signed_form(KEY, SALT, payload)["json"])))
        db.write_statement(lambda conn: receive_many(conn, messages))
    print(f"seeded {args.calls:,} calls ({2 * args.calls:,} events) in the inbox in {time.monotonic() - started:.0f} s")

    with serving(create_fake_app(fake)) as amo_url:
        env = {**os.environ, "DATABASE_URL": url, "DATA_DIR": tmp, "SECRET_KEY": "bench", "CRM": "amocrm",
               "AMOCRM_BASE_URL": amo_url, "AMOCRM_LONG_LIVED_TOKEN": "bench-token", "AMOCRM_RATE_LIMIT": "1000",
               "SURVEY_WAIT_SECONDS": "0", "MANGO_SURVEY_LOCATION": "ivr.5", "WORKER_POLL_SECONDS": "0.1"}
        started = time.monotonic()
        worker = subprocess.Popen([sys.executable, "-c", "import app; app.main()", "worker"], cwd=ROOT, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        peak, applied_at = 0.0, None
        try:
            while True:
                time.sleep(1)
                peak = max(peak, peak_rss_mb(worker.pid))
                if applied_at is None and not count(db, select(func.count()).select_from(InboundEvent)
                                                    .where(InboundEvent.applied_at.is_(None))):
                    applied_at = time.monotonic() - started
                if applied_at is not None and not count(db, select(func.count()).select_from(DeliveryJob)
                                                        .where(DeliveryJob.status != "done")):
                    break
            drained = time.monotonic() - started
            peak = max(peak, peak_rss_mb(worker.pid))
        finally:
            worker.terminate()
            worker.wait(timeout=20)
    db.dispose()
    logged = len(fake.calls)
    print(f"inbox applied in {applied_at:.0f} s: {2 * args.calls / applied_at:,.0f} events/s")
    print(f"all delivered in {drained:.0f} s: {args.calls / drained:,.0f} calls/s overall "
          f"({logged:,} calls logged, {sum(fake.tag_adds.values()):,} tag adds, each once: "
          f"{set(fake.tag_adds.values()) == {1} and logged == args.calls})")
    print(f"worker peak RSS {peak:.0f} MB (target < 200 MB)")


if __name__ == "__main__":
    main()
