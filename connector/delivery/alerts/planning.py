"""The alerts a call's scores call for, made in the transaction that applied the scores: exactly one per call,
trigger, person and channel (the `alerts` row's unique key), each either queued at once as its own outbox job
or held for the digest (quiet hours, the hourly cap).

Cheap where nothing happens: a call with no tag and no supervisor score costs no query, and a batch with low
scores where nobody is routed anything costs one (the routes). A batch that alerts someone costs the channels
set up, the settings, the people, the operators, the alerts made already and the hour's count: a handful of
queries whatever its size, cached for the transaction.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from connector.core import alert_people
from connector.core.alerting import Channel, held_by_cap, open_channels, recipients, triggers
from connector.core.models import Alert, AlertStatus, Call, CrmRecord, DeliveryStatus, Operator
from connector.core.time_zone import zone_in_force
from connector.delivery import outbox
from connector.delivery.alerts import settings as alert_settings
from connector.delivery.alerts.channel_setup import available_channels

ALERT, DIGEST = "alert", "digest"  # the outbox job kinds of the channels


@dataclass(frozen=True)
class AlertContext:
    """What planning needs from the deployment: the channels its environment sets up (an admin may set up
    more in the console), and the account's default time zone (quiet hours are local)."""

    environment: tuple[Channel, ...]
    default_zone: str


def _may_trigger(call: Call) -> bool:
    return call.decision_tag is not None or call.supervisor_score is not None


def _cached(session: Session, key: str, read):
    if key not in session.info:
        session.info[key] = read()
    return session.info[key]


def plan_alerts(session: Session, ctx: AlertContext, calls: list[Call], now: datetime | None = None) -> int:
    """Make the alerts these calls now call for (none twice); how many it made."""
    now = now or datetime.now(timezone.utc)
    candidates = [c for c in calls if _may_trigger(c)]
    if not candidates:
        return 0
    with session.no_autoflush:
        routes = _cached(session, "alert_routes", lambda: alert_people.routes(session))
        if not routes:  # nobody is routed anything: one look-up a batch, and done
            return 0
        channels = _cached(session, "alert_channels", lambda: available_channels(session, ctx.environment))
        if not channels:
            return 0
        settings = _cached(session, "alert_settings", lambda: alert_settings.read(session))
        found = {c.id: triggers(customer_tagged=c.decision_tag is not None, customer_score=c.customer_score,
                                supervisor_score=c.supervisor_score, thresholds=settings.thresholds)
                 for c in candidates}
        candidates = [c for c in candidates if found[c.id]]
        if not candidates:
            return 0
        people = _cached(session, "alert_people", lambda: alert_people.people(session))
        ids = [c.id for c in candidates]
        made = set(session.execute(select(Alert.call_row, Alert.trigger, Alert.user_id, Alert.channel)
                                   .where(Alert.call_row.in_(ids))).tuples())
        extensions = {c.operator_extension for c in candidates if c.operator_extension}
        groups = {o.extension: tuple(str(g) for g in o.groups or ()) for o in session.scalars(
            select(Operator).where(Operator.extension.in_(extensions)))} if extensions else {}
    hold = _Holds(session, ctx, settings, now)
    queued: list[tuple[Call, str, str, str]] = []
    count = 0
    for call in candidates:
        users = recipients(routes, people, call.line_number, groups.get(call.operator_extension or "", ()))
        for user_id in users:
            for channel in open_channels(people[user_id], now):
                if channel not in channels:
                    continue
                new = [t for t in found[call.id] if (call.id, t.value, user_id, channel.value) not in made]
                if not new:
                    continue
                # The triggers one event brought (a review both low and far from the customer's score) are one
                # message, held or sent together, and count once against the cap.
                held_until = hold.until(user_id, channel)
                suffix = f"{'+'.join(t.value for t in new)}:{user_id}"
                key = None if held_until else outbox.job_key(call.entry_id, ALERT, suffix)
                for trigger in new:
                    session.add(Alert(call_row=call.id, trigger=trigger.value, user_id=user_id, channel=channel.value,
                                      created_at=now, held_until=held_until, job_key=key,
                                      status=AlertStatus.HELD if held_until else AlertStatus.QUEUED))
                    made.add((call.id, trigger.value, user_id, channel.value))
                    count += 1
                if key is not None:
                    queued.append((call, channel.value, ALERT, suffix))
    if queued:
        queue_messages(session, queued)
    return count


def queue_messages(session: Session, messages: list[tuple[Call, str, str, str]]) -> None:
    """One outbox job per (call, channel, kind, key suffix): the channel's record of the call first (the queue reads
    a call's jobs beside its record; a channel's record never counts in the call's CRM status)."""
    records = {(r.call_id, r.crm) for r in session.scalars(select(CrmRecord).where(
        CrmRecord.call_id.in_({c.id for c, *_ in messages}), CrmRecord.crm.in_({ch for _, ch, *_ in messages})))}
    for call, channel, _kind, _key in messages:
        if (call.id, channel) not in records:
            session.add(CrmRecord(call=call, crm=channel, status=DeliveryStatus.PENDING, attempts=0))
            records.add((call.id, channel))
    session.flush()
    channels = tuple(sorted({ch for _, ch, *_ in messages}))
    deliveries = outbox.load_targets(session, channels, [c.id for c, *_ in messages])
    for call, channel, kind, suffix in messages:
        d = deliveries[channel][call.id]
        outbox.add_job(session, d, channel, kind, suffix)
        outbox.refresh_record(d)


class _Holds:
    """Whether a new alert to a person waits for the digest, and until when: quiet hours (until they end),
    else the cap (until the oldest of the hour's alerts is an hour old). The hour's count is read once per
    transaction and kept up to date as alerts are made."""

    def __init__(self, session: Session, ctx: AlertContext, settings, now: datetime):
        self.session, self.ctx, self.settings, self.now = session, ctx, settings, now
        self._zone = None
        self._sent: dict[tuple[int, str], list[datetime]] | None = None

    def until(self, user_id: int, channel: Channel) -> datetime | None:
        quiet = self.settings.quiet
        if quiet.start != quiet.end:
            zone = self._zone = self._zone or zone_in_force(self.session, self.ctx.default_zone).zone
            if quiet.holds(self.now, zone):
                return quiet.ends(self.now, zone)
        if not self.settings.cap_per_hour:
            return None
        sent = self._recent().setdefault((user_id, channel.value), [])
        if held_by_cap(len(sent), self.settings.cap_per_hour):
            return min(sent) + timedelta(hours=1)
        sent.append(self.now)
        return None

    def _recent(self) -> dict[tuple[int, str], list[datetime]]:
        """The messages each person got one by one in the last hour: one per outbox job, however many triggers
        it carried."""
        if self._sent is None:
            self._sent = {}
            with self.session.no_autoflush:
                rows = self.session.execute(
                    select(Alert.user_id, Alert.channel, func.min(Alert.created_at))
                    .where(Alert.status == AlertStatus.QUEUED, Alert.created_at > self.now - timedelta(hours=1))
                    .group_by(Alert.user_id, Alert.channel, Alert.job_key))
                for user_id, channel, at in rows:
                    self._sent.setdefault((user_id, channel), []).append(at)
        return self._sent

