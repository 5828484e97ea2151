"""Shared set-up for delivery tests: a fake amoCRM over HTTP and a connector wired to it."""
from __future__ import annotations

from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

from sqlalchemy import select, update

from app import create_app
from connector.core.models import DeliveryJob
from connector.wiring import build_worker
from tests.conftest import MangoPoster, make_config
from tests.fakes.amocrm import FakeAmo, create_fake_app
from tests.fakes.server import serving

TOKEN = "long-lived-test-token"


@contextmanager
def connector_with_fake_amo(db_url: str, fake: FakeAmo | None = None, **overrides):
    fake = fake or FakeAmo(long_lived_token=TOKEN)
    with serving(create_fake_app(fake)) as amo_url:
        settings = {"CRM": "amocrm", "AMOCRM_BASE_URL": amo_url, "SURVEY_WAIT_SECONDS": 0,
                    "AMOCRM_USER_MAP": "101:5551", **overrides}
        if "AMOCRM_CLIENT_ID" not in overrides:
            settings.setdefault("AMOCRM_LONG_LIVED_TOKEN", TOKEN)
        config = make_config(db_url, **settings)
        app = create_app(config)
        services = app.extensions["connector"]
        worker = build_worker(config, services.db)
        try:
            yield Harness(app, services.db, worker, fake, amo_url)
        finally:
            services.db.dispose()


class Harness:
    def __init__(self, app, db, worker, fake, amo_url):
        self.app, self.db, self.worker, self.fake, self.amo_url = app, db, worker, fake, amo_url
        self.client = app.test_client()
        self.post = MangoPoster(self.client)

    def drain(self, max_rounds: int = 50, *, make_due: bool = False) -> None:
        """Run the worker until nothing is due; `make_due` skips retry waits, as time passing would."""
        for _ in range(max_rounds):
            if make_due:
                self.make_all_due()
            if not self.worker.run_once():
                return
        raise AssertionError("worker did not become idle")

    def make_all_due(self) -> None:
        with self.db.transaction() as s:
            s.execute(update(DeliveryJob).where(DeliveryJob.status == "pending")
                      .values(not_before=datetime.now(timezone.utc) - timedelta(seconds=1)))

    def advance(self, seconds: float) -> None:
        """Time passes for the outbox: every wait and every failure started `seconds` earlier."""
        shift = timedelta(seconds=seconds)
        with self.db.transaction() as s:
            for job in s.scalars(select(DeliveryJob).where(DeliveryJob.status == "pending")):
                job.not_before -= shift
                job.first_failed_at = job.first_failed_at and job.first_failed_at - shift

    def call(self, call_id: str) -> dict:
        from tests.conftest import ADMIN_TOKEN

        response = self.client.get(f"/api/v1/calls/{call_id}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert response.status_code == 200, response.json
        return response.json

    def status(self) -> dict:
        """`/healthz` (what anyone sees) and the token-only details of `GET /api/v1/status`."""
        from tests.conftest import ADMIN_TOKEN

        health = self.client.get("/healthz").json
        details = self.client.get("/api/v1/status", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).json
        return {**health, "crm": details["details"]["crm"]}

    def jobs(self) -> list[DeliveryJob]:
        with self.db.transaction() as s:
            return list(s.scalars(select(DeliveryJob).order_by(DeliveryJob.id)))


def until_idle(worker) -> int:
    """Run a delivery worker until it claims nothing; how many jobs it took."""
    done = 0
    while (n := worker.run_once()):
        done += n
    return done
