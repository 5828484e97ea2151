"""Scheduled report e-mails (issue #20): daily or weekly, per person, at a local hour: the per-operator table of
the period, its low scores with links to the calls, and the follow-up figures.

Exactly once per person and period, with any number of workers and through a restart:
- **planning** inserts one `report_sends` row per (person, period, start): the unique key refuses a second;
- **sending** leases a due row (skipped by another worker on PostgreSQL), marks the try in the database before
  the SMTP exchange, and stores the outcome after it. A worker killed before the server accepted the message
  leaves the row to the next worker when the lease runs out, which sends it once; the only window for a repeat
  is a kill between the server's "250" and the commit, and the repeat then carries the same Message-ID, by which
  a mail system drops it.
- a refusal is counted: a 4xx or no answer is retried on the outbox's schedule for 24 h, a 5xx is dead at once,
  each with the server's words in `last_error`, shown on the alerts page and logged.

A period is the local day before the send day (daily) or the seven local days before it (weekly), in the
account's time zone. A period whose send time passed before the person subscribed is not sent; after a long
stop only the latest missed period is.
"""
from __future__ import annotations

import hashlib
import html
import logging
import threading
from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from connector.core import lease
from connector.core.db import Database
from connector.core.loop import run_until_stopped, worker_id
from connector.core.models import (Call, Operator, ReportPeriod, ReportSend, ReportSubscription, SendStatus, User)
from connector.core.alerting import ROUTABLE_ROLES
from connector.core.calls import masked_phone
from connector.core.policy import Policy
from connector.core.time_zone import zone_in_force
from connector.console.reports import ReportFilter, figures
from connector.delivery.contract import PermanentError, TransientError
from connector.delivery.mail import Mail
from connector.delivery.retry import next_try

log = logging.getLogger(__name__)

LEASE = timedelta(minutes=5)
LOW_SHOWN = 50  # low scores a report lists one by one


def send_day(sub: ReportSubscription, now: datetime, zone: ZoneInfo) -> datetime:
    """The latest local send moment at or before `now`."""
    local = now.astimezone(zone)
    moment = datetime.combine(local.date(), time(sub.hour), zone)
    if sub.period == ReportPeriod.WEEKLY:
        moment -= timedelta(days=(local.weekday() - sub.weekday) % 7)
        if moment > now:
            moment -= timedelta(days=7)
    elif moment > now:
        moment -= timedelta(days=1)
    return moment


def period_of(sub: ReportSubscription, sent_at: datetime, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The period a send moment reports on: whole local days before its day."""
    end = datetime.combine(sent_at.astimezone(zone).date(), time(0), zone)
    days = 7 if sub.period == ReportPeriod.WEEKLY else 1
    return (datetime.combine(end.date() - timedelta(days=days), time(0), zone).astimezone(timezone.utc),
            end.astimezone(timezone.utc))


def plan(session: Session, now: datetime, zone: ZoneInfo) -> int:
    """One send per subscriber whose latest send moment has passed and is not sent yet; how many it made."""
    made = 0
    subs = session.execute(select(ReportSubscription, User).join(User, User.id == ReportSubscription.user_id)
                           .where(User.disabled.is_(False), User.role.in_(ROUTABLE_ROLES))).tuples().all()
    for sub, _user in subs:
        moment = send_day(sub, now, zone)
        if moment < sub.updated_at:
            continue  # due before the person (re)subscribed: the next one is theirs
        start, end = period_of(sub, moment, zone)
        exists = session.scalar(select(ReportSend.id).where(ReportSend.user_id == sub.user_id,
                                                            ReportSend.period == sub.period,
                                                            ReportSend.period_start == start))
        if exists:
            continue
        try:
            with session.begin_nested():  # another worker may make it first: the unique key says so
                session.add(ReportSend(user_id=sub.user_id, period=sub.period, period_start=start, period_end=end,
                                       status=SendStatus.PENDING, not_before=now, attempts=0))
        except IntegrityError:
            continue
        made += 1
    return made


@dataclass(frozen=True)
class Report:
    subject: str
    text: str
    html: str


def build(db: Database, session: Session, send: ReportSend, initial: Policy, zone: ZoneInfo,
          public_base_url: str) -> Report:
    """The report of one period: the per-operator table, the low scores with links."""
    counted = figures(db, ReportFilter(date_from=send.period_start, date_to=send.period_end, zone=zone.key),
                      initial, parts=("operators", "follow_ups"))
    rows = counted["operators"]["items"]
    follow = counted["follow_ups"]["operators"]
    low = session.execute(select(Call.entry_id, Call.customer_score, Call.operator_extension, Call.line_number,
                                 Call.created_at, Call.customer_phone)
                          .where(Call.decision_tag.is_not(None), Call.listed_at >= send.period_start,
                                 Call.listed_at < send.period_end)
                          .order_by(Call.listed_at).limit(LOW_SHOWN + 1)).all()
    names = {e: n for e, n in session.execute(select(Operator.extension, Operator.name))}
    first, last = send.period_start.astimezone(zone), send.period_end.astimezone(zone) - timedelta(seconds=1)
    span = first.strftime("%d.%m.%Y") if first.date() == last.date() else \
        f"{first.strftime('%d.%m.%Y')} — {last.strftime('%d.%m.%Y')}"
    subject = f"Отчёт о качестве звонков за {span}"
    base = public_base_url.rstrip("/")

    def who(ext):
        return f"{names[ext]} ({ext})" if names.get(ext) else (ext or "не указан")

    table = [(who(r.get("operator")), r["calls"], r["rated"], _num(r["average"]), r["negative"], _num(r["csat"]))
             for r in rows]
    lows = [(f"{base}/calls/{entry}", score, who(ext), line or "", at.astimezone(zone).strftime("%d.%m %H:%M")
             if at else "", masked_phone(phone) if phone else "") for entry, score, ext, line, at, phone in low[:LOW_SHOWN]]
    more = len(low) > LOW_SHOWN
    text = [subject, "", "По операторам:"]
    text += [f"- {name}: звонков {calls}, оценок {rated}, средняя {avg}, низких {neg}, CSAT {csat}"
             f"{' %' if csat != '—' else ''}"
             for name, calls, rated, avg, neg, csat in table] or ["- звонков не было"]
    follow_rows = [(who(r.get("operator")), r["follow_ups"], r["closed"], r["overdue"], _num(r["median_hours"]),
                    r["recovered"], r["with_outcome"]) for r in follow["items"]]
    total = follow["totals"]
    text += ["", "Обратная связь с клиентами (медиана — часов от низкой оценки до выполнения; вернули клиента — из "
                 "закрытых с итогом):"]
    text += [f"- {name}: низких {n}, закрыто {closed}, просрочено {overdue}, медиана {hours}"
             f"{' ч' if hours != '—' else ''}, вернули {rec} из {outc}"
             for name, n, closed, overdue, hours, rec, outc in follow_rows] or ["- не было"]
    if follow_rows:
        text.append(f"Всего: низких {total['follow_ups']}, закрыто {total['closed']} ({_pct(total['follow_up_rate'])}), "
                    f"просрочено {total['overdue']}, вернули {total['recovered']} из {total['with_outcome']} "
                    f"({_pct(total['recovery_rate'])})")
    text += ["", f"Низкие оценки ({len(lows)}{'+' if more else ''}):"]
    text += [f"- {at} · {score} · {name} · линия {line} · клиент {phone}\n  {url}"
             for url, score, name, line, at, phone in lows] or ["- не было"]
    e = html.escape
    cell = 'style="padding:4px 8px;border-bottom:1px solid #ddd;text-align:left"'
    head = "".join(f"<th {cell}>{e(h)}</th>" for h in ("Оператор", "Звонков", "Оценок", "Средняя", "Низких", "CSAT, %"))
    body_rows = "".join("<tr>" + "".join(f"<td {cell}>{e(str(v if v is not None else '—'))}</td>" for v in row)
                        + "</tr>" for row in table) or f'<tr><td {cell} colspan="6">Звонков не было</td></tr>'
    follow_head = "".join(f"<th {cell}>{e(h)}</th>" for h in ("Оператор", "Низких оценок", "Закрыто", "Просрочено",
                                                               "Медиана, ч", "Вернули клиента"))
    follow_body = "".join(
        "<tr>" + "".join(f"<td {cell}>{e(str(v))}</td>" for v in (name, n, closed, overdue, hours,
                                                                   f"{rec} из {outc}")) + "</tr>"
        for name, n, closed, overdue, hours, rec, outc in follow_rows) \
        or f'<tr><td {cell} colspan="6">Низких оценок не было</td></tr>'
    if follow_rows:  # the totals, as the plain text says them
        follow_body += ('<tr style="font-weight:bold">' + "".join(f"<td {cell}>{e(str(v))}</td>" for v in (
            "Всего", total["follow_ups"], f"{total['closed']} ({_pct(total['follow_up_rate'])})", total["overdue"],
            _num(total.get("median_hours")), f"{total['recovered']} из {total['with_outcome']}")) + "</tr>")
    items = "".join(f'<li style="margin:0 0 6px"><a href="{e(url)}" style="color:#0b57d0">{e(at)} · оценка {score}'
                    f" · {e(name)}</a> · линия {e(line)} · клиент {e(phone)}</li>"
                    for url, score, name, line, at, phone in lows) or "<li>Не было</li>"
    page = (f'<!doctype html><html lang="ru"><head><meta charset="utf-8"><title>{e(subject)}</title></head>'
            '<body style="margin:0;padding:16px;font-family:Arial,Helvetica,sans-serif;color:#1f1f1f">'
            f'<h1 style="font-size:18px">{e(subject)}</h1><h2 style="font-size:16px">По операторам</h2>'
            f'<table role="presentation" style="border-collapse:collapse;font-size:14px"><tr>{head}</tr>{body_rows}'
            f'</table><h2 style="font-size:16px">Обратная связь с клиентами</h2>'
            f'<table role="presentation" style="border-collapse:collapse;font-size:14px"><tr>{follow_head}</tr>'
            f'{follow_body}</table>'
            f'<h2 style="font-size:16px">Низкие оценки</h2><ul style="padding-left:20px;font-size:14px">'
            f'{items}</ul>{"<p>Показаны первые %d: остальные в консоли.</p>" % LOW_SHOWN if more else ""}'
            '</body></html>')
    return Report(subject, "\n".join(text), page)


def _pct(value) -> str:
    return "—" if value is None else f"{_num(value)} %"


def _num(value) -> str:
    """A figure as Russian writes it: a decimal comma, no trailing ".0"; none is a dash."""
    if value is None:
        return "—"
    return f"{value:g}".replace(".", ",") if isinstance(value, float) else str(value)


class ReportMailer:
    """Plans the due report e-mails and sends them, one at a time, through `send` (a Mailer's)."""

    def __init__(self, db: Database, send, *, initial_policy: Policy, default_zone: str, public_base_url: str,
                 ready=lambda: True, poll_seconds: float = 30.0, lease_seconds: float = LEASE.total_seconds(),
                 clock=lambda: datetime.now(timezone.utc)):
        self.db, self.send, self.initial_policy, self.ready = db, send, initial_policy, ready
        self.default_zone, self.public_base_url, self.poll_seconds = default_zone, public_base_url, poll_seconds
        self.lease_seconds, self.clock, self.owner = lease_seconds, clock, worker_id()

    def run(self, stop: threading.Event) -> None:
        run_until_stopped("report e-mails", self.run_once, stop, self.poll_seconds)

    def run_once(self) -> int:
        """Plan what is due and send what is waiting; how many it sent (or tried). Idle without a mail server:
        nothing is planned that could not go."""
        if not self.ready():
            return 0
        with self.db.transaction() as s:
            zone = zone_in_force(s, self.default_zone).zone
            plan(s, self.clock(), zone)
        sent = 0
        while self._send_one(zone):
            sent += 1
        return sent

    def _send_one(self, zone: ZoneInfo) -> bool:
        now = self.clock()
        with self.db.transaction() as s:
            due = (select(ReportSend).where(ReportSend.status == SendStatus.PENDING, ReportSend.not_before <= now,
                                            lease.free(ReportSend, now)).order_by(ReportSend.id).limit(1))
            claimed = lease.claim(s, due, self.owner, now, self.lease_seconds, skip_locked=self.db.is_postgres)
            if not claimed:
                return False
            send = claimed[0]
            send.attempts += 1
            address = s.scalar(select(User.email).where(User.id == send.user_id, User.disabled.is_(False)))
            send_id, key = send.id, f"{send.user_id}:{send.period}:{send.period_start.isoformat()}"
        report, outcome = None, None
        if address:  # read after the claim's commit: a report's queries never hold the write lock
            try:
                with self.db.reading() as s:
                    report = build(self.db, s, s.get(ReportSend, send_id), self.initial_policy, zone,
                                   self.public_base_url)
            except Exception as exc:  # a bug: counted and retried on the schedule, then dead, never a silent loop
                log.exception("report e-mail %s could not be built", send_id)
                outcome = TransientError(f"the report could not be built ({type(exc).__name__})")
        if report is not None:
            message_id = f"<report-{hashlib.sha256(key.encode()).hexdigest()[:32]}@connector>"
            try:
                self.send(Mail(address, report.subject, report.text, report.html, message_id))
            except (TransientError, PermanentError) as exc:
                outcome = exc
        self._store(send_id, outcome, no_address=not address)
        return True

    def _store(self, send_id: int, outcome: Exception | None, *, no_address: bool) -> None:
        with self.db.transaction() as s:
            send = s.get(ReportSend, send_id, with_for_update=True)
            if not lease.holds(send, self.owner):
                return  # our lease ran out and another worker took it over
            lease.release(send)
            now = self.clock()
            if no_address:
                send.status, send.last_error = SendStatus.DEAD, "the person has no e-mail address"
            elif outcome is None:
                send.status, send.sent_at, send.last_error = SendStatus.SENT, now, None
                return
            elif isinstance(outcome, PermanentError):
                send.status, send.last_error = SendStatus.DEAD, outcome.message
            else:
                send.first_failed_at = send.first_failed_at or now
                send.last_error = outcome.message
                when = next_try(send.first_failed_at, send.attempts, outcome, now)
                if when is None:
                    send.status = SendStatus.DEAD
                else:
                    send.not_before = when
            log.warning("report e-mail %s for user %s: %s", send.id, send.user_id, send.last_error)


def schedule_of(session: Session, user_id: int) -> ReportSubscription | None:
    return session.get(ReportSubscription, user_id)


def subscribe(session: Session, user_id: int, period: ReportPeriod | str | None, *, hour: int = 8,
              weekday: int = 0, now: datetime | None = None) -> None:
    """A person's schedule (None: no report e-mails). ValueError: a period, hour or weekday out of range."""
    if period is not None and period not in tuple(ReportPeriod):
        raise ValueError(f"a period is daily or weekly, got {period!r}")
    row = session.get(ReportSubscription, user_id)
    if period is None:
        if row is not None:
            session.delete(row)
        return
    if not (0 <= hour <= 23 and 0 <= weekday <= 6):
        raise ValueError("the hour is 0 to 23, the weekday 0 (Monday) to 6")
    if row is None:
        row = ReportSubscription(user_id=user_id)
        session.add(row)
    row.period, row.hour, row.weekday = ReportPeriod(period).value, hour, weekday
    row.updated_at = now or datetime.now(timezone.utc)


def replay(session: Session, since: datetime | None = None) -> int:
    """Send the given-up report e-mails again (those that failed since `since`), with a fresh retry budget."""
    query = select(ReportSend).where(ReportSend.status == SendStatus.DEAD).with_for_update()
    if since is not None:
        query = query.where(ReportSend.first_failed_at >= since)
    sends = list(session.scalars(query))
    for send in sends:
        send.status, send.not_before, send.attempts, send.first_failed_at = SendStatus.PENDING, \
            datetime.now(timezone.utc), 0, None
        lease.release(send)
    return len(sends)
