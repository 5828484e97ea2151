"""MANGO quality scores at scale: time from the customer's survey to the stored score, and requests spent.

A working day of calls (default 600 over 10 hours, one every minute), every third one unknown to the
Contact Center (interleaved, as in real life); 80 % of the Contact Center's callers answer the post-call
survey 10-40 s after the call. The real QualityPoller and QualityScanner run against the fake MANGO
(tests/fakes/mango.py: 3300 for unknown calls, the 2-minute block, 5008, the statistics' start limit) on a
simulated clock, so a day takes a minute or so. Two set-ups are compared:

- `cc` (the old approach): `cc/call/` call by call; a call never answered for is a "probing" question,
  at most one per 2 minutes after a 3300;
- `both` (the default): extended statistics over rolling windows, and `cc/call/` between scans only for
  calls the statistics show the Contact Center handled.

    PYTHONPATH=. .venv/bin/python bench/quality.py [--calls 600] [--hours 10] [--only both]
"""
from __future__ import annotations

import argparse
import logging
import random
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import requests  # noqa: E402
from requests.structures import CaseInsensitiveDict  # noqa: E402
from sqlalchemy import select  # noqa: E402

import connector.inbound.poller as poller_module  # noqa: E402
from connector.core.db import Database, upgrade  # noqa: E402
from connector.core.models import Call, PbxPoll, PollStatus, Score, SurveyState  # noqa: E402
from connector.inbound.mango.api import MangoApi, MangoGuard  # noqa: E402
from connector.inbound.poller import QualityPoller  # noqa: E402
from connector.inbound.mango.scanner import QualityScanner  # noqa: E402
from connector.wiring import ingest_context  # noqa: E402
from tests.conftest import MANGO_KEY, MANGO_SALT, make_config  # noqa: E402
from tests.fakes.mango import FakeMango, create_fake_mango  # noqa: E402

DAY0 = datetime(2026, 11, 26, 6, 0, tzinfo=timezone.utc)  # 9:00 in Moscow
STEP = 5.0  # seconds of simulated time between two rounds of the loops
SURVEY_WAIT = 180
AFTER = timedelta(minutes=30)  # the run goes on this long after the last call


class SimClock:
    def __init__(self, start: datetime):
        self.t = start.timestamp()

    def time(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:  # the only process: sleeping is time passing
        self.t += max(0.0, seconds)

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.t, timezone.utc)


class InProcess(requests.adapters.BaseAdapter):
    """requests -> the fake's Flask app in this process: no sockets, no threads, no real time."""

    def __init__(self, app):
        super().__init__()
        self.client = app.test_client()

    def send(self, request, **kwargs):
        answer = self.client.open(urlsplit(request.url).path, method=request.method, data=request.body,
                                  headers=dict(request.headers))
        response = requests.Response()
        response.status_code, response._content = answer.status_code, answer.data
        response.headers, response.url, response.request = CaseInsensitiveDict(answer.headers), request.url, request
        return response

    def close(self):
        pass


def plan(calls: int, hours: float, seed: int = 15) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(calls):
        end = DAY0 + timedelta(seconds=(i + rng.random()) * hours * 3600 / calls)
        handled = i % 3 != 2
        survey = end + timedelta(seconds=rng.uniform(10, 40)) if handled and rng.random() < 0.8 else None
        out.append({"entry_id": f"d{i}", "end": end, "handled": handled, "survey": survey,
                    "mark": str(rng.randint(1, 10))})
    return out


def run(source: str, calls: list[dict], hours: float) -> dict:
    clock = SimClock(DAY0)
    poller_module._now = clock.now  # the poll queue's clock
    fake = FakeMango(MANGO_KEY, MANGO_SALT, clock=clock.time, report_seconds=2.0)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        upgrade(url)
        config = make_config(url, MANGO_QUALITY_API="true", MANGO_QUALITY_SOURCE=source, MANGO_RATE_LIMIT="5",
                             SURVEY_WAIT_SECONDS=str(SURVEY_WAIT))
        db = Database(url)
        http = requests.Session()
        http.mount("http://fake/", InProcess(create_fake_mango(fake)))
        api = MangoApi("http://fake/vpbx/", MANGO_KEY, MANGO_SALT, MangoGuard(db, 5.0, clock=clock.time,
                                                                               sleep=clock.sleep), session=http)
        ctx = ingest_context(config)
        poller = (QualityPoller(db, api, ctx, survey_wait_seconds=SURVEY_WAIT, probe_unknown=source == "cc")
                  if source != "stats" else None)
        scanner = (QualityScanner(db, api, ctx, survey_wait_seconds=SURVEY_WAIT, utc_offset=timedelta(hours=3),
                                  per_call=source == "both", clock=clock.time, sleep=clock.sleep)
                   if source != "cc" else None)
        pending = list(calls)
        surveys = sorted((c for c in calls if c["survey"]), key=lambda c: c["survey"])
        end_at = calls[-1]["end"] + AFTER
        started = time.monotonic()
        while clock.now() < end_at:
            now = clock.now()
            while pending and pending[0]["end"] <= now:  # the call ends: its summary is in
                _summary(db, fake, pending.pop(0))
            while surveys and surveys[0]["survey"] <= now:  # the customer pressed a digit
                answered = surveys.pop(0)
                fake.set_marks(answered["entry_id"], mark_client=answered["mark"])
            if scanner is not None:
                scanner.run_once()
            while poller is not None and poller.run_once() == poller.batch:  # a full batch: more may be due
                pass
            clock.t = max(clock.t, now.timestamp() + STEP)
        wall = time.monotonic() - started
        with db.transaction() as s:
            rated = dict(s.execute(select(Call.entry_id, Score.rated_at).join(Score, Score.call_id == Call.id)).all())
        db.dispose()
    delays = sorted((rated[c["entry_id"]] - c["survey"]).total_seconds() for c in calls
                    if c["survey"] and c["entry_id"] in rated)
    scored = [c for c in calls if c["survey"]]
    by_path: dict[str, int] = {}
    for path, _, _, _ in fake.requests:
        by_path[path] = by_path.get(path, 0) + 1
    return {"source": source, "surveys": len(scored), "scored": len(delays),
            "p50": statistics.median(delays) if delays else None,
            "p95": delays[int(0.95 * (len(delays) - 1))] if delays else None,
            "requests": len(fake.requests), "by_path": by_path,
            "wrong": sum(1 for r in fake.requests if r[3] is not None and 3000 <= r[3] < 4000),
            "blocks": fake.blocks, "wall": wall}


def _summary(db: Database, fake: FakeMango, c: dict) -> None:
    start = c["end"] - timedelta(seconds=60)
    fake.add_stats_call(c["entry_id"], start.timestamp(), contact_center=c["handled"])
    with db.transaction() as s:
        call = Call(entry_id=c["entry_id"], direction="inbound", operator_extension="101",
                    customer_phone="79001234567", line_number="74950000000", created_at=start, ended_at=c["end"],
                    talk_seconds=50, entry_result=1, summary_received_at=c["end"], listed_at=start,
                    first_seen_at=start, survey=SurveyState.PENDING)
        s.add(call)
        s.add(PbxPoll(call=call, status=PollStatus.PENDING, found=False, polls=0, misses=0,
                      not_before=c["end"] + timedelta(seconds=5)))


def show(r: dict, calls: int, hours: float) -> None:
    fmt = (lambda v: "-" if v is None else f"{v:.0f} s")
    print(f"{r['source']:>5}: {r['scored']}/{r['surveys']} survey answers stored within the run; "
          f"survey -> score p50 {fmt(r['p50'])}, p95 {fmt(r['p95'])}; {r['requests']} requests "
          f"({r['requests'] / calls:.2f} per call; {', '.join(f'{k} {v}' for k, v in sorted(r['by_path'].items()))}); "
          f"{r['wrong']} wrong (3xxx), {r['blocks']} blocks; {r['wall']:.0f} s of real time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=600)
    parser.add_argument("--hours", type=float, default=10.0)
    parser.add_argument("--only", choices=("cc", "both", "stats"), default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    calls = plan(args.calls, args.hours)
    print(f"{args.calls} calls over {args.hours:g} h, every third unknown to the Contact Center; "
          f"{sum(1 for c in calls if c['survey'])} survey answers; simulated clock, step {STEP:g} s")
    for source in ([args.only] if args.only else ["cc", "both"]):
        show(run(source, calls, args.hours), args.calls, args.hours)


if __name__ == "__main__":
    main()
