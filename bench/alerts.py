"""Alert latency under load (issue #20): how long after the PBX's low score a supervisor has the e-mail and the
Telegram message, while `connector serve` takes 100 callbacks a second of other calls.

    .venv/bin/python bench/alerts.py                      # SQLite in a temporary directory
    .venv/bin/python bench/alerts.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/bench

A real SMTP server (aiosmtpd) and the fake Telegram Bot API (tests/fakes/telegram.py) run in this process and
note when each message arrives. Two supervisors: sam watches line A, sue line B. Other load: an open loop of
MANGO callbacks (13 per call, some with low scores, on a third line nobody watches). Every `--every` seconds a
probe call on line A gets a low score; its latency runs from the moment the PBX's dtmf callback was acknowledged
to the message's arrival. Prints p50, p99 and max per channel; exits non-zero unless each probe brought exactly
one e-mail and one Telegram message to sam, nothing reached sue, and p99 is under `--limit` seconds (10).
The PostgreSQL database given is wiped.
"""
from __future__ import annotations

import argparse
import email
import email.policy
import http.client
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import logging  # noqa: E402

from bench.ingest import (HEADERS, KEY, SALT, connector_env, free_port, in_process, open_loop,  # noqa: E402
                          wait_up)

LINE_A, LINE_B = "74950000001", "74950000002"
CHAT_SAM, CHAT_SUE = 111_000_001, 111_000_002
BASE = "https://qa.example.ru"
logging.getLogger("werkzeug").setLevel(logging.WARNING)  # the fake's request lines
CALL_LINK = re.compile(re.escape(BASE) + r"/calls/(alert-probe-[0-9]+)")


class Arrivals:
    """Each probe call's messages as they arrive: (channel, recipient) -> {entry_id: [monotonic times]}."""

    def __init__(self):
        self.lock = threading.Lock()
        self.seen: dict[tuple[str, str], dict[str, list[float]]] = {}

    def note(self, channel: str, recipient: str, text: str) -> None:
        at = time.monotonic()
        with self.lock:
            for entry_id in set(CALL_LINK.findall(text)):
                self.seen.setdefault((channel, recipient), {}).setdefault(entry_id, []).append(at)


class MailInbox:
    def __init__(self, arrivals: Arrivals):
        self.arrivals = arrivals

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        for to in envelope.rcpt_tos:
            self.arrivals.note("email", to, message.get_body("plain").get_content())
        return "250 Message accepted"


def watch_telegram(fake, arrivals: Arrivals, stop: threading.Event) -> None:
    """Notes each message the fake Bot API took, within a few milliseconds of it."""
    taken = 0
    while not stop.is_set():
        while taken < len(fake.sent):
            sent = fake.sent[taken]
            arrivals.note("telegram", str(sent["chat_id"]), sent["text"])
            taken += 1
        time.sleep(0.002)


def seed(database_url: str, env: dict) -> None:
    """The schema, and the two supervisors with their routes, addresses and linked chats."""
    subprocess.run([sys.executable, "-c", "import app; app.main()", "db", "upgrade"], cwd=ROOT, env=env, check=True,
                   capture_output=True)
    from connector.core.db import Database
    from connector.core.models import AlertChannel, AlertRoute
    from connector.core.users import add_user

    db = Database(database_url)
    with db.transaction() as s:
        for name, line, chat in (("sam", LINE_A, CHAT_SAM), ("sue", LINE_B, CHAT_SUE)):
            user = add_user(s, name, "supervisor", "correct horse battery staple")
            user.email = f"{name}@example.ru"
            s.flush()
            s.add(AlertRoute(user_id=user.id, line_number=line))
            s.add(AlertChannel(user_id=user.id, channel="telegram", address=str(chat), enabled=True))
    db.engine.dispose()


def post(conn: http.client.HTTPConnection, kind: str, payload: dict) -> int:
    from connector.inbound.mango.callbacks import signed_form

    conn.request("POST", f"/mango/{kind}", body=urlencode(signed_form(KEY, SALT, payload)), headers=HEADERS)
    response = conn.getresponse()
    response.read()
    return response.status


def probe(conn: http.client.HTTPConnection, n: int) -> tuple[str, float]:
    """A call on line A with a low score; (its entry_id, when its score was acknowledged)."""
    entry, now = f"alert-probe-{n}", int(time.time())
    status = post(conn, "events/summary", {
        "entry_id": entry, "call_direction": 1, "from": {"number": "79001234567"},
        "to": {"extension": "101", "number": LINE_A}, "line_number": LINE_A, "create_time": now - 70,
        "forward_time": now - 68, "talk_time": now - 60, "end_time": now, "entry_result": 1,
        "disconnect_reason": 1110})
    status2 = post(conn, "events/dtmf", {"entry_id": entry, "call_id": f"leg-{n}", "seq": 12, "dtmf": "3",
                                         "location": "ivr.5", "timestamp": now})
    if (status, status2) != (200, 200):
        raise SystemExit(f"probe {entry}: answered {status}, {status2}")
    return entry, time.monotonic()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=None, help="PostgreSQL to run on (wiped); default: SQLite")
    parser.add_argument("--seconds", type=float, default=40.0, help="how long the other load runs")
    parser.add_argument("--rate", type=float, default=100.0, help="other callbacks a second")
    parser.add_argument("--every", type=float, default=1.0, help="seconds between probe calls")
    parser.add_argument("--limit", type=float, default=10.0, help="the p99 to meet, in seconds")
    args = parser.parse_args()

    from aiosmtpd.controller import Controller

    from tests.fakes.server import serving
    from tests.fakes.telegram import FakeTelegram, create_fake_telegram

    tmp = tempfile.mkdtemp(prefix="alerts-bench-")
    database_url = args.database_url or f"sqlite:///{tmp}/connector.db"
    if database_url.startswith("postgresql"):
        from bench.common import wipe_postgres
        wipe_postgres(database_url)
    arrivals, stop = Arrivals(), threading.Event()
    smtp_port = free_port()
    smtp = Controller(MailInbox(arrivals), hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    fake = FakeTelegram()
    with serving(create_fake_telegram(fake)) as fake.url:
        for chat in (CHAT_SAM, CHAT_SUE):
            fake.user_sends(chat, "/start")  # each has written to the bot once (or Telegram says chat not found)
        watcher = threading.Thread(target=watch_telegram, args=(fake, arrivals, stop), daemon=True)
        watcher.start()
        port = free_port()
        env = {**connector_env(database_url, tmp, port), "PUBLIC_BASE_URL": BASE, "SMTP_HOST": "127.0.0.1",
               "SMTP_PORT": str(smtp_port), "SMTP_SECURITY": "none", "SMTP_FROM": "qa@example.ru",
               "TELEGRAM_BOT_TOKEN": fake.token, "TELEGRAM_API_URL": fake.url}
        seed(database_url, env)
        log = open(Path(tmp, "server.log"), "w")
        server = subprocess.Popen([sys.executable, "-c", "import app; app.main()", "serve"], cwd=ROOT, env=env,
                                  stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_up(port, server)
            result: dict = {}
            load = threading.Thread(target=lambda: result.update(
                load=in_process(open_loop, port, args.rate, args.seconds, 0, fresh=True)))
            load.start()
            probes = []
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            started = time.monotonic()
            n = 0
            while time.monotonic() - started < args.seconds:
                probes.append(probe(conn, n))
                n += 1
                time.sleep(max(0.0, started + n * args.every - time.monotonic()))
            load.join()
            deadline = time.monotonic() + args.limit * 2
            while time.monotonic() < deadline:  # the last probes' messages
                with arrivals.lock:
                    got = sum(len(arrivals.seen.get(key, {})) for key in
                              (("email", "sam@example.ru"), ("telegram", str(CHAT_SAM))))
                if got >= 2 * len(probes):
                    break
                time.sleep(0.1)
        finally:
            server.terminate()
            server.wait(timeout=30)
            stop.set()
            smtp.stop()
    latencies, errors = result["load"]
    print(f"database: {database_url.split('@')[-1]}; other load: {len(latencies)} callbacks at {args.rate:.0f}/s "
          f"({errors} not 200), p99 to acknowledge {percentile(latencies, 0.99) * 1000:.1f} ms")
    failed = False
    for channel, recipient in (("email", "sam@example.ru"), ("telegram", str(CHAT_SAM))):
        seen = arrivals.seen.get((channel, recipient), {})
        delays = [seen[entry][0] - at for entry, at in probes if entry in seen]
        twice = sum(1 for entry, _ in probes if len(seen.get(entry, [])) > 1)
        missing = len(probes) - len(delays)
        if delays:
            print(f"{channel:8} to sam: {len(delays)}/{len(probes)} probes, p50 {statistics.median(delays):.2f} s, "
                  f"p99 {percentile(delays, 0.99):.2f} s, max {max(delays):.2f} s; twice: {twice}; missing: {missing}")
        else:
            print(f"{channel:8} to sam: none of {len(probes)} probes arrived")
        failed |= bool(missing or twice or not delays or percentile(delays, 0.99) >= args.limit)
    others = {key: len(v) for key, v in arrivals.seen.items() if key[1] in ("sue@example.ru", str(CHAT_SUE))}
    print(f"to sue (line B, no probe there): {sum(others.values())} message(s)")
    failed |= bool(sum(others.values()))
    print("FAILED" if failed else f"OK: p99 under {args.limit:.0f} s, one message per probe and channel, none to sue")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
