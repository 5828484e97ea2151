"""Bitrix24 as a delivery target (a local application): each call is registered, finished with the
customer's vote and given its recording link through `telephony.externalcall.*`; the exact score text
goes on the CRM entity as a timeline comment, with the user fields when set. Bitrix24 has no tags.

Jobs (outbox.JobKind):
- `b24_call`: `register` (EXTERNAL_CALL_ID = entry_id, SHOW=0, ADD_TO_CHAT=0), `finish` (DURATION,
  STATUS_CODE 200 when talked else 304, VOTE = the score on 1..5) and `attachRecord` (RECORD_URL = the
  connector's signed link, valid RECORD_LINK_DAYS: Bitrix24 downloads it itself), chained in one batch
  by `$result[...]`; due as amoCRM's call is (after the score, or the survey wait);
- `b24_mark`: per score in force once the call is in: `crm.timeline.comment.add` with the score text
  and `crm.<entity>.update` of BITRIX24_SCORE_FIELD / BITRIX24_LOW_SCORE_FIELD.

Exactly once: `register` returns the same call for 30 minutes, so a call in doubt (a crash or a lost
answer) is registered again and looked up with `voximplant.statistic.get` before `finish` is sent; one in
doubt for longer is dead with the reason instead of risking a second call. A comment in doubt is looked
up on the entity. The user is BITRIX24_USER_MAP's, else the operator's extension as USER_PHONE_INNER.
"""
from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy.orm import Session

from connector import outbox
from connector.accounts import SharedRateLimiter
from connector.crm import ItemResult, TransientError
from connector.crm.bitrix24 import MAX_BATCH, NAME, BatchAnswer, Bitrix24Api, CommandFailure, MethodHeld, command
from connector.links import recording_link
from connector.models import DeliveryJob, JobStatus
from connector.outbox import JobKind, Outcome, Work
from connector.threshold import HighScores, Policy

log = logging.getLogger(__name__)

REGISTER_WINDOW = timedelta(minutes=25)  # Bitrix24 dedupes register for 30 min; keep a margin
RECORD_LINK_DAYS = 7
METHOD_BUDGET_WAIT = 60.0  # seconds: OPERATION_TIME_LIMIT counts over one-minute buckets
COMMANDS_PER_CALL = 3  # register, finish, attachRecord
COMMANDS_PER_MARK = 2  # the comment, the fields
OWNER_TYPE_IDS = {"lead": 1, "deal": 2, "contact": 3, "company": 4}  # Bitrix24's CRM object type ids


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
        score = outbox.written_score(d.score, self.high_scores)  # None for a high score it ignores
        if d.record.logged_at is not None and d.record.entity_id and score is not None and score.record:
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


def _digits(number: str | None) -> str:
    return re.sub(r"\D", "", number or "")


class Bitrix24Target:
    name = NAME
    max_batch = MAX_BATCH  # commands per request

    def batch_size(self, kind: str) -> int:
        per_job = {JobKind.B24_CALL: COMMANDS_PER_CALL, JobKind.B24_MARK: COMMANDS_PER_MARK}.get(kind, 1)
        return self.max_batch // per_job

    def __init__(self, api: Bitrix24Api, opts: Bitrix24Options, planning: Bitrix24Planning,
                 limiter: SharedRateLimiter | None = None):
        self.api, self.opts, self.planning, self.limiter = api, opts, planning, limiter

    def probe(self) -> None:
        self.api.call("app.info")

    # --- items ---------------------------------------------------------------------
    def prepare(self, session: Session, claimed: list[tuple[DeliveryJob, outbox.Delivery, Work]], policy: Policy,
                user_map: dict) -> None:
        for job, d, w in claimed:
            call, score = d.call, outbox.written_score(d.score, self.planning.high_scores)
            extension = call.operator_extension or ""
            user_id = user_map.get(extension)
            who = {"USER_ID": user_id} if user_id else {"USER_PHONE_INNER": extension}
            w.responsible = (user_id, user_id is not None)
            w.score_value = score.value if score else None
            if job.kind == JobKind.B24_CALL:
                link = recording_link(self.opts.public_base_url, self.opts.secret_key, call.entry_id,
                                      ttl=RECORD_LINK_DAYS * 86400) if call.recording_id else None
                w.item = {
                    "register": {**who, "PHONE_NUMBER": _digits(call.customer_phone),
                                 "TYPE": 1 if call.direction == "outbound" else 2,
                                 "CALL_START_DATE": (call.created_at or call.first_seen_at).isoformat(),
                                 "LINE_NUMBER": call.line_number or "", "EXTERNAL_CALL_ID": call.entry_id,
                                 "CRM_CREATE": int(self.opts.create_crm), "SHOW": 0, "ADD_TO_CHAT": 0},
                    "finish": {**who, "DURATION": call.talk_seconds or 0,
                               "STATUS_CODE": 200 if call.talk_started_at else 304,
                               "VOTE": vote_for(score.value, policy) if score else 0, "ADD_TO_CHAT": 0},
                    "record_url": link}
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
                w.extra["tag"] = score.tag if score else None
                w.item = {"entity_type": entity_type, "entity_id": entity_id,
                          "comment": policy.score_text(w.score_value) if w.score_value is not None else "",
                          "fields": fields}

    # --- sending ---------------------------------------------------------------------
    def deliver(self, kind: str, work: list[Work]) -> list[Outcome]:
        try:
            if kind == JobKind.B24_CALL:
                return self._deliver_calls(work)
            if kind == JobKind.B24_TODO:
                return self._deliver_todos(work)
            return self._deliver_marks(work)
        except MethodHeld as exc:  # only this kind's jobs wait for the reset; the others go on
            return [exc] * len(work)
        except TransientError as exc:
            if exc.retry_after and self.limiter:
                self.limiter.hold(exc.retry_after)
            return [exc] * len(work)

    @staticmethod
    def _failure(step: str, failure: CommandFailure) -> Outcome:
        message = f"{step}: {failure.code} {failure.description}".strip()
        if failure.code == "OPERATION_TIME_LIMIT":  # this method's budget: wait for its one-minute bucket
            return TransientError(message, retry_after=METHOD_BUDGET_WAIT, maybe_applied=False)
        if failure.transient:
            return TransientError(message, maybe_applied=False)
        return ItemResult(False, error=message)

    def _deliver_calls(self, work: list[Work]) -> list[Outcome]:
        outcomes: dict[int, Outcome] = {}
        now = datetime.now(timezone.utc)
        doubtful = [w for w in work if w.in_doubt_since is not None]
        if doubtful:
            outcomes.update(self._settle_calls(doubtful, now))
        fresh = [w for w in work if w.job_id not in outcomes]
        if fresh:
            commands = {}
            for i, w in enumerate(fresh):
                commands[f"r{i}"] = command("telephony.externalcall.register", w.item["register"])
                commands[f"f{i}"] = command("telephony.externalcall.finish",
                                            {"CALL_ID": f"$result[r{i}][CALL_ID]", **w.item["finish"]})
                if w.item["record_url"]:
                    commands[f"a{i}"] = command("telephony.externalcall.attachRecord",
                                                {"CALL_ID": f"$result[r{i}][CALL_ID]",
                                                 "RECORD_URL": w.item["record_url"]})
            answer = self.api.batch(commands)
            for i, w in enumerate(fresh):
                outcomes[w.job_id] = self._call_outcome(answer, i)
        return [outcomes[w.job_id] for w in work]

    def _call_outcome(self, answer: BatchAnswer, i: int) -> Outcome:
        if f"r{i}" in answer.failures:
            return self._failure("register", answer.failures[f"r{i}"])
        if f"f{i}" in answer.failures:
            return self._failure("finish", answer.failures[f"f{i}"])
        finished = answer.results.get(f"f{i}") or {}
        extra = {"call_id": finished.get("CALL_ID")}
        if f"a{i}" in answer.failures:  # the call and its vote are in; the recording can be attached by hand
            extra["record_error"] = f"{answer.failures[f'a{i}'].code} {answer.failures[f'a{i}'].description}"
            log.warning("bitrix24: recording not attached to %s: %s", finished.get("CALL_ID"), extra["record_error"])
        return ItemResult(True, finished.get("CRM_ENTITY_TYPE") or None, int(finished.get("CRM_ENTITY_ID") or 0)
                          or None, extra=extra)

    def _settle_calls(self, doubtful: list[Work], now: datetime) -> dict[int, Outcome]:
        """Calls whose earlier try may have gone out: too old to register again safely is dead; the rest
        are registered again (the same call, within Bitrix24's 30 minutes) and looked up: a finished one
        is done, an unfinished one is sent as new."""
        settled: dict[int, Outcome] = {}
        recent = []
        for w in doubtful:
            if now - w.in_doubt_since > REGISTER_WINDOW:
                settled[w.job_id] = ItemResult(False, error=(
                    "in doubt for longer than Bitrix24's 30-minute register window: check the call in "
                    "Bitrix24 (telephony statistics), then replay if it is missing"))
            else:
                recent.append(w)
        if not recent:
            return settled
        commands = {}
        for i, w in enumerate(recent):
            commands[f"r{i}"] = command("telephony.externalcall.register", w.item["register"])
            commands[f"s{i}"] = command("voximplant.statistic.get", {"FILTER[CALL_ID]": f"$result[r{i}][CALL_ID]"})
        answer = self.api.batch(commands)
        for i, w in enumerate(recent):
            rows = answer.results.get(f"s{i}")
            if f"r{i}" not in answer.failures and rows:
                registered = answer.results.get(f"r{i}") or {}
                settled[w.job_id] = ItemResult(True, registered.get("CRM_ENTITY_TYPE") or None,
                                               int(registered.get("CRM_ENTITY_ID") or 0) or None,
                                               extra={"call_id": registered.get("CALL_ID"), "looked_up": True})
        if settled:
            log.info("bitrix24: %d call(s) in doubt settled without sending them again", len(settled))
        return settled

    def _deliver_marks(self, work: list[Work]) -> list[Outcome]:
        outcomes: dict[int, Outcome] = {}
        commands = {}
        for i, w in enumerate(work):
            item = w.item
            # A comment in doubt that is already there is not added again; the fields are idempotent.
            if item["comment"] and not (w.in_doubt_since is not None and self._comment_exists(item)):
                commands[f"c{i}"] = command("crm.timeline.comment.add", {
                    "fields[ENTITY_TYPE]": item["entity_type"], "fields[ENTITY_ID]": item["entity_id"],
                    "fields[COMMENT]": item["comment"]})
            if item["fields"]:
                commands[f"u{i}"] = command(f"crm.{item['entity_type']}.update", {
                    "id": item["entity_id"], **{f"fields[{k}]": "" if v is None else v
                                                for k, v in item["fields"].items()}})
        answer = self.api.batch(commands) if commands else BatchAnswer({}, {}, {})
        for i, w in enumerate(work):
            failure = answer.failures.get(f"c{i}") or answer.failures.get(f"u{i}")
            outcomes[w.job_id] = self._failure("mark", failure) if failure else \
                ItemResult(True, w.item["entity_type"].upper(), w.item["entity_id"])
        return [outcomes[w.job_id] for w in work]

    def _deliver_todos(self, work: list[Work]) -> list[Outcome]:
        """One to-do per tagged score; one in doubt is looked up among the entity's activities first."""
        outcomes: dict[int, Outcome] = {}
        commands = {}
        for i, w in enumerate(work):
            if w.in_doubt_since is not None and self._todo_exists(w.item):
                outcomes[w.job_id] = ItemResult(True, extra={"looked_up": True})
            else:
                commands[f"t{i}"] = command("crm.activity.todo.add", w.item)
        answer = self.api.batch(commands) if commands else BatchAnswer({}, {}, {})
        for i, w in enumerate(work):
            if w.job_id not in outcomes:
                failure = answer.failures.get(f"t{i}")
                outcomes[w.job_id] = self._failure("to-do", failure) if failure else \
                    ItemResult(True, extra={"activity_id": (answer.results.get(f"t{i}") or {}).get("id")})
        return [outcomes[w.job_id] for w in work]

    def _todo_exists(self, item: dict) -> bool:
        rows = self.api.call("crm.activity.list", {"filter[OWNER_TYPE_ID]": item["ownerTypeId"],
                                                   "filter[OWNER_ID]": item["ownerId"]})
        return any(r.get("DESCRIPTION") == item["description"] for r in rows or [])

    def _comment_exists(self, item: dict) -> bool:
        rows = self.api.call("crm.timeline.comment.list", {"filter[ENTITY_TYPE]": item["entity_type"],
                                                           "filter[ENTITY_ID]": item["entity_id"]})
        return any(r.get("COMMENT") == item["comment"] for r in rows or [])

    # --- effects of outcomes -------------------------------------------------------
    def on_done(self, session: Session, job: DeliveryJob, w: Work, result: ItemResult, now: datetime,
                d: outbox.Delivery) -> None:
        record = d.record
        if job.kind == JobKind.B24_CALL:
            record.logged_at = now
            record.entity_type, record.entity_id = result.entity_type, result.entity_id
            record.responsible_user_id, record.responsible_mapped = w.responsible
        elif job.kind == JobKind.B24_MARK:
            record.written_score, record.applied_tag = w.score_value, w.extra.get("tag")
        self.planning.plan(session, d)

    def on_unmatched(self, session: Session, job: DeliveryJob, result: ItemResult, now: datetime,
                     d: outbox.Delivery) -> None:
        job.status, job.last_error = JobStatus.DEAD, result.error  # Bitrix24 answers no "unmatched"
