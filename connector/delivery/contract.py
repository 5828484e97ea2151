"""What a CRM adapter must do, and the errors it may raise.

Errors are split at this boundary: `TransientError` is retried with backoff;
`PermanentError` dead-letters the item with the reason; `AccountBlocked` pauses
every delivery to the account until an admin resumes it or a probe succeeds.
Batch methods return one `Outcome` per item, so one bad item fails alone:
- `Done`: the effect is in the target, sent now or found there by a look-up;
- `Superseded`: a newer job carries the change, so this one is stored done and has no effects;
- `SendAgain`: the item is fine, another item of its batch was refused: back at once, the try not counted;
- `Unmatched`: the CRM found no entity for the item (amoCRM: no contact or company has the phone);
- `Dead`: refused for good, with the target's reason (`Refused`: by the recipient's address, turned off);
- `TransientError`: retry later (rate limit, 5xx, timeout, or an outcome in doubt).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from connector.core.follow_ups import ReadTask

DOUBT_MARGIN = 300  # seconds before a doubtful send to search the CRM from (clock skew, slow answers)


class CrmError(Exception):
    """`status` and `body` are the CRM's answer (None when there was none: a timeout)."""

    def __init__(self, message: str, *, status: int | None = None, body: object = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.body = body


class TransientError(CrmError):
    """Retry later: rate limit, 5xx, timeout, connection failure."""

    def __init__(self, message: str, retry_after: float | None = None, maybe_applied: bool = True, *,
                 progress: dict | None = None, **answer):
        super().__init__(message, **answer)
        self.retry_after = retry_after
        # False only when the CRM surely did nothing (429): then no look-up is needed before resending.
        self.maybe_applied = maybe_applied
        # What this try achieved that the next one builds on (kept in the job's result), e.g. a call
        # Bitrix24 registered whose finish failed: the next try finishes that call, never a new one.
        self.progress = progress or {}


class RateLimited(TransientError):
    """Refused for the request rate alone: nothing was applied, and the job itself is fine, so it is
    sent again after `retry_after` (every worker holds back that long), not on the failure schedule."""

    def __init__(self, message: str, retry_after: float, **answer):
        super().__init__(message, retry_after=retry_after, maybe_applied=False, **answer)


class PermanentError(CrmError):
    """The CRM refused the request for good (e.g. 400 validation). `item_errors` maps
    an item's index in the batch to its own detail when the CRM names the culprits."""

    def __init__(self, message: str, item_errors: dict[int, str] | None = None, **answer):
        super().__init__(message, **answer)
        self.item_errors = item_errors or {}


class EntityNotFound(PermanentError):
    """The CRM found no entity for the request (amoCRM: a 400 with a top-level `errors` list,
    "Entity not found", naming no item). For a batch, which items it skipped is unknown."""


class UnexpectedAnswer(TransientError):
    """The target answered in a shape the connector does not know (`field` names what was missing or
    wrong). It may have applied the request, so the job is looked up before it is sent again, and it is
    retried on the schedule, then dead: a person sees the field in the job's error."""

    def __init__(self, where: str, field: str, **answer):
        super().__init__(f"{where}: unexpected answer, no usable {field!r}", maybe_applied=True, **answer)
        self.field = field


class AccountBlocked(CrmError):
    """402/403, a removed application, or authorization that cannot be restored: stop sending to this
    target until an admin resumes it or a probe succeeds.

    Met in the middle of a batch, the jobs before it may have been applied: `settled` holds the
    outcomes of the first jobs when the target knows them, and `maybe_applied` says whether the rest
    may have reached the target (then they are looked up before they are sent again)."""

    def __init__(self, message: str, *, settled: list | None = None, maybe_applied: bool = True, **answer):
        super().__init__(message, **answer)
        self.settled = settled or []
        self.maybe_applied = maybe_applied


@dataclass(frozen=True)
class CallItem:
    entry_id: str
    direction: str  # inbound, outbound
    phone: str
    duration: int
    started_at: int | None  # unix time
    score_text: str | None  # the call_result
    recording_link: str | None
    responsible_user_id: int | None
    answered: bool


@dataclass(frozen=True)
class ContactItem:
    phone: str
    name: str
    responsible_user_id: int | None


@dataclass(frozen=True)
class NoteItem:
    entity_type: str
    entity_id: int
    text: str
    responsible_user_id: int | None = None


@dataclass(frozen=True)
class TagItem:
    entity_type: str
    entity_id: int
    add: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()
    score_field: tuple[int, int] | None = None  # (field id, value)


@dataclass(frozen=True)
class TaskItem:
    """A follow-up task for a low score, on the call's entity."""

    entity_type: str
    entity_id: int
    text: str
    complete_till: int  # unix time; fixed per score, so a look-up before a resend can recognise it
    responsible_user_id: int | None = None


@dataclass(frozen=True)
class Done:
    """The effect is in the target. `details` is what the job's result keeps besides the entity
    (`call_id`, `file_id`, `task_id`, `looked_up`, `record_attached`...)."""

    entity_type: str | None = None
    entity_id: int | None = None
    details: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class NotDone:
    """An outcome that writes nothing for the job, with the reason a person reads (the kinds below)."""

    reason: str


class Superseded(NotDone):
    """A newer job carries this one's change: stored done, with no effects."""


class SendAgain(NotDone):
    """Not sent for a fault of its own (another item of the batch was refused): handed back at once,
    the try not counted."""


class Unmatched(NotDone):
    """The CRM found no entity for the item (amoCRM: no contact or company has the phone)."""


class Dead(NotDone):
    """Refused for good: dead at once with the reason; a replay revives it."""


class Refused(Dead):
    """Dead because the recipient's address refuses messages (a chat that blocked the bot): the target's
    `on_refused` turns that address off until a person links it again; a replay then sends it."""


# What became of one job's try. "Retry later, or in doubt" is a TransientError; a paused account is
# an AccountBlocked raised for the whole batch, never an item's outcome.
Outcome = Done | Superseded | SendAgain | Unmatched | Dead | TransientError


class CrmAdapter(Protocol):
    name: str
    max_batch: int

    def log_calls(self, items: list[CallItem]) -> list[Outcome]: ...

    def create_contacts(self, items: list[ContactItem]) -> list[Outcome]: ...

    def add_notes(self, items: list[NoteItem]) -> list[Outcome]: ...

    def update_tags(self, items: list[TagItem]) -> list[Outcome]: ...

    def add_tasks(self, items: list[TaskItem]) -> list[Outcome]: ...

    def find_entity_by_phone(self, phone: str) -> Done | None: ...

    def find_logged_calls(self, entry_ids: list[str], since: int) -> dict[str, Done]: ...

    def find_note(self, item: NoteItem, since: int) -> bool: ...

    def find_task(self, item: TaskItem) -> int | None:
        """The task's id when it is in the CRM already (a look-up before a resend), else None."""

    def tags_in_place(self, items: list[TagItem]) -> list[bool]:
        """For each tag change: is the entity already as it asks (tags added, removed, field set)?"""

    def probe(self) -> None: ...


class TaskReader(Protocol):
    """Reads a target's follow-up tasks back, through its own client and shared rate limiter (the follow-up loop,
    `connector.delivery.follow_ups`). `read_tasks` answers the tasks it found, by id: a task the CRM no longer has
    is left out. It raises TransientError (retry at the next round), PermanentError or AccountBlocked."""

    name: str
    read_batch: int  # task ids one read may ask for

    def read_tasks(self, task_ids: list[str]) -> dict[str, ReadTask]: ...


@dataclass(frozen=True)
class CrmUser:
    """A CRM's user, as the admin picks one to map a PBX extension to."""

    id: int
    name: str
    active: bool = True  # a deactivated user keeps its id, and may still be mapped
