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

import base64
import enum
import json
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

import requests
from cryptography.fernet import InvalidToken
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload
from standardwebhooks.webhooks import Webhook

from connector.core.accounts import account_row, token_cipher
from connector.core.calls import call_json
from connector.core.db import Database
from connector.core.models import Call, DeliveryJob, JobStatus, SettingsAudit
from connector.core.policy import HighScores, Policy, writes_score
from connector.core.secrets import Source, masked
from connector.delivery import outbox
from connector.delivery.contract import AccountBlocked, CrmError, Dead, Done, TransientError, Unmatched
from connector.delivery.outbox import Outcome, Work
from connector.delivery.targets.webhook.kinds import JobKind

NAME = "webhook"
EVENT = "call.scored"
RETRIED = {408, 429}  # and every 5xx
GONE = 410  # Standard Webhooks, "Delivery success and failure": the sender should disable the endpoint


AUDIT_SCOPE = "webhook_connection"
TEST_EVENT = "connector.test"
SECRET_BYTES = 32  # Standard Webhooks, "Symmetric": a secret of 24 to 64 random bytes, base64 after `whsec_`
CACHE_SECONDS = 1.0  # how long a worker trusts its copy of the endpoint: a console change reaches it within it



@dataclass(frozen=True)
class Endpoint:
    url: str
    secret: str
    source: Source

    def shown(self) -> dict:
        """As the page and the audit show it: the URL, the secret's last characters only."""
        return {"url": self.url, "secret": masked(self.secret), "source": self.source.value}


@dataclass(frozen=True)
class EndpointState:
    in_force: Endpoint
    console: Endpoint | None
    environment: Endpoint | None
    saved_at: datetime | None
    unreadable: bool  # a console secret SECRET_KEY no longer decrypts: generate a new one


def new_secret() -> str:
    """A signing secret as Standard Webhooks writes it: `whsec_` and base64 of random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


class TestResult(enum.StrEnum):
    """What the receiver did with the test message."""

    ACCEPTED = "accepted"  # 2xx
    GONE = "gone"  # 410: the receiver asks the sender to stop (Standard Webhooks)
    REDIRECTED = "redirected"  # 3xx: not followed, as real messages are not
    REFUSED = "refused"  # another 4xx (a receiver answers 400 to a signature it does not accept)
    FAILED = "failed"  # 5xx
    NO_ANSWER = "no_answer"  # timeout, refused connection, bad address


@dataclass(frozen=True)
class TestAnswer:
    result: TestResult
    status: int | None = None
    message_id: str = ""


class WebhookConnection:
    """The endpoint in force, as `connector.inbound.mango.credentials` does for MANGO's pair: the console's URL and
    generated secret (stored encrypted in the webhook account's row) win over the environment's once saved;
    every process reads it through `current()`, so a change needs no restart."""

    def __init__(self, db: Database, env_url: str, env_secret: str, secret_key: str, *,
                 cache_seconds: float = CACHE_SECONDS, clock=time.monotonic):
        self.db = db
        self.environment = Endpoint(env_url, env_secret, Source.ENVIRONMENT) if env_url and env_secret else None
        self.cipher = token_cipher(secret_key)
        self.cache_seconds, self.clock = cache_seconds, clock
        self._copy: tuple[float, Endpoint] | None = None

    def current(self) -> Endpoint:
        copy = self._copy
        if copy is not None and self.clock() - copy[0] < self.cache_seconds:
            return copy[1]
        with self.db.reading() as s:
            endpoint = self.state(s).in_force
        self._copy = (self.clock(), endpoint)
        return endpoint

    def state(self, session: Session) -> EndpointState:
        row = account_row(session, NAME)
        console, unreadable = None, False
        if row.endpoint_url and row.secret_enc:
            try:
                console = Endpoint(row.endpoint_url, self._decrypt(row.secret_enc), Source.CONSOLE)
            except InvalidToken:
                unreadable = True
        in_force = console or self.environment or Endpoint("", "", Source.NONE)
        return EndpointState(in_force, console, self.environment, row.connected_at, unreadable)

    def _decrypt(self, value: str) -> str:
        return self.cipher.decrypt(value.encode()).decode()

    def save(self, session: Session, url: str, actor: str, *, regenerate: bool = False) -> str | None:
        """Store the URL; a secret is generated when there is none yet (or `regenerate`). Returns the new
        secret, to be shown once, or None when the stored one is kept. Audited, masked."""
        row = account_row(session, NAME, lock=True)
        before = self._shown(row)
        secret = None
        try:
            kept = self._decrypt(row.secret_enc) if row.secret_enc and not regenerate else None
        except InvalidToken:
            kept = None
        if kept is None:
            secret = new_secret()
            row.secret_enc = self.cipher.encrypt(secret.encode()).decode()
        row.endpoint_url, row.connected_at = url, datetime.now(timezone.utc)
        session.add(SettingsAudit(scope=AUDIT_SCOPE, actor=actor, before=before,
                                  after={**Endpoint(url, secret or kept, Source.CONSOLE).shown(),
                                         "secret_generated": secret is not None}))
        self._copy = None
        return secret

    def forget(self, session: Session, actor: str) -> bool:
        row = account_row(session, NAME, lock=True)
        if not row.endpoint_url and not row.secret_enc:
            return False
        before = self._shown(row)
        row.endpoint_url = row.secret_enc = row.connected_at = None
        after = self.environment.shown() if self.environment else {"source": Source.NONE.value}
        session.add(SettingsAudit(scope=AUDIT_SCOPE, actor=actor, before=before, after=after))
        self._copy = None
        return True

    def _shown(self, row) -> dict:
        if row.endpoint_url and row.secret_enc:
            try:
                return Endpoint(row.endpoint_url, self._decrypt(row.secret_enc), Source.CONSOLE).shown()
            except InvalidToken:
                return {"url": row.endpoint_url, "source": Source.CONSOLE.value}
        return self.environment.shown() if self.environment else {"source": Source.NONE.value}


def signed_post(http: requests.Session, endpoint: Endpoint, message_id: str, item: dict, timeout: float,
                now: datetime | None = None) -> requests.Response:
    """One message as Standard Webhooks signs it: `webhook-id`, `webhook-timestamp`, `webhook-signature`
    over `id.timestamp.body`. Redirects are not followed: the signature was made for this URL."""
    now = now or datetime.now(timezone.utc)
    body = json.dumps({**item, "timestamp": now.isoformat()}, ensure_ascii=False)
    headers = {"Content-Type": "application/json", "webhook-id": message_id,
               "webhook-timestamp": str(int(now.timestamp())),
               "webhook-signature": Webhook(endpoint.secret).sign(message_id, now, body)}
    return http.post(endpoint.url, data=body.encode(), headers=headers, timeout=timeout, allow_redirects=False)


def send_test(endpoint: Endpoint, *, http: requests.Session | None = None, timeout: float = 10.0) -> TestAnswer:
    """One signed test message (`connector.test`, never retried) and what the receiver did with it."""
    message_id = f"test_{uuid.uuid4().hex}"
    item = {"type": TEST_EVENT, "data": {"test": True}}
    try:
        response = signed_post(http or requests.Session(), endpoint, message_id, item, timeout)
    except requests.RequestException:
        return TestAnswer(TestResult.NO_ANSWER, None, message_id)
    status = response.status_code
    result = (TestResult.ACCEPTED if 200 <= status < 300 else TestResult.GONE if status == GONE
              else TestResult.REDIRECTED if 300 <= status < 400 else TestResult.FAILED if status >= 500
              else TestResult.REFUSED)
    return TestAnswer(result, status, message_id)


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


@dataclass(frozen=True)
class WebhookWorkNotes:
    """What `prepare` notes on one job for the POST (`Work.scratch`)."""

    message_id: str  # the webhook-id header: the job's key, the same on every retry


class WebhookTarget:
    name = NAME
    max_batch = 20  # one POST each: a batch is only how many are claimed at once
    recording_kinds = ()  # the receiver gets links, never files

    def batch_size(self, kind: str) -> int:
        return self.max_batch

    def __init__(self, url: str, secret: str, *, session: requests.Session | None = None, timeout: float = 10.0,
                 crm_defaults: dict[str, HighScores] | None = None, connection: WebhookConnection | None = None):
        self.timeout = timeout
        self.crm_defaults = crm_defaults or {}  # each CRM target beside it -> its default for high scores
        # The endpoint in force at each message (the console's, else the environment's): no restart needed.
        fixed = Endpoint(url, secret, Source.ENVIRONMENT)
        self.endpoint = connection.current if connection is not None else (lambda: fixed)
        self.http = session or requests.Session()

    def probe(self) -> None:
        """The webhook pauses only when its receiver answered 410 Gone ("disable this endpoint"): a
        probe never undoes that; an admin resumes it once the receiver wants messages again."""
        raise CrmError("the receiver answered 410 Gone: resume the webhook once it wants messages again")

    def prepare(self, session: Session, claimed: list[tuple[DeliveryJob, outbox.Delivery, Work]], policy: Policy,
                user_map: dict) -> None:
        # The call JSON reads scores, records and the follow-up: load them for the whole batch in three queries.
        list(session.scalars(select(Call).where(Call.id.in_([d.call.id for _j, d, _w in claimed]))
                             .options(selectinload(Call.scores), selectinload(Call.crm_records),
                                      selectinload(Call.follow_up))))
        for job, d, w in claimed:
            w.scratch = WebhookWorkNotes(message_id=job.key)
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
        endpoint = self.endpoint()
        if not endpoint.url:
            return TransientError("webhook: no URL set (settings page or WEBHOOK_TARGET_URL)", maybe_applied=False)
        try:
            response = signed_post(self.http, endpoint, w.scratch.message_id, w.item, self.timeout)
        except requests.RequestException as exc:
            return TransientError(f"webhook: no answer ({type(exc).__name__})")
        if 200 <= response.status_code < 300:
            return Done()
        detail = f"webhook: {response.status_code} {response.text.strip()[:200]}".strip()
        if response.status_code == GONE:
            return AccountBlocked(f"{detail}: the receiver asks to stop sending (410 Gone); resume the webhook "
                                  "target once it wants messages again", status=GONE, body=response.text[:500])
        if response.status_code in RETRIED or response.status_code >= 500:
            return TransientError(detail, retry_after=_retry_after(response), status=response.status_code,
                                  body=response.text[:500])
        return Dead(detail)

    def on_done(self, session: Session, job: DeliveryJob, w: Work, result: Done, now: datetime,
                d: outbox.Delivery) -> None:
        d.record.logged_at = d.record.logged_at or now  # the first score the receiver has

    def on_unmatched(self, session: Session, job: DeliveryJob, result: Unmatched, now: datetime,
                     d: outbox.Delivery) -> None:
        job.status, job.last_error = JobStatus.DEAD, result.reason  # a webhook has no entities to match
