"""A simulated day of the rating link: calls from morning to late evening, some answered in the survey, some
not, a landline, a customer who calls twice; a virtual clock steps through the day and the next morning while
the planner makes and queues requests and the SMS worker sends them to a fake MANGO over real HTTP; the PBX's
reports come back; customers rate on the page; the amoCRM worker delivers to a fake amoCRM over real HTTP.

Used by `bench/rating_day.py` (prints the figures) and by the end-to-end test, which rates one link in
Chromium. Every figure is counted from what the fakes and the connector hold, never assumed."""
from __future__ import annotations

import hashlib
import re
import tempfile
import threading
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from app import create_app
from connector.core.db import downgrade, upgrade
from connector.core.models import Call, DeliveryJob, RatingRequest
from connector.inbound.link import settings as link_settings
from connector.wiring import build_rating_planner, build_sms_worker, build_worker
from tests.conftest import MANGO_KEY, MANGO_SALT, MangoPoster, dtmf, make_config, summary
from tests.fakes.amocrm import FakeAmo, create_fake_app
from tests.fakes.mango import FakeMango, create_fake_mango
from tests.fakes.server import serving

ZONE = ZoneInfo("Europe/Moscow")
BASE = "https://qa.example.ru"
LINK = re.compile(r"https?://\S+/r/([A-Za-z0-9_-]{22})")
USERS = [{"general": {"name": "Анна Смирнова"}, "telephony": {"extension": "101"}, "groups": []},
         {"general": {"name": "Борис Кузнецов"}, "telephony": {"extension": "102"}, "groups": []}]
STEP = timedelta(minutes=10)


@dataclass(frozen=True)
class DayCall:
    entry_id: str
    ends_at: datetime  # local
    phone: str
    extension: str
    survey_digit: str | None  # pressed in the IVR survey; None: missed it

    @property
    def qualifies(self) -> bool:
        return self.survey_digit is None and self.phone.startswith("79")


def day_calls(day: date, count: int) -> list[DayCall]:
    """`count` calls from 07:10 to 23:40 local: every sixth answered the survey, every seventh a landline, and
    every ninth a second call of the previous caller (the daily cap keeps them to one SMS)."""
    first, last = datetime.combine(day, datetime.min.time(), ZONE) + timedelta(hours=7, minutes=10), \
        datetime.combine(day, datetime.min.time(), ZONE) + timedelta(hours=23, minutes=40)
    spacing = (last - first) / max(1, count - 1)
    calls = []
    for i in range(count):
        phone = f"7495{i:07d}" if i % 7 == 5 else f"7916{i:07d}"
        if i % 9 == 4 and calls and calls[-1].phone.startswith("79"):
            phone = calls[-1].phone
        calls.append(DayCall(f"day-{i}", first + spacing * i, phone, "101" if i % 2 else "102",
                             "9" if i % 6 == 0 else None))
    return calls


@dataclass
class DayFigures:
    calls: int = 0
    qualifying: int = 0
    requests: Counter = field(default_factory=Counter)  # status/reason -> n
    sent_local: list = field(default_factory=list)  # (entry_id, local datetime the SMS went)
    ended_local: dict = field(default_factory=dict)  # entry_id -> local end
    rated: int = 0
    crm_calls: Counter = field(default_factory=Counter)  # call (uniq) -> times it was logged in amoCRM
    crm_scores: Counter = field(default_factory=Counter)  # call (uniq) -> score texts written for it
    crm_tag_adds: Counter = field(default_factory=Counter)  # times each tag add was asked for -> n
    sms_commands: int = 0


class Day:
    """The connector, its fakes and the virtual clock for one day. A context manager."""

    def __init__(self, day: date, calls: int = 30, *, database_url: str | None = None):
        self.day, self.calls = day, day_calls(day, calls)
        self.stack = ExitStack()
        self.pbx = FakeMango(MANGO_KEY, MANGO_SALT, users=list(USERS))
        self.amo = FakeAmo(rate_limit=7, long_lived_token="day-token")
        for phone in dict.fromkeys(call.phone for call in self.calls):
            self.amo.add_contact(phone)
        self.database_url = database_url
        self.figures = DayFigures(calls=len(self.calls), qualifying=sum(c.qualifies for c in self.calls))
        self.sent_by_command: dict[str, datetime] = {}

    def __enter__(self) -> "Day":
        pbx_url = self.stack.enter_context(serving(create_fake_mango(self.pbx)))
        amo_url = self.stack.enter_context(serving(create_fake_app(self.amo)))
        url = self.database_url or f"sqlite:///{self.stack.enter_context(tempfile.TemporaryDirectory())}/day.db"
        if self.database_url:
            downgrade(url, "base")  # a day starts from an empty schema: the database is wiped
        upgrade(url)
        self.config = make_config(url, MANGO_API_URL=pbx_url + "/vpbx/", PUBLIC_BASE_URL=BASE, CRM="amocrm",
                                  AMOCRM_BASE_URL=amo_url, AMOCRM_LONG_LIVED_TOKEN="day-token",
                                  AMOCRM_RATE_LIMIT="7", SURVEY_WAIT_SECONDS="0", MANGO_RATE_LIMIT="10")
        self.app = create_app(self.config)
        self.db = self.app.extensions["connector"].db
        self.stack.callback(self.db.dispose)
        self.client = self.app.test_client()
        self.post = MangoPoster(self.client)
        self.clock = datetime.combine(self.day, datetime.min.time(), ZONE) + timedelta(hours=7)
        self.planner = build_rating_planner(self.config, self.db)
        self.planner.clock = lambda: self.clock.astimezone(timezone.utc)
        self.sms = build_sms_worker(self.config, self.db)
        with self.db.transaction() as s:
            link_settings.save(s, {"enabled": True, "delay_minutes": 120, "send_from_hour": 9, "send_until_hour": 21,
                                   "daily_cap": 1, "company": "ООО «Ромашка»"}, BASE, "admin",
                               now=self.clock.astimezone(timezone.utc))  # turned on as the day begins
        return self

    def __exit__(self, *exc) -> None:
        self.stack.close()

    # --- the day -----------------------------------------------------------------------------
    def run(self) -> None:
        """From 07:00 to noon the next day, in 10-minute steps: the calls end, the planner and the SMS worker
        run, the PBX reports what it sent."""
        pending = list(self.calls)
        until = datetime.combine(self.day + timedelta(days=1), datetime.min.time(), ZONE) + timedelta(hours=12)
        while self.clock <= until:
            while pending and pending[0].ends_at <= self.clock:
                self._call(pending.pop(0))
            self.planner.run_once()
            while self.sms.run_once():
                pass
            self._reports()
            self.clock += STEP

    def _call(self, call: DayCall) -> None:
        start = int((call.ends_at - timedelta(seconds=70)).timestamp())
        payload = summary(call.entry_id, extension=call.extension, customer=call.phone, start=start, talk=10)
        assert self.post("events/summary", payload).status_code == 200
        if call.survey_digit:
            assert self.post("events/dtmf", dtmf(call.entry_id, call.survey_digit, timestamp=start + 75)).status_code == 200
        self.figures.ended_local[call.entry_id] = call.ends_at

    def _reports(self) -> None:
        for body in self.pbx.sms:
            if body["command_id"] not in self.sent_by_command:
                self.sent_by_command[body["command_id"]] = self.clock
        posted = getattr(self, "_posted", set())
        for kind, body in self.pbx.sms_reports():
            key = (kind, body["command_id"])
            if key not in posted:
                assert self.post(kind, body).status_code == 200
                posted.add(key)
        self._posted = posted

    def _entry_of_command(self) -> dict[str, str]:
        """A request's command_id -> its call's entry_id."""
        with self.db.reading() as s:
            return dict(s.execute(select(RatingRequest.command_id, Call.entry_id)
                                  .join(Call, Call.id == RatingRequest.call_row)).all())

    def links(self) -> dict[str, str]:
        """entry_id -> the path of the link its SMS carried (`/r/<token>`)."""
        entry_of = self._entry_of_command()
        return {entry_of[body["command_id"]]: "/r/" + LINK.search(body["text"]).group(1) for body in self.pbx.sms}

    def rate(self, path: str, answer: int, comment: str = "", do_not_contact: bool = False) -> int:
        form = {"answer": str(answer), "comment": comment, **({"do_not_contact": "yes"} if do_not_contact else {})}
        # Each customer from a phone of their own: answers are limited per client address (web/rating.py), and a
        # day of many calls from one test address would be refused as a flood.
        digest = hashlib.sha256(path.encode()).digest()
        address = f"10.{digest[0]}.{digest[1]}.{digest[2] or 1}"
        return self.client.post(path, data=form, environ_base={"REMOTE_ADDR": address}).status_code  # 303: thanks

    def deliver(self, timeout: float = 60.0) -> None:
        """The amoCRM worker until every job is done (the fake answers at amoCRM's 7 requests a second)."""
        worker = build_worker(self.config, self.db)
        stop = threading.Event()
        thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
        thread.start()
        deadline = time.monotonic() + timeout
        try:
            while self._open_jobs() and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            stop.set()
            thread.join(timeout=10)

    def _open_jobs(self) -> int:
        with self.db.reading() as s:
            return s.scalar(select(func.count()).select_from(DeliveryJob).where(
                DeliveryJob.crm == "amocrm", DeliveryJob.status.not_in(("done", "dead"))))

    # --- what the day left ---------------------------------------------------------------------
    def count(self) -> DayFigures:
        f = self.figures
        with self.db.reading() as s:
            f.requests = Counter(f"{r.status}" + (f":{r.reason}" if r.reason else "")
                                 for r in s.scalars(select(RatingRequest)))
            f.rated = s.scalar(select(func.count()).select_from(RatingRequest).where(RatingRequest.rated_at.is_not(None)))
        entry_of = self._entry_of_command()
        f.sent_local = sorted((entry_of[c], at) for c, at in self.sent_by_command.items())
        f.sms_commands = len(self.pbx.commands("commands/sms"))
        # A score known when the call is logged rides in the call's result; a later one is a note on its entity.
        f.crm_calls = Counter(call.get("uniq") for call in self.amo.calls)
        f.crm_scores = Counter(call.get("uniq") for call in self.amo.calls if call.get("call_result"))
        logged_on = {(c["entity_type"], c["entity_id"]): c.get("uniq") for c in self.amo.calls}
        f.crm_scores.update(logged_on.get((n["entity_type"], n["entity_id"])) for n in self.amo.notes
                            if n.get("note_type") == "common" and "Оценка" in str(n["params"].get("text")))
        f.crm_tag_adds = Counter(self.amo.tag_adds.values())
        return f
