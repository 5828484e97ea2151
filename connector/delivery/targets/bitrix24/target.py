"""Bitrix24 as a delivery target (a local application): each call is registered, finished with the
customer's vote and given its recording through `telephony.externalcall.*`; the exact score text goes
on the CRM entity as a timeline comment, with the user fields when set. Bitrix24 has no tags.

Jobs (outbox.JobKind):
- `b24_call`: `register` (EXTERNAL_CALL_ID = entry_id, SHOW=0, ADD_TO_CHAT=0), `finish` (DURATION,
  STATUS_CODE 200 when talked else 304, VOTE = the score on 1..5) and `attachRecord` (the connector's
  signed link, valid RECORD_LINK_DAYS, with FILENAME `<call>.mp3`: Bitrix24 downloads it inside the
  request and refuses a name without an audio extension), chained in one batch by `$result[...]`, so
  the recording goes to a finished call; due as amoCRM's call is (after the score, or the survey wait);
- `b24_record`: the recording of a call that went without it (its attach failed, the method's budget was
  spent, or the recording came later), attached alone; retried on the schedule, then dead with
  Bitrix24's reason, never "done" without the file;
- `b24_mark`: per score in force once the call is in: `crm.timeline.comment.add` with the score text
  and `crm.<entity>.update` of BITRIX24_SCORE_FIELD / BITRIX24_LOW_SCORE_FIELD;
- `b24_todo` (LOW_SCORE_TASK): one follow-up to-do per tagged score.

Exactly once, as the portal behaves (its module code: `register` dedupes only onto a call still open
whose start lies within 30 minutes; `finish` closes it, writing the statistics row): a call whose try
may have gone out is looked up in telephony statistics by EXTERNAL_CALL_ID first. Found: done. Proven
absent: sent again (a call registered and still open within its 30 minutes is met again by `register`;
one whose `finish` failed after its `register` went through is finished by the CALL_ID kept from that
try). Not provable (an error, or a statistics right that may not show this operator's calls: the same
look-up must show an earlier call of that operator, one we finished or any of their user's): it waits
in doubt with that reason. A missing "Call statistics - View" right pauses the target.
The user is BITRIX24_USER_MAP's, else the operator's extension as USER_PHONE_INNER, else (no operator,
or an extension no user has) BITRIX24_DEFAULT_USER_ID.
"""
from __future__ import annotations

import logging
import math
import re
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import select
from sqlalchemy.orm import Session

from connector.core import follow_ups
from connector.core.accounts import SharedRateLimiter
from connector.delivery import outbox
from connector.delivery.contract import AccountBlocked, DOUBT_MARGIN, Dead, Done, TransientError, Unmatched
from connector.delivery.targets.bitrix24.client import (MAX_BATCH, NAME, BatchAnswer, Bitrix24Api, CommandFailure, MethodHeld,
                                    command)
from connector.core.links import record_file_name, recording_link
from connector.core.models import Call, CrmRecord, DeliveryJob, JobStatus
from connector.core.policy import HighScores, Policy
from connector.delivery.outbox import Outcome, Work
from connector.delivery.targets.bitrix24.kinds import JobKind

log = logging.getLogger(__name__)

RECORD_LINK_DAYS = 7
COMMANDS_PER_CALL = 3  # register, finish, attachRecord
COMMANDS_PER_MARK = 2  # the comment, the fields
OWNER_TYPE_IDS = {"lead": 1, "deal": 2, "contact": 3, "company": 4}  # Bitrix24's CRM object type ids
ATTACH = "telephony.externalcall.attachrecord"
NO_USER = "USER_ID or USER_PHONE_INNER should be set"  # core vi_rest.php: neither names an active user
NOT_OPEN = "Call is not found"  # core helper.php finishExternalCall: the call is no longer open


def vote_for(score: int, policy: Policy) -> int:
    """The score on Bitrix24's 1..5 VOTE: its share of the scale, rounded up (1-10: ceil(score / 2);
    1-5: the score itself), never below 1."""
    low, high = policy.scale_min, policy.scale_max
    if high <= low:
        return 1
    share = (score - low) / (high - low)
    return max(1, min(5, math.ceil(share * 5) if share > 0 else 1))


@dataclass(frozen=True)
class Bitrix24Planning:
    survey_wait_seconds: int = 180
    low_score_task: bool = False
    name: str = NAME
    # A score at or above the threshold, unless the policy says otherwise: recorded, since VOTE feeds the
    # portal's own call ratings, which expect every score (ignoring 9 and 10 would drag them down).
    high_scores: HighScores = HighScores.RECORD

    def plan(self, session: Session, d: outbox.Delivery) -> None:
        call = d.call
        if call.summary_received_at is None or call.direction == "internal":
            return
        outbox.schedule_call(session, d, NAME, JobKind.B24_CALL, self.survey_wait_seconds, datetime.now(timezone.utc))
        if d.record.logged_at is None:
            return
        call_job = d.job(JobKind.B24_CALL)
        if call.recording_id and call_job is not None and call_job.status == JobStatus.DONE \
                and not (call_job.result or {}).get("record_attached"):
            outbox.add_job(session, d, NAME, JobKind.B24_RECORD, call.recording_id)
        score = outbox.written_score(d.score, self.high_scores)  # None for a high score it ignores
        if d.record.entity_id and score is not None and score.record:
            outbox.add_job(session, d, NAME, JobKind.B24_MARK, str(score.id), score=score)
            if self.low_score_task and score.tag:
                outbox.add_job(session, d, NAME, JobKind.B24_TODO, str(score.id), score=score)


@dataclass(frozen=True)
class Bitrix24Options:
    public_base_url: str
    secret_key: str
    create_crm: bool = False
    score_field: str = ""
    low_score_field: str = ""
    task_hours: int = 24
    task_template: str = "Перезвонить клиенту: оценка {score}"
    default_user_id: int = 0  # owns the calls that have no operator (a missed group call, IVR only)


@dataclass
class Bitrix24WorkNotes:
    """What `prepare` notes on one job for `deliver` and `on_done` (`Work.scratch`)."""

    user_known: bool = False  # the call has a Bitrix24 user (mapped, by extension, or the default one)
    control: dict | None = None  # a call in doubt: the statistics filter that proves the look-up sees its operator
    tag: str | None = None  # a mark's low-score tag, written to BITRIX24_LOW_SCORE_FIELD


def _digits(number: str | None) -> str:
    return re.sub(r"\D", "", number or "")


class Bitrix24Target:
    name = NAME
    max_batch = MAX_BATCH  # commands per request
    recording_kinds = (JobKind.B24_CALL, JobKind.B24_RECORD)  # attachRecord downloads the file in the request

    def batch_size(self, kind: str) -> int:
        per_job = {JobKind.B24_CALL: COMMANDS_PER_CALL, JobKind.B24_MARK: COMMANDS_PER_MARK}.get(kind, 1)
        return self.max_batch // per_job

    def __init__(self, api: Bitrix24Api, opts: Bitrix24Options, planning: Bitrix24Planning,
                 limiter: SharedRateLimiter | None = None, *, uninstall=None):
        self.api, self.opts, self.planning, self.limiter = api, opts, planning, limiter
        self.held: dict[str, float] = {}  # method -> unix time its spent budget is free again
        self.uninstall = uninstall  # connector.delivery.targets.bitrix24.install.UninstallHandler, or None

    def upkeep(self) -> None:
        """Between batches: register the ONAPPUNINSTALL handler of a fresh install (when due)."""
        if self.uninstall is not None:
            self.uninstall.run_due()

    def probe(self) -> None:
        """Resumes the target only when the application is back and may read telephony statistics
        (the look-up that keeps calls from being doubled)."""
        self.api.call("app.info")
        self.api.call("voximplant.statistic.get", {"FILTER[CALL_ID]": "probe"})

    # --- items ---------------------------------------------------------------------
    def _who(self, job: DeliveryJob, call: Call, user_map: dict) -> tuple[dict | None, int | None]:
        """The Bitrix24 user of the call: mapped, else by extension, else the default user."""
        extension = call.operator_extension or ""
        user_id = user_map.get(extension)
        default = self.opts.default_user_id or None
        if user_id:
            return {"USER_ID": user_id}, user_id
        if extension and not (job.result or {}).get("default_user"):
            return {"USER_PHONE_INNER": extension}, None
        if default:
            return {"USER_ID": default}, default
        return None, None

    def prepare(self, session: Session, claimed: list[tuple[DeliveryJob, outbox.Delivery, Work]], policy: Policy,
                user_map: dict) -> None:
        for job, d, w in claimed:
            call, score = d.call, outbox.written_score(d.score, self.planning.high_scores)
            who, user_id = self._who(job, call, user_map)
            w.responsible = (user_id, user_id is not None and user_id == user_map.get(call.operator_extension or ""))
            w.score_value = score.value if score else None
            w.scratch = notes = Bitrix24WorkNotes(user_known=who is not None)
            if job.kind == JobKind.B24_CALL:
                w.item = {
                    "register": {**(who or {}), "PHONE_NUMBER": _digits(call.customer_phone),
                                 "TYPE": 1 if call.direction == "outbound" else 2,
                                 "CALL_START_DATE": (call.created_at or call.first_seen_at).isoformat(),
                                 "LINE_NUMBER": call.line_number or "", "EXTERNAL_CALL_ID": call.entry_id,
                                 "CRM_CREATE": int(self.opts.create_crm), "SHOW": 0, "ADD_TO_CHAT": 0},
                    "finish": {**(who or {}), "DURATION": call.talk_seconds or 0,
                               "STATUS_CODE": 200 if call.talk_started_at else 304,
                               "VOTE": vote_for(score.value, policy) if score else 0, "ADD_TO_CHAT": 0},
                    "record": self._record(call) if call.recording_id else None,
                    "open_call_id": (job.result or {}).get("open_call_id"),
                    "default_user_fallback": bool(self.opts.default_user_id and "USER_PHONE_INNER" in (who or {}))}
                if w.in_doubt_since is not None:
                    control = self._control_call(session, call, user_id)
                    notes.control = {"FILTER[CALL_ID]": control} if control else \
                        {"FILTER[PORTAL_USER_ID]": user_id} if user_id else None
            elif job.kind == JobKind.B24_RECORD:
                call_job = d.job(JobKind.B24_CALL)
                w.item = {"CALL_ID": (call_job.result or {}).get("call_id") if call_job else None,
                          **self._record(call)}
            elif job.kind == JobKind.B24_TODO:
                entity_type = (d.record.entity_type or "").lower()
                due = (d.score.received_at if d.score else job.created_at) + timedelta(hours=self.opts.task_hours)
                w.item = {"ownerTypeId": OWNER_TYPE_IDS.get(entity_type, 0), "ownerId": d.record.entity_id,
                          "deadline": due.astimezone(timezone.utc).replace(microsecond=0).isoformat(),
                          "description": self.opts.task_template.format(score=w.score_value),
                          **({"responsibleId": user_id} if user_id else {})}
            else:
                entity_type, entity_id = (d.record.entity_type or "").lower(), d.record.entity_id
                fields = {}
                if self.opts.score_field:
                    fields[self.opts.score_field] = w.score_value
                if self.opts.low_score_field:
                    fields[self.opts.low_score_field] = (score.tag or "") if score else ""
                notes.tag = score.tag if score else None
                w.item = {"entity_type": entity_type, "entity_id": entity_id,
                          "comment": policy.score_text(w.score_value) if w.score_value is not None else "",
                          "fields": fields}

    def _record(self, call: Call) -> dict:
        link = recording_link(self.opts.public_base_url, self.opts.secret_key, call.entry_id,
                              ttl=RECORD_LINK_DAYS * 86400)
        # FILENAME: Bitrix24 names the file by it and accepts mp3, flac or wav only
        return {"RECORD_URL": link, "FILENAME": record_file_name(call.entry_id)}

    @staticmethod
    def _control_call(session: Session, call: Call, user_id: int | None) -> str | None:
        """A call of the same operator that Bitrix24 finished for us: if statistics show it, they would
        show this one too (a narrowed right hides a user's calls silently, core security/helper.php
        getAllowedUserIds). Without one, any statistics row of the operator's user proves the same."""
        query = (select(DeliveryJob.result).join(Call, Call.id == DeliveryJob.call_id)
                 .where(DeliveryJob.crm == NAME, DeliveryJob.kind == JobKind.B24_CALL,
                        DeliveryJob.status == JobStatus.DONE, DeliveryJob.call_id != call.id)
                 .order_by(DeliveryJob.id.desc()).limit(1))
        if user_id is not None:
            query = query.join(CrmRecord, (CrmRecord.call_id == Call.id) & (CrmRecord.crm == NAME)) \
                .where(CrmRecord.responsible_user_id == user_id)
        else:
            query = query.where(Call.operator_extension == call.operator_extension)
        result = session.scalars(query).first()
        return (result or {}).get("call_id")

    # --- sending ---------------------------------------------------------------------
    def deliver(self, kind: str, work: list[Work]) -> list[Outcome]:
        try:
            if kind == JobKind.B24_CALL:
                return self._deliver_calls(work)
            if kind == JobKind.B24_RECORD:
                return self._deliver_records(work)
            if kind == JobKind.B24_TODO:
                return self._deliver_todos(work)
            return self._deliver_marks(work)
        except MethodHeld as exc:  # only this kind's jobs wait for the reset; the others go on
            return [exc] * len(work)
        except TransientError as exc:
            if exc.retry_after and self.limiter:
                self.limiter.hold(exc.retry_after)
            return [exc] * len(work)

    def _held(self, method: str) -> float:
        """Seconds until a method whose budget is spent is free again (0: free)."""
        return max(0.0, self.held.get(method, 0.0) - time.time())

    def _failure(self, step: str, method: str, failure: CommandFailure) -> Outcome:
        message = f"{step}: {failure.code} {failure.description}".strip()
        if failure.code == "OPERATION_TIME_LIMIT":  # spent until operating_reset_at, up to ten minutes
            self.held[method] = self.api.held_until(method)
            return TransientError(message, retry_after=max(1.0, self._held(method)), maybe_applied=False)
        if failure.transient:
            return TransientError(message, maybe_applied=False)
        return Dead(message)

    def _deliver_calls(self, work: list[Work]) -> list[Outcome]:
        outcomes: dict[int, Outcome] = {}
        for w in work:
            if not w.scratch.user_known:
                outcomes[w.job_id] = Dead(
                    "the call has no operator, and BITRIX24_DEFAULT_USER_ID is not set: Bitrix24 needs a user "
                    "for every call; set it, then replay")
        doubtful = [w for w in work if w.in_doubt_since is not None and w.job_id not in outcomes]
        if doubtful:
            outcomes.update(self._look_up_calls(doubtful))
        to_send = [w for w in work if w.job_id not in outcomes]
        held = self._held("telephony.externalcall.finish") or self._held("telephony.externalcall.register")
        if to_send and held:
            return [outcomes.get(w.job_id) or TransientError("the call methods' time budget is spent",
                                                             retry_after=held, maybe_applied=False) for w in work]
        if to_send:
            attach = not self._held(ATTACH)
            commands = {}
            for i, w in enumerate(to_send):
                open_call = w.item["open_call_id"]
                call_ref = open_call or f"$result[r{i}][CALL_ID]"
                if not open_call:
                    commands[f"r{i}"] = command("telephony.externalcall.register", w.item["register"])
                commands[f"f{i}"] = command("telephony.externalcall.finish", {"CALL_ID": call_ref, **w.item["finish"]})
                if w.item["record"] and attach:
                    commands[f"a{i}"] = command(ATTACH, {"CALL_ID": call_ref, **w.item["record"]})
            answer = self.api.batch(commands)
            for i, w in enumerate(to_send):
                outcomes[w.job_id] = self._call_outcome(answer, i, w)
        return [outcomes[w.job_id] for w in work]

    def _call_outcome(self, answer: BatchAnswer, i: int, w: Work) -> Outcome:
        if f"r{i}" in answer.failures:
            failure = answer.failures[f"r{i}"]
            if NO_USER in failure.description and w.item["default_user_fallback"]:
                return TransientError(f"register: no Bitrix24 user has the extension; next try as "
                                      f"BITRIX24_DEFAULT_USER_ID ({failure.description})", maybe_applied=False,
                                      progress={"default_user": True})
            return self._failure("register", "telephony.externalcall.register", failure)
        registered = answer.results.get(f"r{i}") or {}
        call_id = w.item["open_call_id"] or registered.get("CALL_ID")
        if f"f{i}" in answer.failures:
            failure = answer.failures[f"f{i}"]
            if w.item["open_call_id"] and NOT_OPEN in failure.description:  # finished by a try whose answer was lost?
                return TransientError(f"finish: {failure.description}: looking the call up in statistics",
                                      maybe_applied=True, progress={"open_call_id": None})
            outcome = self._failure("finish", "telephony.externalcall.finish", failure)
            if isinstance(outcome, TransientError):  # the call is open: the next try finishes this one
                outcome.progress = {"open_call_id": call_id}
            return outcome
        finished = answer.results.get(f"f{i}") or {}
        details = {"call_id": finished.get("CALL_ID") or call_id, "record_attached": False}
        if f"a{i}" in answer.failures:  # the call and its vote are in; its b24_record job tries again
            failure = answer.failures[f"a{i}"]
            if failure.code == "OPERATION_TIME_LIMIT":
                self.held[ATTACH] = self.api.held_until(ATTACH)
            details["record_error"] = f"{failure.code} {failure.description}".strip()
        elif f"a{i}" in answer.results:
            details["record_attached"] = True
        return Done(finished.get("CRM_ENTITY_TYPE") or None, int(finished.get("CRM_ENTITY_ID") or 0) or None, details)

    def _look_up_calls(self, doubtful: list[Work]) -> dict[int, Outcome]:
        """Calls whose earlier try may have gone out, looked up in telephony statistics by EXTERNAL_CALL_ID
        (one row each once finished). Found: done. Absent, and the look-up provably sees this operator's
        calls (an earlier call of theirs is found): left out, so they are sent. Anything else waits."""
        commands = {}
        for i, w in enumerate(doubtful):
            commands[f"s{i}"] = command("voximplant.statistic.get", {
                "FILTER[EXTERNAL_CALL_ID]": w.entry_id, "SORT": "ID", "ORDER": "DESC"})
            if w.scratch.control:
                commands[f"c{i}"] = command("voximplant.statistic.get", w.scratch.control)
        answer = self.api.batch(commands)
        settled: dict[int, Outcome] = {}
        for i, w in enumerate(doubtful):
            failure = answer.failures.get(f"s{i}") or answer.failures.get(f"c{i}")
            if failure is not None and failure.code == "ACCESS_DENIED":
                raise AccountBlocked(
                    "Bitrix24 denies the application the \"Call statistics - View\" right (ACCESS_DENIED): calls in "
                    "doubt cannot be checked, and sending them again could double them; grant the right to the "
                    "application's user for all users' calls, then resume", maybe_applied=True)
            if failure is not None:
                settled[w.job_id] = TransientError(f"look-up in telephony statistics failed: {failure.code} "
                                                   f"{failure.description}; the call stays in doubt")
                continue
            rows = answer.results.get(f"s{i}") or []
            if rows:
                row = rows[0]
                if len(rows) > 1:
                    log.warning("bitrix24: call %s is in telephony statistics %d times", w.entry_id, len(rows))
                settled[w.job_id] = Done(
                    row.get("CRM_ENTITY_TYPE") or None, int(row.get("CRM_ENTITY_ID") or 0) or None,
                    {"call_id": row.get("CALL_ID"), "record_attached": bool(row.get("RECORD_FILE_ID")),
                     "looked_up": True})
            elif not answer.results.get(f"c{i}"):
                why = ("no call of this operator is known to check the statistics right against"
                       if not w.scratch.control else
                       "statistics show no call of this operator: the application's user may see only some "
                       "users' calls (grant \"Call statistics - View\" for all)")
                settled[w.job_id] = TransientError(f"cannot prove the call absent from Bitrix24: {why}; it stays "
                                                   "in doubt")
        if settled:
            log.info("bitrix24: %d call(s) in doubt settled or kept waiting without sending them again", len(settled))
        return settled

    def _deliver_records(self, work: list[Work]) -> list[Outcome]:
        held = self._held(ATTACH)
        if held:
            return [TransientError("attachRecord's time budget is spent", retry_after=held, maybe_applied=False)
                    ] * len(work)
        attached = self._attached([w for w in work if w.in_doubt_since is not None and w.item["CALL_ID"]])
        commands = {f"a{i}": command(ATTACH, w.item) for i, w in enumerate(work)
                    if w.item["CALL_ID"] and w.item["CALL_ID"] not in attached}
        answer = self.api.batch(commands) if commands else BatchAnswer({}, {}, {})
        outcomes: list[Outcome] = []
        for i, w in enumerate(work):
            if w.item["CALL_ID"] in attached:
                outcomes.append(Done(details={"file_id": attached[w.item["CALL_ID"]], "looked_up": True}))
            elif not w.item["CALL_ID"]:
                outcomes.append(Dead("the call's Bitrix24 CALL_ID is unknown"))
            elif f"a{i}" in answer.failures:  # refused or failed: retried on the schedule, then dead with the reason
                failure = answer.failures[f"a{i}"]
                outcome = self._failure("attachRecord", ATTACH, failure)
                outcomes.append(outcome if isinstance(outcome, TransientError) else
                                TransientError(outcome.reason, maybe_applied=False))
            else:
                outcomes.append(Done(details={"file_id": (answer.results.get(f"a{i}") or {}).get("FILE_ID")}))
        return outcomes

    def _attached(self, doubtful: list[Work]) -> dict[str, int]:
        """CALL_ID -> file of the calls whose statistics row shows a recording (a second attach would
        replace the file: harmless, but not exactly once)."""
        if not doubtful:
            return {}
        answer = self.api.batch({f"s{i}": command("voximplant.statistic.get", {"FILTER[CALL_ID]": w.item["CALL_ID"]})
                                 for i, w in enumerate(doubtful)})
        found = {}
        for i, w in enumerate(doubtful):
            for row in answer.results.get(f"s{i}") or []:
                if row.get("RECORD_FILE_ID"):
                    found[w.item["CALL_ID"]] = row["RECORD_FILE_ID"]
        return found

    def _deliver_marks(self, work: list[Work]) -> list[Outcome]:
        outcomes: dict[int, Outcome] = {}
        commands = {}
        for i, w in enumerate(work):
            item = w.item
            # A comment in doubt that is already there is not added again; the fields are idempotent.
            if item["comment"] and not (w.in_doubt_since is not None and self._comment_exists(item, w.in_doubt_since)):
                commands[f"c{i}"] = command("crm.timeline.comment.add", {
                    "fields[ENTITY_TYPE]": item["entity_type"], "fields[ENTITY_ID]": item["entity_id"],
                    "fields[COMMENT]": item["comment"]})
            if item["fields"]:
                commands[f"u{i}"] = command(f"crm.{item['entity_type']}.update", {
                    "id": item["entity_id"], **{f"fields[{k}]": "" if v is None else v
                                                for k, v in item["fields"].items()}})
        answer = self.api.batch(commands) if commands else BatchAnswer({}, {}, {})
        for i, w in enumerate(work):
            key = f"c{i}" if f"c{i}" in answer.failures else f"u{i}"
            failure = answer.failures.get(key)
            method = "crm.timeline.comment.add" if key.startswith("c") else f"crm.{w.item['entity_type']}.update"
            outcomes[w.job_id] = self._failure("mark", method, failure) if failure else \
                Done(w.item["entity_type"].upper(), w.item["entity_id"])
        return [outcomes[w.job_id] for w in work]

    def _deliver_todos(self, work: list[Work]) -> list[Outcome]:
        """One to-do per tagged score; one in doubt is looked up among the entity's activities first."""
        outcomes: dict[int, Outcome] = {}
        commands = {}
        for i, w in enumerate(work):
            found = self._todo_found(w.item) if w.in_doubt_since is not None else None
            if found is not None:
                outcomes[w.job_id] = Done(details={"activity_id": found, "looked_up": True})
            else:
                commands[f"t{i}"] = command("crm.activity.todo.add", w.item)
        answer = self.api.batch(commands) if commands else BatchAnswer({}, {}, {})
        for i, w in enumerate(work):
            if w.job_id not in outcomes:
                failure = answer.failures.get(f"t{i}")
                outcomes[w.job_id] = self._failure("to-do", "crm.activity.todo.add", failure) if failure else \
                    Done(details={"activity_id": (answer.results.get(f"t{i}") or {}).get("id")})
        return [outcomes[w.job_id] for w in work]

    def _todo_found(self, item: dict) -> int | None:
        """The id of this to-do if the entity has it already: its to-dos, newest first, page after page until
        this one is met (activities list oldest first by default, so one page of a busy entity would miss it)."""
        rows = self.api.rows("crm.activity.list", {
            "filter[OWNER_TYPE_ID]": item["ownerTypeId"], "filter[OWNER_ID]": item["ownerId"],
            "filter[PROVIDER_ID]": "CRM_TODO", "order[ID]": "DESC"})
        return next((int(r.get("ID") or 0) or None for r in rows if r.get("DESCRIPTION") == item["description"]),
                    None)

    def _comment_exists(self, item: dict, since: datetime) -> bool:
        """The entity's timeline comments, newest first, until this one or those older than the doubt."""
        oldest = since - timedelta(seconds=DOUBT_MARGIN)
        for row in self.api.rows("crm.timeline.comment.list", {
                "filter[ENTITY_TYPE]": item["entity_type"], "filter[ENTITY_ID]": item["entity_id"], "order[ID]": "DESC"}):
            if row.get("COMMENT") == item["comment"]:
                return True
            created = _parsed(row.get("CREATED"))
            if created is not None and created < oldest:
                return False
        return False

    # --- effects of outcomes -------------------------------------------------------
    def on_done(self, session: Session, job: DeliveryJob, w: Work, result: Done, now: datetime,
                d: outbox.Delivery) -> None:
        record = d.record
        if job.kind == JobKind.B24_CALL:
            record.logged_at = now
            record.entity_type, record.entity_id = result.entity_type, result.entity_id
            record.responsible_user_id, record.responsible_mapped = w.responsible
        elif job.kind == JobKind.B24_MARK:
            record.written_score, record.applied_tag = w.score_value, w.scratch.tag
        elif job.kind == JobKind.B24_TODO:  # the call's follow-up tracks the to-do, due when it is
            follow_ups.link_task(session, job.call_id, NAME, result.details.get("activity_id"),
                                 _parsed(w.item["deadline"]))
        self.planning.plan(session, d)

    def on_unmatched(self, session: Session, job: DeliveryJob, result: Unmatched, now: datetime,
                     d: outbox.Delivery) -> None:
        job.status, job.last_error = JobStatus.DEAD, result.reason  # Bitrix24 answers no "unmatched"


class TodoReader:
    """Reads the follow-up to-dos back (`contract.TaskReader`): `crm.activity.list` with `filter[@ID]` (the `@`
    prefix is IN, an array: docs crm-activity-list.md), 50 a page. A to-do answers `COMPLETED` "Y"/"N",
    `DEADLINE` and `LAST_UPDATED` (docs crm-activity-fields.md); it has no result text (its RESULT_* fields are
    numbers of other activity kinds), so the CRM's result is empty and LAST_UPDATED stands for the completion
    time. A to-do deleted in the portal is not in the answer."""

    name = NAME
    read_batch = 50  # one page of the list

    def __init__(self, api: Bitrix24Api):
        self.api = api

    def read_tasks(self, task_ids: list[str]) -> dict[str, follow_ups.ReadTask]:
        found = {}
        for start in range(0, len(task_ids), self.read_batch):
            wanted = task_ids[start:start + self.read_batch]
            params = {f"filter[@ID][{i}]": task_id for i, task_id in enumerate(wanted)}
            params.update({f"select[{i}]": name for i, name in
                           enumerate(("ID", "COMPLETED", "DEADLINE", "LAST_UPDATED"))})
            for row in self.api.rows("crm.activity.list", params):
                task_id = str(row.get("ID") or "")
                if task_id not in wanted:
                    continue  # a filter the portal ignored would list others: never mistaken for ours
                completed = row.get("COMPLETED") == "Y"
                found[task_id] = follow_ups.ReadTask(task_id, completed, None,
                                                     _parsed(row.get("LAST_UPDATED")) if completed else None,
                                                     _parsed(row.get("DEADLINE")))
        return found


def _parsed(value: object) -> datetime | None:
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
