"""The outbound webhook target (`CRM=...,webhook`): every score in force goes to WEBHOOK_TARGET_URL as
`{"type": "call.scored", "timestamp": ..., "data": <the call JSON>}`, signed by Standard Webhooks
(https://www.standardwebhooks.com/) with WEBHOOK_TARGET_SECRET.

`webhook-id` is the job's key, one per score (`<call_id>:scored:<score id>`), so a retry carries the same
id and a receiver that deduplicates by it (as the specification asks) applies each score once. A 2xx is
done; 408, 429 and 5xx (and no answer) retry on the outbox schedule, after `Retry-After` when given; any
other 4xx is dead with the receiver's answer, but 410 Gone, which pauses the target (the specification
asks the sender to disable the endpoint) until an admin resumes it. The receiver is never looked up before a resend: the
stable id makes a resend harmless.

Every score goes out, whatever the CRMs write: `data.decision.written_to_crm` says, for each CRM target
configured beside the webhook, whether the policy has it write the customer score (a score at or above
the threshold may be ignored there).
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

import requests
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload
from standardwebhooks.webhooks import Webhook

from connector import outbox
from connector.calls import call_json
from connector.crm import AccountBlocked, CrmError, ItemResult, TransientError
from connector.models import Call, DeliveryJob, JobStatus
from connector.outbox import JobKind, Outcome, Work
from connector.threshold import HighScores, Policy, writes_score

NAME = "webhook"
EVENT = "call.scored"
RETRIED = {408, 429}  # and every 5xx
GONE = 410  # Standard Webhooks, "Delivery success and failure": the sender should disable the endpoint


class WebhookPlanning:
    """One job per score in force (the customer's and the supervisor's), once the summary is in."""

    name = NAME

    def plan(self, session: Session, d: outbox.Delivery) -> None:
        call = d.call
        if call.summary_received_at is None or call.direction == "internal":
            return
        customer = d.score if d.score is not None and d.score.record else None  # record: the feature was on
        for score in (customer, d.supervisor_score):
            if score is not None:
                outbox.add_job(session, d, NAME, JobKind.SCORED, str(score.id), score=score)


def written_to_crm(call: Call, crm_defaults: dict[str, HighScores]) -> dict[str, bool]:
    """For each CRM target: does the policy have it write the call's customer score?"""
    return {name: bool(call.decision_record) and call.customer_score is not None
            and writes_score(call.decision_high_scores, default) for name, default in crm_defaults.items()}


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, (parsedate_to_datetime(value) - datetime.now(timezone.utc)).total_seconds())
        except (TypeError, ValueError):
            return None


class WebhookTarget:
    name = NAME
    max_batch = 20  # one POST each: a batch is only how many are claimed at once
    recording_kinds = ()  # the receiver gets links, never files

    def batch_size(self, kind: str) -> int:
        return self.max_batch

    def __init__(self, url: str, secret: str, *, session: requests.Session | None = None, timeout: float = 10.0,
                 crm_defaults: dict[str, HighScores] | None = None):
        self.url, self.timeout = url, timeout
        self.crm_defaults = crm_defaults or {}  # each CRM target beside it -> its default for high scores
        self.signer = Webhook(secret)
        self.http = session or requests.Session()

    def probe(self) -> None:
        """The webhook pauses only when its receiver answered 410 Gone ("disable this endpoint"): a
        probe never undoes that; an admin resumes it once the receiver wants messages again."""
        raise CrmError("the receiver answered 410 Gone: resume the webhook once it wants messages again")

    def prepare(self, session: Session, claimed: list[tuple[DeliveryJob, outbox.Delivery, Work]], policy: Policy,
                user_map: dict) -> None:
        # The call JSON reads scores and records: load them for the whole batch in two queries.
        list(session.scalars(select(Call).where(Call.id.in_([d.call.id for _j, d, _w in claimed]))
                             .options(selectinload(Call.scores), selectinload(Call.crm_records))))
        for job, d, w in claimed:
            w.extra["message_id"] = job.key
            data = call_json(d.call)
            data["decision"]["written_to_crm"] = written_to_crm(d.call, self.crm_defaults)
            w.item = {"type": EVENT, "data": data}

    def deliver(self, kind: str, work: list[Work]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for w in work:
            outcome = self._post(w)
            if isinstance(outcome, AccountBlocked):  # the messages before it are delivered; the rest wait
                raise AccountBlocked(outcome.message, settled=outcomes, maybe_applied=False,
                                     status=outcome.status, body=outcome.body)
            outcomes.append(outcome)
        return outcomes

    def _post(self, w: Work) -> Outcome | AccountBlocked:
        now = datetime.now(timezone.utc)
        body = json.dumps({**w.item, "timestamp": now.isoformat()}, ensure_ascii=False)
        message_id = w.extra["message_id"]
        headers = {"Content-Type": "application/json", "webhook-id": message_id,
                   "webhook-timestamp": str(int(now.timestamp())),
                   "webhook-signature": self.signer.sign(message_id, now, body)}
        try:
            response = self.http.post(self.url, data=body.encode(), headers=headers, timeout=self.timeout,
                                      allow_redirects=False)
        except requests.RequestException as exc:
            return TransientError(f"webhook: no answer ({type(exc).__name__})")
        if 200 <= response.status_code < 300:
            return ItemResult(True)
        detail = f"webhook: {response.status_code} {response.text.strip()[:200]}".strip()
        if response.status_code == GONE:
            return AccountBlocked(f"{detail}: the receiver asks to stop sending (410 Gone); resume the webhook "
                                  "target once it wants messages again", status=GONE, body=response.text[:500])
        if response.status_code in RETRIED or response.status_code >= 500:
            return TransientError(detail, retry_after=_retry_after(response), status=response.status_code,
                                  body=response.text[:500])
        return ItemResult(False, error=detail)

    def on_done(self, session: Session, job: DeliveryJob, w: Work, result: ItemResult, now: datetime,
                d: outbox.Delivery) -> None:
        d.record.logged_at = d.record.logged_at or now  # the first score the receiver has

    def on_unmatched(self, session: Session, job: DeliveryJob, result: ItemResult, now: datetime,
                     d: outbox.Delivery) -> None:
        job.status, job.last_error = JobStatus.DEAD, result.error  # a webhook has no entities to match
