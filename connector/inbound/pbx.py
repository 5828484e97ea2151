"""PBX adapters: verify a signed callback, parse it, map it to domain events.

A PBX module exposes `verify(...)` and `parse(kind, json_text) -> InboundMessage`.
The domain events below are PBX-neutral; `connector.inbound.ingest` applies them.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime


class CallbackRejected(Exception):
    """A callback the connector refuses; `status` is the HTTP status a face should answer."""

    status = 400

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class SignatureRejected(CallbackRejected):
    status = 403


class PayloadRejected(CallbackRejected):
    status = 400


@dataclass(frozen=True)
class CallState:
    entry_id: str
    seq: int
    state: str
    line_number: str | None


@dataclass(frozen=True)
class CallSummary:
    entry_id: str
    direction: str  # inbound, outbound, internal
    operator_extension: str | None
    customer_phone: str | None
    line_number: str | None
    created_at: datetime | None
    forwarded_at: datetime | None
    talk_started_at: datetime | None
    ended_at: datetime | None
    talk_seconds: int
    entry_result: int | None
    disconnect_reason: int | None


@dataclass(frozen=True)
class Recording:
    """A recording the PBX reports; `playable` when its file is (or will be) in the PBX's cloud."""

    entry_id: str
    recording_id: str
    playable: bool
    stored: bool = False  # the PBX says the file is in its cloud storage now (MANGO's record/added)


@dataclass(frozen=True)
class Digits:
    entry_id: str
    digits: str
    location: str | None
    at: datetime


@dataclass(frozen=True)
class Mark:
    """One answer of a supervisor's QA form."""

    question_id: str
    mark: int | None
    comment: str | None


@dataclass(frozen=True)
class QualityReport:
    """What the PBX's quality control knows of a call.

    `customer_raw`: the customer's post-call score as sent (None: not known yet, or never
    reached the survey); `survey_unanswered`: moved to the survey, pressed nothing.
    """

    customer_raw: str | None
    survey_unanswered: bool
    marks: tuple[Mark, ...]


@dataclass(frozen=True)
class ScannedCall:
    """One call of the PBX's bulk statistics: its quality report, and whether the PBX's contact
    centre handled it (only such a call can be asked about one by one without a "not found")."""

    entry_id: str
    report: QualityReport
    contact_center: bool


@dataclass(frozen=True)
class Question:
    question_id: str
    name: str | None
    block: str | None
    form: str | None


@dataclass(frozen=True)
class OperatorEntry:
    """One user of the PBX's user list: their extension, name (None when the PBX has none) and groups."""

    extension: str
    name: str | None
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class InboundMessage:
    """A verified, parsed callback: stored raw, deduplicated by `dedupe_key`, then applied."""

    kind: str
    dedupe_key: str
    entry_id: str | None
    payload: str
    event: CallState | CallSummary | Recording | Digits | None


def dedupe_key(*parts: object) -> str:
    """A fixed-length key from a business key of any length (entry_id is up to 128 bytes)."""
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()

@dataclass(frozen=True)
class RecordingFile:
    """A call's recording as the PBX gave it."""
    body: bytes
    content_type: str
