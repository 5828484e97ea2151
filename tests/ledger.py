"""What the fault cases count: every scored call must reach the fake amoCRM exactly once, as one
call note, one tag add when its score is below the threshold, and its score text; nothing lost,
nothing doubled. Each case prints its figures on the terminal, whatever pytest captures."""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import func, select

from connector.core.models import DeliveryJob, InboundEvent
from tests.conftest import dtmf, summary

CALLS = 120
THRESHOLD = 9  # the default QA_MAX_THRESHOLD: scores 1..8 are tagged


def score_of(i: int) -> int:
    return 1 + i % 10


@dataclass
class ScoredCalls:
    """`count` calls, each with its own caller known to the CRM and a survey digit."""

    count: int = CALLS
    prefix: str = "f"
    entry_ids: list = field(init=False)

    def __post_init__(self):
        self.entry_ids = [f"{self.prefix}{i}" for i in range(self.count)]

    def phone(self, i: int) -> str:
        return f"7933{i:07d}"

    def callbacks(self, i: int) -> list[tuple[str, dict]]:
        entry_id = self.entry_ids[i]
        return [("events/summary", summary(entry_id, customer=self.phone(i))),
                ("events/dtmf", dtmf(entry_id, str(score_of(i))))]

    def known_to(self, fake) -> "ScoredCalls":
        for i in range(self.count):
            fake.add_contact(self.phone(i))
        return self

    def post_all(self, post, *, at_once: bool = False) -> None:
        """Through a MangoPoster (in process): every callback must be acknowledged. Each is applied as it
        comes, or with `at_once` all of them are acknowledged first and the inbox then applies the backlog
        in batches, as the running inbox does (the same calls and jobs, in far fewer transactions)."""
        for i in range(self.count):
            for kind, payload in self.callbacks(i):
                if at_once:
                    assert post.client.post(f"/mango/{kind}", data=post.form(payload)).status_code == 200
                else:
                    assert post(kind, payload).status_code == 200
        if at_once:
            post.apply()

    def expected_tags(self) -> int:
        return sum(1 for i in range(self.count) if score_of(i) < THRESHOLD)


def open_jobs(db) -> int:
    """Work not done yet: delivery jobs open, and stored PBX events not applied (their jobs are still to come:
    after a database outage the inbox backs off before it applies them)."""
    with db.transaction() as s:
        jobs = s.scalar(select(func.count()).select_from(DeliveryJob)
                        .where(DeliveryJob.status.in_(["pending", "waiting"])))
        events = s.scalar(select(func.count()).select_from(InboundEvent).where(InboundEvent.applied_at.is_(None)))
    return jobs + events


def wait_until_settled(db, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while (left := open_jobs(db)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, f"{left} delivery jobs or PBX events still open after {timeout} s"


def tally(fake, calls: ScoredCalls, db) -> dict:
    """Lost and doubled effects in the CRM, and the job states in the outbox."""
    logged = Counter(c["uniq"] for c in fake.calls)
    tagged_entities = {(entity_type, entity_id) for entity_type, entity_id, _tag in fake.tag_adds}
    with db.transaction() as s:
        statuses = Counter(dict(s.execute(select(DeliveryJob.status, func.count()).group_by(DeliveryJob.status)).all()))
        max_attempts = s.scalar(select(func.max(DeliveryJob.attempts))) or 0
    statuses_by_code = Counter(status for *_, status in fake.requests)
    return {
        "calls": calls.count,
        "lost": sum(1 for e in calls.entry_ids if not logged[e])
        + max(0, calls.expected_tags() - len(tagged_entities)),
        "doubled": sum(n - 1 for n in logged.values() if n > 1) + sum(n - 1 for n in fake.tag_adds.values() if n > 1)
        + max(0, len(tagged_entities) - calls.expected_tags()),
        "crm_requests": len(fake.requests),
        "crm_answers": dict(sorted(statuses_by_code.items())),
        "jobs": dict(sorted(statuses.items())),
        "max_attempts": max_attempts,
    }


def report(case: str, figures: dict, capsys) -> None:
    with capsys.disabled():
        print(f"\nfault {case}: " + " ".join(f"{k}={v}" for k, v in figures.items()), flush=True)


def assert_exactly_once(figures: dict) -> None:
    assert figures["lost"] == 0 and figures["doubled"] == 0, figures
    assert set(figures["jobs"]) == {"done"}, figures["jobs"]
