"""A target defined here, in tests/ only, delivers through the generic queue: a new target is its own package
plus one line in the registry, and nothing else in the connector changes.

The "notebook" target writes each score in force into a list. It declares its name, its job kind, its
planning and its delivery as any target does (`TargetKit`); the test lists it in the registry as a
configuration would, and a PBX call with a survey score reaches it through ingest, the outbox and a worker.
"""
from __future__ import annotations

import enum
from datetime import datetime

import pytest
from sqlalchemy.orm import Session

from app import create_app
from connector import registry
from connector.core.models import DeliveryJob, JobStatus
from connector.core.policy import HighScores, Policy
from connector.delivery import outbox
from connector.delivery.contract import Dead, Done, Unmatched
from connector.delivery.kit import TargetKit
from connector.delivery.outbox import Delivery, Outcome, Work
from connector.wiring import build_workers
from tests.conftest import ADMIN_TOKEN, MangoPoster, dtmf, make_config, summary

NAME = "notebook"


class NotebookKind(enum.StrEnum):
    NOTED = "noted"  # one line per score in force


class NotebookPlanning:
    name = NAME
    high_scores = HighScores.RECORD

    def plan(self, session: Session, d: Delivery) -> None:
        if d.call.summary_received_at is not None and d.score is not None:
            outbox.add_job(session, d, NAME, NotebookKind.NOTED, str(d.score.id), score=d.score)


class Notebook:
    """Keeps what it was sent; refuses a score of 1, as a target may refuse an item for good."""

    name = NAME
    recording_kinds = ()

    def __init__(self, lines: list[str]):
        self.lines = lines

    def batch_size(self, kind: str) -> int:
        return 10

    def probe(self) -> None:
        return None

    def prepare(self, session: Session, claimed: list[tuple[DeliveryJob, Delivery, Work]], policy: Policy,
                user_map: dict) -> None:
        for _job, d, w in claimed:
            w.item = f"{d.call.entry_id}: {d.score.value}"

    def deliver(self, kind: str, work: list[Work]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for w in work:
            if w.item.endswith(": 1"):
                outcomes.append(Dead("the notebook takes no score of 1"))
            else:
                self.lines.append(w.item)
                outcomes.append(Done())
        return outcomes

    def on_done(self, session: Session, job: DeliveryJob, w: Work, result: Done, now: datetime, d: Delivery) -> None:
        d.record.logged_at = d.record.logged_at or now

    def on_unmatched(self, session: Session, job: DeliveryJob, result: Unmatched, now: datetime,
                     d: Delivery) -> None:
        job.status, job.last_error = JobStatus.DEAD, result.reason


@pytest.fixture
def notebook(monkeypatch):
    lines: list[str] = []
    kit = TargetKit(NAME, tuple(NotebookKind), planning=lambda config: NotebookPlanning(),
                    build=lambda config, db, plannings, **options: Notebook(lines))
    monkeypatch.setitem(registry.KITS, NAME, kit)  # as the registry's list would name it
    return lines


def test_a_target_defined_in_the_tests_gets_each_score_once(db_url, notebook):
    config = make_config(db_url, CRM=NAME, SURVEY_WAIT_SECONDS=0)
    app = create_app(config)
    db = app.extensions["connector"].db
    try:
        [worker] = build_workers(config, db)
        client, post = app.test_client(), MangoPoster(app.test_client())
        for entry_id, digits in (("call-1", "3"), ("call-2", "1")):
            assert post("events/dtmf", dtmf(entry_id, digits)).status_code == 200
            assert post("events/summary", summary(entry_id, extension="101")).status_code == 200
        while worker.run_once():
            pass
        assert notebook == ["call-1: 3"]
        auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        delivered = client.get("/api/v1/calls/call-1", headers=auth).json["crm"]["targets"][NAME]
        refused = client.get("/api/v1/calls/call-2", headers=auth).json["crm"]["targets"][NAME]
        assert (delivered["status"], delivered["attempts"]) == ("delivered", 1)
        assert (refused["status"], refused["last_error"]) == ("dead", "the notebook takes no score of 1")
        while worker.run_once():  # nothing is due again: each score is written once
            pass
        assert notebook == ["call-1: 3"]
    finally:
        db.dispose()


def test_a_target_the_registry_does_not_list_stops_start_up(db_url):
    from connector.core.config import ConfigError

    with pytest.raises(ConfigError, match="CRM: expected none or a comma list of amocrm, bitrix24, webhook"):
        make_config(db_url, CRM=NAME)
