"""SQLAlchemy models. Schema changes go through Alembic (`migrations/`).

One call row per PBX `entry_id`, created by whichever event arrives first; every
inbound message is kept in `inbound_events`; every score, valid or not, in
`scores`; the CRM side of a call in `crm_records` (one row per CRM, so a second
CRM adds rows, not columns).
"""
from __future__ import annotations

import enum
from datetime import datetime, timezone

from sqlalchemy import (JSON, Boolean, DateTime, Float, ForeignKey, Index, Integer, LargeBinary, String, Text,
                        TypeDecorator, UniqueConstraint)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator):
    """Stores naive UTC, returns aware UTC: the same values on SQLite and PostgreSQL."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use an aware UTC datetime")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value, dialect):
        return value.replace(tzinfo=timezone.utc) if value is not None else None


class Base(DeclarativeBase):
    pass


class SurveyState(enum.StrEnum):
    """What is known of a call's post-call survey (`calls.survey`; null: no survey source tells)."""

    PENDING = "pending"  # waiting for the customer's post-call mark
    ANSWERED = "answered"  # a customer score came, from any source
    NO_ANSWER = "no_answer"  # moved to the survey, pressed nothing (MANGO's mark_client -1)
    NOT_OFFERED = "not_offered"  # the wait passed with no mark: the customer never reached the survey


class JobStatus(enum.StrEnum):
    """A delivery job's state (`delivery_jobs.status`)."""

    PENDING = "pending"  # due at not_before (leased while a worker sends it)
    DONE = "done"  # the effect is in the target
    DEAD = "dead"  # refused for good, or retried for 24 h: replayable
    UNMATCHED = "unmatched"  # the CRM has no entity for the caller: replayable
    WAITING = "waiting"  # waits for another job of its call (a contact being created)


class DeliveryStatus(enum.StrEnum):
    """A call's state in one target (`crm_records.status`), summed up from its jobs."""

    PENDING = "pending"
    DELIVERED = "delivered"
    UNMATCHED = "unmatched"
    DEAD = "dead"
    SKIPPED = "skipped"  # nothing to send: no target, an internal call, the feature off


NO_TARGET = "none"  # the `crm` of a call's record when no target is configured: stored and reported only
SMS_CHANNEL = "sms"  # the outbox target of the rating link's SMS (connector.inbound.link.sms)
# Outbox targets that are not CRMs: their records say where a message to the customer is, and never count in
# the call's CRM status nor stand for its CRM in the API.
ALERT_CHANNELS = ("email", "telegram")  # the outbox targets of the alerts (connector.core.alerting.Channel)
CHANNELS = frozenset({SMS_CHANNEL, *ALERT_CHANNELS})
_WORST_FIRST = (DeliveryStatus.DEAD, DeliveryStatus.UNMATCHED, DeliveryStatus.PENDING, DeliveryStatus.DELIVERED)


def summary_status(statuses) -> DeliveryStatus:
    """A call's state over all its targets: skipped when every one skipped it, else the worst of the
    others (delivered only when every target delivered)."""
    active = [DeliveryStatus(s) for s in statuses if s != DeliveryStatus.SKIPPED]
    return min(active, key=_WORST_FIRST.index) if active else DeliveryStatus.SKIPPED


def crm_summary(records) -> DeliveryStatus:
    """The call's CRM status from its records (`summary_status`), the channels' left out."""
    return summary_status(r.status for r in records if r.crm not in CHANNELS)


class ScoreSource(enum.StrEnum):
    """Who gave a score (`scores.source`)."""

    CUSTOMER = "customer"  # the caller: the PBX's survey, its quality control, the score API
    SUPERVISOR = "supervisor"  # QA staff: MANGO's QA form, a review in the console or the API


class ScoreOrigin(enum.StrEnum):
    """The channel a score came through (`scores.origin`)."""

    PBX_SURVEY = "mango_dtmf"  # the PBX's IVR survey: keypad digits (the stored value keeps its first name)
    PBX_QUALITY = "mango_quality"  # the PBX's quality control (its call statistics or Contact Center)
    API = "api"  # the generic score API
    REVIEW = "review"  # a review in the console (or POST .../reviews)
    LINK = "link"  # the customer's answer on the rating page a request by SMS linked to


class PollStatus(enum.StrEnum):
    PENDING = "pending"  # to be asked again at not_before
    DONE = "done"  # nothing more to wait for (or the PBX does not know the call)


class Call(Base):
    __tablename__ = "calls"

    id: Mapped[int] = mapped_column(primary_key=True)
    entry_id: Mapped[str] = mapped_column(String(128), unique=True)
    direction: Mapped[str | None] = mapped_column(String(10))  # inbound, outbound, internal
    operator_extension: Mapped[str | None] = mapped_column(String(32))
    customer_phone: Mapped[str | None] = mapped_column(String(32))
    line_number: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    forwarded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    talk_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    talk_seconds: Mapped[int | None] = mapped_column(Integer)
    entry_result: Mapped[int | None] = mapped_column(Integer)
    disconnect_reason: Mapped[int | None] = mapped_column(Integer)
    recording_id: Mapped[str | None] = mapped_column(String(128))
    # The PBX said it has no file for the recording: the player answers 404 until then, without
    # asking again (every wrong request counts towards MANGO's 2-minute block).
    recording_unavailable_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When the PBX said the file is in its cloud (MANGO's record/added): for a while after it, a fetch
    # may still find no file, so the player waits before the first one and treats a miss as "not yet".
    recording_stored_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When the connector tried to copy the recording for a target that downloads it (once: a failed copy
    # leaves the target to the player's link, which asks the PBX itself).
    recording_copy_tried_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # SurveyState; null when no survey source tells
    survey: Mapped[str | None] = mapped_column(String(16))
    last_event_seq: Mapped[int | None] = mapped_column(Integer)
    last_call_state: Mapped[str | None] = mapped_column(String(32))
    summary_received_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The scores in force and the decision taken for the customer score; history is in `scores`.
    customer_score: Mapped[int | None] = mapped_column(Integer)
    supervisor_score: Mapped[int | None] = mapped_column(Integer)
    decision_record: Mapped[bool] = mapped_column(Boolean, default=False)
    decision_tag: Mapped[str | None] = mapped_column(String(255))
    decision_reason: Mapped[str | None] = mapped_column(String(255))
    # The policy's rule for a score at or above the threshold (threshold.HighScores); None below it.
    decision_high_scores: Mapped[str | None] = mapped_column(String(8))
    # The call's CRM status as the API shows it (crm_records holds the detail): stored here so that the
    # crm_status filter has an index in list order.
    crm_status: Mapped[str | None] = mapped_column(String(16))
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # When the call started (created_at) or, until the summary says, when it was first seen: the
    # order of the QA lists and their date filters, stored so that an index matches them.
    listed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    scores: Mapped[list["Score"]] = relationship(back_populates="call", order_by="Score.id")
    crm_records: Mapped[list["CrmRecord"]] = relationship(back_populates="call", order_by="CrmRecord.id")
    supervisor_marks: Mapped[list["SupervisorMark"]] = relationship(
        back_populates="call", order_by="SupervisorMark.id", cascade="all, delete-orphan")
    # The call back a low score asks for (connector.core.follow_ups); None for a call never scored low.
    follow_up: Mapped["FollowUp | None"] = relationship(back_populates="call", uselist=False)


# The QA lists: newest first (listed_at DESC, id DESC), alone or after one equality filter; a partial
# index for the tagged calls.
Index("ix_calls_listed", Call.listed_at, Call.id)
# customer_score trails: a score filter beside the operator or line is then checked in the index.
Index("ix_calls_operator_listed", Call.operator_extension, Call.listed_at, Call.id, Call.customer_score)
Index("ix_calls_line_listed", Call.line_number, Call.listed_at, Call.id, Call.customer_score)
Index("ix_calls_score_listed", Call.customer_score, Call.listed_at, Call.id)
Index("ix_calls_operator_score", Call.operator_extension, Call.customer_score, Call.listed_at, Call.id)  # sort by score
Index("ix_calls_crm_status_listed", Call.crm_status, Call.listed_at, Call.id)
Index("ix_calls_tagged_listed", Call.listed_at, Call.id, sqlite_where=Call.decision_tag.is_not(None),
      postgresql_where=Call.decision_tag.is_not(None))


class SupervisorMark(Base):
    """One answer of a supervisor's QA form for a call (MANGO's quality control: `mark_controller`)."""

    __tablename__ = "supervisor_marks"
    __table_args__ = (UniqueConstraint("call_id", "question_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"))
    question_id: Mapped[str] = mapped_column(String(64))
    mark: Mapped[int | None] = mapped_column(Integer)
    comment: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    call: Mapped[Call] = relationship(back_populates="supervisor_marks")


class QualityQuestion(Base):
    """A question of the PBX's QA forms, cached: forms change rarely, and every look-up is a
    request to the PBX. `known` false: the PBX said there is no such question (not asked again)."""

    __tablename__ = "quality_questions"

    question_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    known: Mapped[bool] = mapped_column(Boolean, default=True)
    name: Mapped[str | None] = mapped_column(String(255))
    block: Mapped[str | None] = mapped_column(String(255))
    form: Mapped[str | None] = mapped_column(String(255))
    fetched_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class PbxPoll(Base):
    """A call whose scores are pulled from the PBX (MANGO's Contact Center API), on a schedule.

    Claimed with a lease, like delivery jobs. `found` says the PBX has answered for this call
    before, so asking again cannot be a wrong request; `misses` counts its "not found" answers.
    """

    __tablename__ = "pbx_polls"

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), unique=True)
    status: Mapped[str] = mapped_column(String(16), default=PollStatus.PENDING)
    not_before: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    found: Mapped[bool] = mapped_column(Boolean, default=False)
    # The PBX's bulk statistics show the contact centre handled the call: asking about it one by one
    # is unlikely to be a "not found". Calls without it are not asked one by one unless QUALITY_SOURCE=cc.
    contact_center: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    polls: Mapped[int] = mapped_column(Integer, default=0)
    misses: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    call: Mapped[Call] = relationship()


Index("ix_pbx_polls_due", PbxPoll.status, PbxPoll.not_before)


class PbxScan(Base):
    """A scheduled read of the PBX shared by every process: one rolling window of its bulk call statistics
    (e.g. the last 30 minutes, every minute), or its operator directory. Whoever holds the lease reads it;
    `next_at` is when it is due again."""

    __tablename__ = "pbx_scans"

    name: Mapped[str] = mapped_column(String(16), primary_key=True)
    next_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_calls: Mapped[int] = mapped_column(Integer, default=0)  # calls the last scan listed
    last_error: Mapped[str | None] = mapped_column(Text)
    # Failed reads in a row (0 after a success): shown in the status and on the settings page.
    failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_problem: Mapped[str | None] = mapped_column(String(16))  # a ScanProblem, beside last_error


class Operator(Base):
    """An operator as the PBX's user list names them, by extension: read when the PBX is connected and on a
    schedule (`connector.inbound.directory`). The console shows the name beside the extension."""

    __tablename__ = "operators"

    extension: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(255))
    groups: Mapped[list] = mapped_column(JSON, default=list)  # the PBX's group ids, as it lists them
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)  # the last read that listed it


class ScanProblem(enum.StrEnum):
    """Why a scan of the PBX's call statistics failed (`pbx_scans.last_problem`): what a person is told."""

    BLOCKED = "blocked"  # the PBX blocked the account's API for a while
    COOLING_DOWN = "cooling_down"  # waiting out the 2 minutes after a wrong request
    RATE_LIMITED = "rate_limited"  # over the PBX's rate limit
    UNAVAILABLE = "unavailable"  # unreachable, overloaded, or an answer that could not be read
    REFUSED = "refused"  # the PBX refused the request (its settings or the account's rights)
    REPORT_FAILED = "report_failed"  # the report ended without data (cancelled, failed, expired)
    REPORT_LATE = "report_late"  # the report was not ready in time


class RecordingCopy(Base):
    """A recording's file, copied from the PBX while a target still has to download it: the player's
    link serves it from here (quickly, and without spending the PBX's few files a second); deleted once
    no job waits for it."""

    __tablename__ = "recording_copies"

    recording_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    size: Mapped[int] = mapped_column(Integer)
    content_type: Mapped[str] = mapped_column(String(64))
    fetched_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Score(Base):
    """Every score ever received for a call, including refused ones, with the decision taken."""

    __tablename__ = "scores"

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), index=True)
    source: Mapped[str] = mapped_column(String(16))  # customer, supervisor
    origin: Mapped[str] = mapped_column(String(16))  # mango_dtmf, mango_quality, api, review
    raw: Mapped[str] = mapped_column(String(64))
    value: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))  # a ScoreStatus (connector.core.policy)
    reason: Mapped[str] = mapped_column(String(255))
    record: Mapped[bool] = mapped_column(Boolean, default=False)
    tag: Mapped[str | None] = mapped_column(String(255))
    tag_to_remove: Mapped[str | None] = mapped_column(String(255))
    # A recorded score at or above the threshold: the policy's rule for it then (threshold.HighScores);
    # None for any other score. Each CRM target reads it with its own default (threshold.writes_score).
    high_scores: Mapped[str | None] = mapped_column(String(8))
    operator_extension: Mapped[str | None] = mapped_column(String(32))  # as it was at rating time
    comment: Mapped[str | None] = mapped_column(Text)
    author: Mapped[str | None] = mapped_column(String(64))  # the console user of a review
    rated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    call: Mapped[Call] = relationship(back_populates="scores")


class CrmRecord(Base):
    """The state of one call in one CRM: what the API shows as `crm`."""

    __tablename__ = "crm_records"
    __table_args__ = (UniqueConstraint("call_id", "crm"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"))
    crm: Mapped[str] = mapped_column(String(16))
    # pending, delivered, unmatched, dead, skipped
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.PENDING)  # a DeliveryStatus
    reason: Mapped[str | None] = mapped_column(String(255))
    entity_type: Mapped[str | None] = mapped_column(String(16))
    entity_id: Mapped[int | None] = mapped_column(Integer)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    # Who owns the call in the CRM; `responsible_mapped` false means the integration's own user.
    responsible_user_id: Mapped[int | None] = mapped_column(Integer)
    responsible_mapped: Mapped[bool | None] = mapped_column(Boolean)
    # Which customer score the CRM shows (in the call record or a later note); null = none yet.
    written_score: Mapped[int | None] = mapped_column(Integer)
    # The low-score tag the connector last put on the entity, so a replacing score removes exactly it.
    applied_tag: Mapped[str | None] = mapped_column(String(255))
    logged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    call: Mapped[Call] = relationship(back_populates="crm_records")


Index("ix_crm_records_status_call", CrmRecord.status, CrmRecord.call_id)


class InboundEvent(Base):
    """Every accepted inbound message, raw, deduplicated by a business key: the inbox."""

    __tablename__ = "inbound_events"
    __table_args__ = (UniqueConstraint("source", "dedupe_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(16))  # mango, scores_api
    kind: Mapped[str] = mapped_column(String(64))  # e.g. events/summary
    dedupe_key: Mapped[str] = mapped_column(String(64))  # sha256 hex of the business key
    entry_id: Mapped[str | None] = mapped_column(String(128), index=True)
    payload: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Null while the event waits in the inbox to be applied to its call (connector.inbound.inbox).
    applied_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Why it was set aside unapplied (the database refused it); null when applied normally.
    error: Mapped[str | None] = mapped_column(String(255))


# The inbox's queue: only pending events are in this index, so claiming stays cheap at any size.
Index("ix_inbound_events_pending", InboundEvent.id, sqlite_where=InboundEvent.applied_at.is_(None),
      postgresql_where=InboundEvent.applied_at.is_(None))


class RuntimeSettings(Base):
    """Admin-edited settings. `scope` is `global`; per-line overrides will add `line:<number>` rows."""

    __tablename__ = "runtime_settings"

    id: Mapped[int] = mapped_column(primary_key=True)
    scope: Mapped[str] = mapped_column(String(64), unique=True)
    values: Mapped[dict] = mapped_column(JSON)
    # Bumped by every change (SQLAlchemy's version counter): processes keep their copy while it holds.
    version: Mapped[int] = mapped_column(Integer, server_default="1")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    __mapper_args__ = {"version_id_col": version}


class SettingsAudit(Base):
    __tablename__ = "settings_audit"

    id: Mapped[int] = mapped_column(primary_key=True)
    scope: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(128))
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    before: Mapped[dict] = mapped_column(JSON)
    after: Mapped[dict] = mapped_column(JSON)


class DeliveryJob(Base):
    """One effect in one CRM, exactly once by `key` (entry_id + kind + what it carries).

    A job is due when `status` is pending and `not_before` has passed; a worker claims it by
    setting a lease. `sent_at` set on a claimed job means a request may have gone out: a
    worker that finds it set after a crash checks the CRM before sending again.
    """

    __tablename__ = "delivery_jobs"
    __table_args__ = (UniqueConstraint("crm", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    crm: Mapped[str] = mapped_column(String(16))
    key: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(16))  # log_call, contact, note, tags
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), index=True)
    score_id: Mapped[int | None] = mapped_column(ForeignKey("scores.id", ondelete="SET NULL"))
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.PENDING)  # a JobStatus
    not_before: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    first_failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    call: Mapped[Call] = relationship()


Index("ix_delivery_jobs_due", DeliveryJob.status, DeliveryJob.not_before)


class Account(Base):
    """State of one remote account shared by all processes, keyed by its `name` (a target's, or the PBX's
    command API): the global rate slot, the pause, OAuth tokens, and an endpoint entered in the console or by
    an install. What only one target or PBX keeps about its account lives in that kit's own table, keyed by
    the same name (`connector/inbound/mango/models.py`, `connector/delivery/targets/*/models.py`)."""

    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(16), unique=True)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    paused_reason: Mapped[str | None] = mapped_column(String(255))
    paused_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Tokens encrypted with a key derived from SECRET_KEY; never logged.
    access_token_enc: Mapped[str | None] = mapped_column(Text)
    refresh_token_enc: Mapped[str | None] = mapped_column(Text)
    token_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Unix time before which no request may start: one limiter for every process.
    next_request_at: Mapped[float] = mapped_column(Float, default=0.0)
    # The endpoint in force once entered in the console or given by an install: its URL and signing secret
    # (encrypted as the tokens are), and when.
    endpoint_url: Mapped[str | None] = mapped_column(Text)
    secret_enc: Mapped[str | None] = mapped_column(Text)
    connected_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class RequestStatus(enum.StrEnum):
    """Where a rating request by link is (`rating_requests.status`); opened and rated are its own times."""

    SCHEDULED = "scheduled"  # waits for its time (the delay after the call, within the sending hours)
    SKIPPED = "skipped"  # will not be sent; `reason` says why (do-not-contact, the daily cap, no extension, ...)
    QUEUED = "queued"  # its SMS is a job in the outbox
    ACCEPTED = "accepted"  # the PBX accepted the command (answer 1000); its result comes later
    SENT = "sent"  # the PBX sent it (result/sms 1000)
    DELIVERED = "delivered"  # the carrier delivered it (events/sms)
    FAILED = "failed"  # not sent or not delivered; `reason` says why, nothing retries it blind


class RequestReason(enum.StrEnum):
    """Why a rating request was skipped or failed (`rating_requests.reason`); the console names it in words."""

    DO_NOT_CONTACT = "do_not_contact"  # the number is on the do-not-contact list
    DAILY_CAP = "daily_cap"  # the number already had its requests today
    NO_EXTENSION = "no_extension"  # neither the operator nor the settings give an extension to send from
    TEXT_TOO_LONG = "text_too_long"  # the text with this operator's name does not fit one SMS command
    CHANNEL_OFF = "channel_off"  # the channel (or the call's line) was turned off before it was due
    SCORED = "scored"  # the customer rated the call meanwhile
    TOO_LATE = "too_late"  # its link would expire before it could be sent
    BILLING = "billing"  # the PBX: 2xxx, the account's balance or tariff
    REFUSED = "refused"  # the PBX: 3xxx, a request it would not take
    NOT_SENT = "not_sent"  # the PBX: 4300, not sent
    NOT_DELIVERED = "not_delivered"  # the carrier: 4300 failed, 4301 expired
    CARRIER_REFUSED = "carrier_refused"  # the carrier: 4391-4393
    PBX_ERROR = "pbx_error"  # another answer of the PBX
    GAVE_UP = "gave_up"  # the outbox gave up on it (its job is dead: replayable)


class RatingRequest(Base):
    """One request to rate a call by link: at most one per call (`call_row` unique)."""

    __tablename__ = "rating_requests"

    id: Mapped[int] = mapped_column(primary_key=True)
    call_row: Mapped[int] = mapped_column(ForeignKey("calls.id"), unique=True)
    number: Mapped[str] = mapped_column(String(32))  # the customer's number as the PBX gave it; never logged
    line_number: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))  # RequestStatus
    reason: Mapped[str | None] = mapped_column(String(32))  # RequestReason, for skipped and failed
    detail: Mapped[str | None] = mapped_column(String(255))  # the PBX's answer, for a person
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)  # the link works until then
    # sha256 of the link's token (the token itself is derived from SECRET_KEY and the id, never stored)
    token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    command_id: Mapped[str | None] = mapped_column(String(64), unique=True)  # ties the PBX's answers to it
    from_extension: Mapped[str | None] = mapped_column(String(32))
    queued_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    rated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The page's scale when it was sent (RatingScale): its answers are read on it, whatever the setting later;
    # None for requests made before it was kept (the setting in force then).
    scale: Mapped[str | None] = mapped_column(String(16))
    rating: Mapped[int | None] = mapped_column(Integer)  # as given on the page's scale
    comment: Mapped[str | None] = mapped_column(Text)  # plain text, shown escaped
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


Index("ix_rating_requests_status_due", RatingRequest.status, RatingRequest.due_at)
Index("ix_rating_requests_number_sent", RatingRequest.number, RatingRequest.queued_at)


class DoNotContact(Base):
    """A number no rating request goes to: added by an admin, or by the customer on the rating page."""

    __tablename__ = "do_not_contact"

    number: Mapped[str] = mapped_column(String(32), primary_key=True)  # digits only
    source: Mapped[str] = mapped_column(String(16))  # "admin" or "customer"
    actor: Mapped[str | None] = mapped_column(String(64))  # the admin's login; None for the customer
    added_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Role(enum.StrEnum):
    """What a console user may do. Operators see only the calls of their own extensions."""

    ADMIN = "admin"  # everything, settings and users included
    SUPERVISOR = "supervisor"  # every call; reviews; reports
    OPERATOR = "operator"  # their own calls, ratings and reviews


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    extensions: Mapped[list] = mapped_column(JSON, default=list)  # PBX extensions of an operator
    password_hash: Mapped[str] = mapped_column(String(255))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    email: Mapped[str | None] = mapped_column(String(254))  # where e-mail alerts go (connector.core.alerting)


class AlertRoute(Base):
    """A supervisor's share of the alerts: the calls of `line_number` whose operator is in `operator_group`
    ('' for either: any). An operator is never routed anything (connector.core.alerting.recipients)."""

    __tablename__ = "alert_routes"
    __table_args__ = (UniqueConstraint("user_id", "line_number", "operator_group"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    line_number: Mapped[str] = mapped_column(String(32), default="", server_default="")
    operator_group: Mapped[str] = mapped_column(String(64), default="", server_default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AlertChannel(Base):
    """One person's channel (`channel`: connector.core.alerting.Channel): on or off, muted until a time, refused
    by the messenger (a chat that blocked the bot: off until linked again), and its address where the user row
    has none (a Telegram chat id)."""

    __tablename__ = "alert_channels"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    channel: Mapped[str] = mapped_column(String(16), primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    muted_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    refused: Mapped[str | None] = mapped_column(String(255))
    address: Mapped[str | None] = mapped_column(String(64))
    # A Telegram link in progress: the SHA-256 of the one-time code the person sends the bot (`/start <code>`),
    # and until when it works. Cleared once used.
    link_code_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    link_code_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class AlertStatus(enum.StrEnum):
    QUEUED = "queued"  # its own message is in the outbox (`job_key`)
    HELD = "held"  # quiet hours or the hourly cap: it waits for the digest after `held_until`
    DIGESTED = "digested"  # it went into a digest message (`job_key` is the digest's)


class Alert(Base):
    """One alert: a call's trigger (connector.core.alerting.Trigger) for one person on one channel, exactly
    once (the unique key). Its message is one outbox job of the channel's target, its own or a digest's."""

    __tablename__ = "alerts"
    __table_args__ = (UniqueConstraint("call_row", "trigger", "user_id", "channel"),
                      Index("ix_alerts_held", "status", "held_until"),
                      Index("ix_alerts_user_recent", "user_id", "channel", "created_at"))

    id: Mapped[int] = mapped_column(primary_key=True)
    call_row: Mapped[int] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), index=True)
    trigger: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))  # AlertStatus
    held_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    job_key: Mapped[str | None] = mapped_column(String(255))  # the outbox job that carries its message
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ReportPeriod(enum.StrEnum):
    DAILY = "daily"  # the previous local day, sent at `hour`
    WEEKLY = "weekly"  # the previous seven local days, sent on `weekday` at `hour`


class ReportSubscription(Base):
    """A person's scheduled report e-mail: how often, and at which local hour (and weekday)."""

    __tablename__ = "report_subscriptions"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    period: Mapped[str] = mapped_column(String(16))  # ReportPeriod
    hour: Mapped[int] = mapped_column(Integer, default=8)
    weekday: Mapped[int] = mapped_column(Integer, default=0)  # 0: Monday
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class SendStatus(enum.StrEnum):
    PENDING = "pending"
    SENT = "sent"
    DEAD = "dead"  # gave up, with the reason; a replay sends it


class ReportSend(Base):
    """One report e-mail for one person and one period, exactly once by its unique key; sent with a lease, as
    the outbox's jobs are (a crash hands it to the next worker when the lease runs out)."""

    __tablename__ = "report_sends"
    __table_args__ = (UniqueConstraint("user_id", "period", "period_start"),
                      Index("ix_report_sends_due", "status", "not_before"))

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    period: Mapped[str] = mapped_column(String(16))  # ReportPeriod
    period_start: Mapped[datetime] = mapped_column(UTCDateTime)
    period_end: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16), default=SendStatus.PENDING)
    not_before: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    first_failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class MessengerAccount(Base):
    """What the connector keeps of its messenger bot beside the generic account row (the token is the account's
    `access_token_enc`): the bot's name as Telegram gave it, and the next update to read."""

    __tablename__ = "messenger_accounts"

    account: Mapped[str] = mapped_column(String(16), primary_key=True)
    bot_username: Mapped[str | None] = mapped_column(String(64))
    updates_offset: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(255))
    checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ApiToken(Base):
    """A personal API token: only its SHA-256 is kept (the token is 256 random bits, shown once).
    It works until `expires_at`, or until revoked one by one (`revoked_at`), or until its user is disabled."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str | None] = mapped_column(String(64))  # what it is for, as its owner says
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # to the minute
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ConsoleSession(Base):
    """A console login. The signed cookie carries a random id; only its SHA-256 is kept here. Logout
    deletes the row, so a replayed cookie finds nothing; it also ends after `SESSION_IDLE_HOURS` without a
    request and `SESSION_MAX_HOURS` after the login whatever happens."""

    __tablename__ = "console_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 hex of the cookie's id
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)  # to the minute
    address: Mapped[str | None] = mapped_column(String(64))  # where the login came from


class LoginThrottle(Base):
    """Failed logins or bearer tokens of one bucket (`pair:<user> <address>`, `device:<id>`, `user:<user>`,
    `addr:<address>`, `token:<address>`): the next attempt waits until `blocked_until` (a growing delay, then
    a lockout of limited length). Every process reads and writes the same rows."""

    __tablename__ = "login_throttle"

    key: Mapped[str] = mapped_column(String(160), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_failed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    blocked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    locked: Mapped[bool] = mapped_column(Boolean, default=False)  # blocked_until is a lockout, not a delay


class NotificationKind(enum.StrEnum):
    REVIEW = "review"  # to the operator: a supervisor reviewed one of their calls
    LOW_SCORE = "low_score"  # to supervisors: a customer gave a low score
    ALERT_REFUSED = "alert_refused"  # to the person: their messenger refused an alert of this call; channel off


class Notification(Base):
    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_user_read", "user_id", "read", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    read: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    call: Mapped[Call] = relationship()


class FollowUpStatus(enum.StrEnum):
    """Where a low score's follow-up is (`follow_ups.status`). Overdue is not stored: it is an open one past
    its `due_at`, computed when read (`connector.core.follow_ups`), so it never goes stale."""

    OPEN = "open"  # nobody has called the customer back yet, as far as the connector knows
    DONE = "done"  # the CRM task was completed, or a supervisor closed it in the console


class TaskState(enum.StrEnum):
    """What the last read-back found of a follow-up's CRM task (`follow_ups.task_state`)."""

    OPEN = "open"  # in the CRM, not completed
    COMPLETED = "completed"  # completed in the CRM (its result text and time are kept)
    DELETED = "deleted"  # the CRM no longer has it: not read again


class FollowUpOutcome(enum.StrEnum):
    """How a supervisor says a follow-up ended, closing it in the console (`follow_ups.outcome`)."""

    RECOVERED = "recovered"  # called back, and the customer is satisfied now
    NOT_RECOVERED = "not_recovered"  # called back, the customer is still unhappy
    UNREACHABLE = "unreachable"  # the customer could not be reached


class FollowUp(Base):
    """A call back after a low customer score: one per call that got a tagged score, made in the transaction
    that applied it; due when its CRM task is (else LOW_SCORE_TASK_HOURS after the score). It tracks the CRM
    task the first target made for it, read back on a schedule, and a supervisor may close it in the console."""

    __tablename__ = "follow_ups"
    __table_args__ = (Index("ix_follow_ups_status_due", "status", "due_at"),
                      Index("ix_follow_ups_reading", "target", "status", "checked_at"))

    id: Mapped[int] = mapped_column(primary_key=True)
    call_row: Mapped[int] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), unique=True)
    score_id: Mapped[int | None] = mapped_column(ForeignKey("scores.id", ondelete="SET NULL"))  # the tagged score
    status: Mapped[str] = mapped_column(String(16), default=FollowUpStatus.OPEN)  # a FollowUpStatus
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)  # when the low score came
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # the first of the CRM's completion and a closing
    # The CRM task it tracks: the target's name and the task's (amoCRM) or to-do's (Bitrix24) id there.
    target: Mapped[str | None] = mapped_column(String(16))
    task_id: Mapped[str | None] = mapped_column(String(64))
    task_state: Mapped[str | None] = mapped_column(String(16))  # a TaskState; null: no task read yet
    crm_result: Mapped[str | None] = mapped_column(Text)  # the result text the manager left in the CRM
    crm_completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The last read-back: when, and why it failed (null once one succeeds); failures in a row.
    checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(String(255))
    read_failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # A supervisor's closing in the console: who, when, how it ended, and a note (plain text, at most 500).
    closed_by: Mapped[str | None] = mapped_column(String(64))
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    outcome: Mapped[str | None] = mapped_column(String(16))  # a FollowUpOutcome
    note: Mapped[str | None] = mapped_column(String(500))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    call: Mapped[Call] = relationship(back_populates="follow_up")
    score: Mapped[Score | None] = relationship()

