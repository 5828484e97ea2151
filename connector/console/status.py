"""The state of each component, for `/healthz` (states only) and `GET /api/v1/status` (details)."""
from __future__ import annotations

import enum
from datetime import datetime, timedelta, timezone
from typing import Callable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from connector.core.accounts import account_row
from connector.core.models import (DeliveryJob, FollowUp, FollowUpStatus, InboundEvent, JobStatus, PbxScan,
                                   ReportSend, SendStatus, TaskState)
from connector.inbound import directory
from connector.inbound.pbx import GuardState

FAILING_FOR = timedelta(minutes=5)  # a CRM failing this long makes the connector degraded
LAGGING_FOR = timedelta(seconds=60)  # an event waiting this long to be applied: the worker lags or is down


def _age(moment: datetime | None, now: datetime) -> float | None:
    return round((now - moment).total_seconds(), 1) if moment else None


class State(enum.StrEnum):
    """A component's state (`/healthz`, `GET /api/v1/status`, the settings page)."""

    OK = "ok"
    NONE = "none"  # no CRM target is configured
    LAGGING = "lagging"  # the inbox: an event has waited to be applied longer than LAGGING_FOR
    BLOCKED = "blocked"  # the PBX's API blocked the account for a while
    SCAN_FAILING = "scan_failing"  # the PBX: a scan of its call statistics fails
    FAILING = "failing"  # a target: deliveries have failed for longer than FAILING_FOR
    PAUSED = "paused"  # a target: nothing is sent until a probe or an admin resumes it


_SEVERITY = (State.OK, State.FAILING, State.PAUSED)


def _target_state(session: Session, crm: str, now: datetime) -> dict:
    crm_state: dict = {"name": crm, "state": State.OK}
    row = account_row(session, crm)
    queues = session.execute(
        select(DeliveryJob.kind, func.count(), func.min(DeliveryJob.created_at), func.min(DeliveryJob.first_failed_at))
        .where(DeliveryJob.crm == crm, DeliveryJob.status == JobStatus.PENDING).group_by(DeliveryJob.kind)).all()
    failing_since = min((first for *_, first in queues if first), default=None)
    crm_state["outbox"] = {kind: {"pending": count, "oldest_seconds": _age(created, now)}
                           for kind, count, created, _ in queues}
    crm_state["failing_since"] = failing_since.isoformat() if failing_since else None
    if row.paused:
        crm_state.update(state=State.PAUSED, reason=row.paused_reason,
                         since=row.paused_at.isoformat() if row.paused_at else None)
    elif failing_since and now - failing_since > FAILING_FOR:
        crm_state["state"] = State.FAILING
    return crm_state


def _follow_up_reads(session: Session, crm: str) -> dict:
    """The follow-ups whose task is read back from this target: how many, how many of them the last read failed
    for, and the newest such error (`connector.delivery.follow_ups`). A failing read does not degrade the
    connector (deliveries go on), but it is never silent."""
    tracked, failing = session.execute(
        select(func.count(), func.count(FollowUp.last_error))
        .where(FollowUp.target == crm, FollowUp.status == FollowUpStatus.OPEN,
               FollowUp.task_state == TaskState.OPEN)).one()
    last_error = session.scalar(
        select(FollowUp.last_error).where(FollowUp.target == crm, FollowUp.last_error.is_not(None))
        .order_by(FollowUp.checked_at.desc()).limit(1)) if failing else None
    return {"tracked": tracked, "read_failing": failing, "last_error": last_error}


def details(session: Session, targets: tuple[str, ...], pbx_guard: Callable[[Session], GuardState],
            channels: tuple[str, ...] = ()) -> dict:
    """Every component with its state and the reason; a handful of queries. `pbx_guard`: reads the block the
    PBX's command API keeps (its kit's `guard_state`). `channels`: outbox targets that are not CRMs (the rating
    link's SMS), each a component of its own, so their trouble never reads as the CRM's."""
    now = datetime.now(timezone.utc)
    pending, oldest = session.execute(select(func.count(), func.min(InboundEvent.received_at))
                                      .where(InboundEvent.applied_at.is_(None))).one()
    inbox = {"state": State.LAGGING if oldest and now - oldest > LAGGING_FOR else State.OK, "pending": pending,
             "oldest_pending_seconds": _age(oldest, now)}

    guard = pbx_guard(session)
    blocked = guard.blocked(now)
    scans = {row.name: {"last_finished_at": row.last_finished_at.isoformat() if row.last_finished_at else None,
                        "last_finished_seconds": _age(row.last_finished_at, now), "last_calls": row.last_calls,
                        "last_error": row.last_error, "last_problem": row.last_problem,
                        "next_at": row.next_at.isoformat() if row.next_at else None}
             for row in session.scalars(select(PbxScan).where(PbxScan.name != directory.SCAN)
                                        .order_by(PbxScan.name))}
    scan_failing = any(scan["last_error"] for scan in scans.values())
    pbx = {"state": State.BLOCKED if blocked else State.SCAN_FAILING if scan_failing else State.OK,
           "blocked_until": guard.blocked_until.isoformat() if blocked else None,
           "last_wrong_request_at": guard.strike_at.isoformat() if guard.strike_at else None,
           # The bulk quality scans of the PBX's call statistics (empty when they are off): a failing one
           # keeps its error here until it succeeds again.
           "quality_scans": scans,
           # The operator directory (names by extension): its last read, and failed reads in a row with the
           # last error. A failing one leaves the names as last read; it does not degrade the connector.
           "directory": directory.directory_state(session, now)}

    states = {name: _target_state(session, name, now) for name in targets}
    for name, state in states.items():
        state["follow_ups"] = _follow_up_reads(session, name)
    if not states:
        crm_state: dict = {"name": "none", "state": State.NONE}
    elif len(states) == 1:
        [crm_state] = states.values()
    else:  # several targets: the worst state, and each one's detail
        worst = max((t["state"] for t in states.values()), key=_SEVERITY.index)
        crm_state = {"name": ",".join(states), "state": worst, "targets": states}
    channel_states = {name: _target_state(session, name, now) for name in channels}
    if REPORT_CHANNEL in channel_states:
        _add_report_mail(session, channel_states[REPORT_CHANNEL], now)
    return {"database": {"state": State.OK}, "inbox": inbox, "pbx": pbx, "crm": crm_state, **channel_states}


REPORT_CHANNEL = "email"  # the channel the scheduled report e-mails go by (connector.console.report_mail)


def _add_report_mail(session: Session, state: dict, now: datetime) -> None:
    """The scheduled report e-mails beside the e-mail channel's alerts: those waiting (as an outbox kind, so
    /metrics counts them), those given up, and the last refusal."""
    pending, created, failing = session.execute(
        select(func.count(), func.min(ReportSend.created_at), func.min(ReportSend.first_failed_at))
        .where(ReportSend.status == SendStatus.PENDING)).one()
    dead = session.scalar(select(func.count()).select_from(ReportSend).where(ReportSend.status == SendStatus.DEAD))
    last_error = session.scalar(select(ReportSend.last_error).where(ReportSend.last_error.is_not(None))
                                .order_by(ReportSend.id.desc()).limit(1))
    if pending:
        state["outbox"]["report"] = {"pending": pending, "oldest_seconds": _age(created, now)}
    state["reports"] = {"dead": dead, "last_error": last_error}
    if failing and now - failing > FAILING_FOR and state["state"] == State.OK:
        state["state"] = State.FAILING


def summary(components: dict) -> dict:
    """What anyone may see: the overall status and each component's state, no error text."""
    states = {name: part["state"] for name, part in components.items()}
    degraded = any(state not in (State.OK, State.NONE) for state in states.values())
    return {"status": "degraded" if degraded else "ok", "components": states}


def last_activity(session: Session) -> dict:
    """When the PBX last sent something, and when a delivery last succeeded (the admin's settings page)."""
    last_event = session.scalar(select(func.max(InboundEvent.received_at)))
    last_delivery = session.scalar(select(func.max(DeliveryJob.updated_at)).where(DeliveryJob.status == JobStatus.DONE))
    return {"last_pbx_event": last_event.isoformat() if last_event else None,
            "last_delivery": last_delivery.isoformat() if last_delivery else None}
