"""A simulated day of rating by link, end to end, with its figures (issue #19's "simulated day").

Thirty calls from 07:10 to 23:40 Moscow time (every sixth answered in the IVR survey, every seventh a
landline, every ninth the previous caller again); a virtual clock runs to noon the next day while the planner
and the SMS worker send the requests through a fake MANGO over real HTTP, and the PBX reports them sent and
delivered. Two customers in three rate on the page (good or bad, one asks not to be contacted again); then
the amoCRM worker delivers to a fake amoCRM over real HTTP at its 7 requests a second. Run:

    .venv/bin/python bench/rating_day.py [--calls 30] [--database-url postgresql+psycopg://...]

It prints what the fakes and the connector hold, and exits non-zero when an SMS went outside 09:00-21:00,
before its 2-hour delay, twice for one call or twice to one number in a day, or a rating reached amoCRM other
than exactly once.
"""
from __future__ import annotations

import argparse
import logging
import sys
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.rating_day import Day  # noqa: E402

logging.getLogger("werkzeug").setLevel(logging.WARNING)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--database-url", default=None, help="PostgreSQL to run on (wiped); default: SQLite")
    args = parser.parse_args()
    day = date.today() - timedelta(days=1)
    with Day(day, args.calls, database_url=args.database_url) as d:
        d.run()
        links = d.links()
        for i, (entry_id, path) in enumerate(sorted(links.items())):
            if i % 3 != 2:
                assert d.rate(path, i % 2, comment="Спасибо" if i % 4 == 0 else "", do_not_contact=i == 1) == 303
        d.deliver()
        f = d.count()
    hours = [at.hour + at.minute / 60 for _, at in f.sent_local]
    waited = [(at - f.ended_local[entry]).total_seconds() / 3600 for entry, at in f.sent_local]
    per_number = Counter((d_.phone, at.date()) for d_ in d.calls for entry, at in f.sent_local
                         if entry == d_.entry_id)
    print(f"day {day} (Europe/Moscow): {f.calls} calls, {f.qualifying} missed the survey on a mobile number")
    print(f"requests: {dict(sorted(f.requests.items()))}")
    print(f"SMS commands: {f.sms_commands}, sent between {min(hours):.2f} h and {max(hours):.2f} h local, "
          f"{min(waited):.2f} to {max(waited):.2f} h after the call")
    print(f"rated on the page: {f.rated}")
    print(f"amoCRM: {len(f.crm_calls)} calls logged (each x{sorted(set(f.crm_calls.values()))}), "
          f"{len(f.crm_scores)} with a score written (each x{sorted(set(f.crm_scores.values()))}), "
          f"tag adds asked {dict(f.crm_tag_adds)}")
    problems = []
    if any(h < 9 or h >= 21 for h in hours):
        problems.append("an SMS outside 09:00-21:00")
    if any(w < 2 for w in waited):
        problems.append("an SMS before its 2-hour delay")
    if f.sms_commands != len(f.sent_local) or len({e for e, _ in f.sent_local}) != len(f.sent_local):
        problems.append("an SMS sent twice")
    if any(n > 1 for n in per_number.values()):
        problems.append("two SMS to one number in a day")
    if set(f.crm_tag_adds) - {1} or set(f.crm_calls.values()) - {1} or set(f.crm_scores.values()) - {1}:
        problems.append("something written to amoCRM twice")
    for problem in problems:
        print(f"FAILED: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
