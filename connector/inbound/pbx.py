"""PBX adapters: verify a signed callback, parse it, map it to domain events.

A PBX module exposes `verify(...)` and `parse(kind, json_text) -> InboundMessage`.
The domain events below are PBX-neutral; `connector.inbound.ingest` applies them.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Callable, Protocol

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from connector.core.config import Config
    from connector.core.db import Database


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


# --- the PBX's commands: what may go wrong ---------------------------------------------

class PbxError(Exception):
    """A command to the PBX failed. `status` is the HTTP status, `result` the PBX's own code (None when absent)."""

    def __init__(self, message: str, *, status: int | None = None, result: int | None = None):
        super().__init__(message)
        self.message, self.status, self.result = message, status, result


class PbxWrongRequest(PbxError):
    """The PBX refused this request (bad parameters, or no such call or recording; MANGO: a 3xxx result).
    Sending it again would fail again (and, at MANGO, count towards the block)."""


class PbxUnavailable(PbxError):
    """Not now: blocked, cooling down after a wrong request, rate-limited, overloaded, unreachable.
    `retry_at` is when to try again."""

    def __init__(self, message: str, retry_at: datetime, **answer):
        super().__init__(message, **answer)
        self.retry_at = retry_at


class PbxBlocked(PbxUnavailable):
    """The account's API is blocked (MANGO: it answered 401, or the block it set has not ended yet)."""


class PbxCoolingDown(PbxUnavailable):
    """Only requests that may fail are held (a strike in the last 2 minutes, or another such
    request in flight); requests expected to succeed may still go."""


class PbxBusy(PbxUnavailable):
    """Over a rate limit (HTTP 429; MANGO's Contact Center: 5008): this one request waits a second or two; the
    others go on behind the shared rate slot, which is held as long."""


# --- domain events ---------------------------------------------------------------

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
class SmsReport:
    """The PBX's later word on an SMS it was asked to send, tied to the request by our `command_id`: whether it
    sent it (`delivery` False; MANGO's `result/sms`), or whether the carrier delivered it (`delivery` True;
    MANGO's `events/sms`). `code` is the PBX's code, success or the reason."""

    command_id: str
    code: int
    delivery: bool
    SUCCESS = 1000

    @property
    def succeeded(self) -> bool:
        return self.code == self.SUCCESS


@dataclass(frozen=True)
class SmsMessage:
    """An SMS to send from the account: billed to the employee of `from_extension`."""

    command_id: str  # ours: the PBX's later reports carry it back
    from_extension: str
    to_number: str
    text: str
    sender: str | None = None  # a sender name the account has; None: its default


@dataclass(frozen=True)
class InboundMessage:
    """A verified, parsed callback: stored raw, deduplicated by `dedupe_key`, then applied."""

    kind: str
    dedupe_key: str
    entry_id: str | None
    payload: str
    event: CallState | CallSummary | Recording | Digits | SmsReport | None


def dedupe_key(*parts: object) -> str:
    """A fixed-length key from a business key of any length (entry_id is up to 128 bytes)."""
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()

@dataclass(frozen=True)
class RecordingFile:
    """A call's recording as the PBX gave it."""
    body: bytes
    content_type: str


class QualityControl(Protocol):
    """What the quality poller asks of a PBX: a call's quality report, and a question's wording. Both may raise
    PbxUnavailable (not now), PbxWrongRequest (never) or PbxError."""

    def call_quality(self, entry_id: str, *, probing: bool) -> QualityReport: ...

    def quality_question(self, question_id: str) -> Question: ...


class PbxCommands(QualityControl, Protocol):
    """The PBX's command API as the faces and workers use it (MANGO's is `inbound.mango.api.MangoApi`)."""

    probe_hold: timedelta  # a probing request refused: how long no one asks for that resource again

    @property
    def configured(self) -> bool:
        """Whether credentials are in force (entered in the console or set in the environment)."""

    def with_credentials(self, api_key: str, salt: str) -> "PbxCommands":
        """The same commands signed with another pair: a connection being checked before it is saved."""

    def users(self, *, probing: bool = False) -> tuple[OperatorEntry, ...]: ...

    def recording_link(self, recording_id: str, action: str = "play", *, probing: bool = False) -> str: ...

    def recording_file(self, recording_id: str) -> RecordingFile: ...

    def send_sms(self, message: SmsMessage) -> None:
        """Ask the PBX to send an SMS; its outcome comes later as an `SmsReport`. PbxWrongRequest: refused
        (never to be sent again as it is); PbxUnavailable: not now."""


@dataclass(frozen=True)
class GuardState:
    """What the PBX's command API told every process to respect: blocked until a time (it refused our
    credentials), and when it last answered a wrong request."""

    blocked_until: datetime | None
    strike_at: datetime | None

    def blocked(self, now: datetime) -> bool:
        return self.blocked_until is not None and self.blocked_until > now


@dataclass(frozen=True)
class PbxKit:
    """What a PBX declares about itself, as a target does (`connector.delivery.kit.TargetKit`): its name (the
    account row of its commands, its events' source), its settings, how its signed callbacks are parsed, and
    how its command API and its credentials in force are built."""

    name: str
    settings_type: type
    env_prefix: str
    validate: Callable[["Config"], None]
    parse: Callable[[str, str], "InboundMessage"]  # (callback kind, JSON text) -> message
    # (config, db) -> the credentials in force (environment or console); see the PBX's own module
    build_credentials: Callable[["Config", "Database"], object]
    # (config, db, *, session=None, credentials=None) -> PbxCommands
    build_commands: Callable[..., PbxCommands]
    # (session) -> GuardState: the block its command API keeps in the PBX's own account table
    guard_state: Callable[["Session"], GuardState]
