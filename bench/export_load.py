"""Intake under export load: signed MANGO callbacks at a fixed rate into `connector serve` while QA staff
export and report, beside the same callbacks with nothing else running, measured in the same run.

    PYTHONPATH=. .venv/bin/python bench/export_load.py                      # SQLite, 200,000 calls
    PYTHONPATH=. .venv/bin/python bench/export_load.py \\
        --database-url postgresql+psycopg://postgres@127.0.0.1:5432/bench_reads
    PYTHONPATH=. .venv/bin/python bench/export_load.py --calls 20000        # smaller and quicker

1. `--calls` calls (each with a customer score and a CRM record) are seeded in bulk, and a supervisor.
2. `connector serve` starts on them (waitress, embedded worker), as `bench/ingest.py` runs it.
3. No load: callbacks at `--rate`/s, open loop, for `--seconds` (latency counted from the scheduled send,
   so no coordinated omission).
4. Load: the supervisor, logged in through the console's form, downloads `--exports` XLSX exports of every
   call at once, and `/reports` (every figure and chart over every call) runs every `--report-every` seconds
   (1: a supervisor reloading it; 0: back to back, a storm of console pages once reports are reused) until
   they are done; callbacks go at the same rate the whole time (for at most `--max-seconds`), and only those sent
   while the exports ran count.
5. No load again, as in 3: on a machine shared with other work the quiet spells differ, so both count.

The figures: p50/p99 acknowledgement under load beside no load (before and after together), against the
goal (p99 within 2x the no-load p99 and under 100 ms); the CPU time `connector serve` itself used under load
(its child processes apart) and the machine's load average, which tells a quiet run from a shared one. `--code DIR` serves another checkout (e.g. the code before the change:
`git archive <commit> | tar -x -C DIR`) on the same data, to show what changed. A PostgreSQL database given
is wiped.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402

from bench.ingest import _post, bodies, connector_env, free_port, pct, wait_up  # noqa: E402

USER, PASSWORD = "bench-supervisor", "bench password"


def seed(url: str, n: int) -> float:
    """`n` calls over the last 60 days, each with its customer score and a CRM record, in bulk."""
    from sqlalchemy import insert

    from connector.core.db import Database, upgrade
    from connector.core.models import Call, CrmRecord, Score
    from connector.core.users import add_user

    started = time.monotonic()
    upgrade(url)
    db = Database(url)
    start = datetime.now(timezone.utc) - timedelta(days=60)
    step = timedelta(days=60) / max(n, 1)
    chunk = 5000
    for first in range(0, n, chunk):
        calls, scores, records = [], [], []
        for i in range(first, min(first + chunk, n)):
            at = start + i * step
            score = None if i % 4 == 0 else 1 + i % 10
            tag = f"Оценка {score}" if score is not None and score < 9 else None
            calls.append({"id": i + 1, "entry_id": f"seed-{i}", "direction": "inbound",
                          "operator_extension": str(100 + i % 50), "customer_phone": f"7900{i:07d}",
                          "line_number": f"7495000000{i % 5}", "created_at": at, "ended_at": at + timedelta(minutes=2),
                          "talk_seconds": 120 if i % 7 else 0, "entry_result": 1,
                          "survey": "not_offered" if score is None else "answered", "customer_score": score,
                          "decision_record": score is not None, "decision_tag": tag,
                          "crm_status": "delivered", "first_seen_at": at, "listed_at": at, "updated_at": at})
            if score is not None:
                scores.append({"call_id": i + 1, "source": "customer", "origin": "mango_dtmf", "raw": str(score),
                               "value": score, "status": "accepted", "reason": "accepted", "record": True,
                               "tag": tag, "operator_extension": str(100 + i % 50), "rated_at": at,
                               "received_at": at})
            records.append({"call_id": i + 1, "crm": "amocrm", "status": "delivered", "entity_type": "contacts",
                            "entity_id": 1000 + i, "attempts": 1, "updated_at": at})
        with db.transaction() as s:
            s.execute(insert(Call), calls)
            if scores:
                s.execute(insert(Score), scores)
            s.execute(insert(CrmRecord), records)
    with db.transaction() as s:
        add_user(s, USER, "supervisor", PASSWORD)
    if db.is_postgres:
        from sqlalchemy import text

        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("SELECT setval(pg_get_serial_sequence('calls', 'id'), :n)"), {"n": n})
            conn.execute(text("VACUUM ANALYZE"))
    db.dispose()
    return time.monotonic() - started


def open_loop(port: int, rate: float, seconds: float, offset: int, ready, stop, queue) -> None:
    """In its own process: a request due every 1/rate s for `seconds`, or until `stop` is set (then no more
    are sent); latency from the due time. The signed bodies are made first, then `ready` is set and the
    first request goes 0.5 s later. Reports the latencies and the non-200 count."""
    total = int(rate * seconds)
    work = bodies(total, offset)
    start = time.monotonic() + 0.5
    ready.set()
    latencies: list[float] = []
    errors, lock, next_index = [0], threading.Lock(), [0]

    def client():
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while True:
            with lock:
                i = next_index[0]
                next_index[0] += 1
            if i >= total:
                return
            due = start + i / rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            if stop is not None and stop.is_set():
                return
            status = _post(conn, *work[i])
            done = time.monotonic()
            with lock:
                latencies.append(done - due)
                if status != 200:
                    errors[0] += 1

    threads = [threading.Thread(target=client) for _ in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    queue.put((latencies, errors[0]))


def logged_in(base: str) -> requests.Session:
    session = requests.Session()
    page = session.get(f"{base}/login", timeout=30).text
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    for _ in range(30):  # the server checks one password at a time and answers 503 to the others meanwhile
        answer = session.post(f"{base}/login", data={"username": USER, "password": PASSWORD, "csrf_token": token},
                              allow_redirects=False, timeout=30)
        if answer.status_code != 503:
            break
        time.sleep(float(answer.headers.get("Retry-After", 1)))
    assert answer.status_code == 302, f"login failed: {answer.status_code}"
    return session


def exports_and_reports(base: str, exports: int, every: float, results: dict, done: threading.Event) -> None:
    """`exports` XLSX exports at once, and /reports every `every` seconds (0: back to back) until they are all
    done."""

    def export(n: int):
        session = logged_in(base)
        started = time.monotonic()
        answer = session.get(f"{base}/calls/export.xlsx", timeout=3600)
        results.setdefault("exports", []).append((answer.status_code, len(answer.content),
                                                  time.monotonic() - started))

    def reports():
        session = logged_in(base)
        while not done.is_set():
            started = time.monotonic()
            answer = session.get(f"{base}/reports", timeout=3600)
            results.setdefault("reports", []).append((answer.status_code, time.monotonic() - started))
            done.wait(max(0.0, started + every - time.monotonic()))

    workers = [threading.Thread(target=export, args=(n,)) for n in range(exports)]
    reporter = threading.Thread(target=reports)
    for t in workers:
        t.start()
    reporter.start()
    for t in workers:
        t.join()
    done.set()
    reporter.join()


def start_serve(code: Path, url: str, data_dir: str, port: int) -> subprocess.Popen:
    env = {**connector_env(url, data_dir, port), "PYTHONPATH": str(code)}
    log = open(Path(data_dir, f"serve-{port}.log"), "w")  # a pipe nobody reads would stall it
    return subprocess.Popen([sys.executable, "-c", "import app; app.main()", "serve"], cwd=code, env=env,
                            stdout=log, stderr=subprocess.STDOUT)


def measure(code: Path, url: str, data_dir: str, args, offset: int) -> dict:
    port = free_port()
    serve = start_serve(code, url, data_dir, port)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_up(port, serve)
        queue = multiprocessing.Queue()
        # No load.
        quiet = multiprocessing.Process(target=open_loop, args=(port, args.rate, args.seconds, offset,
                                                                multiprocessing.Event(), None, queue))
        quiet_started, quiet_cpu = time.monotonic(), cpu_seconds(serve.pid)[0]
        quiet.start()
        idle, idle_errors = queue.get()
        quiet.join()
        quiet_cpu = (cpu_seconds(serve.pid)[0] - quiet_cpu) / (time.monotonic() - quiet_started)
        # Under load: the exports and reports start with the callbacks; callbacks stop when the exports end.
        ready, stop, done, results = multiprocessing.Event(), multiprocessing.Event(), threading.Event(), {}
        loaded = multiprocessing.Process(target=open_loop, args=(port, args.rate, args.max_seconds,
                                                                 offset + 1_000_000, ready, stop, queue))
        loaded.start()
        ready.wait()
        time.sleep(0.5)  # the open loop's first request is due now
        started, cpu = time.monotonic(), cpu_seconds(serve.pid)
        exports_and_reports(base, args.exports, args.report_every, results, done)
        load_seconds = time.monotonic() - started
        results["serve_cpu"] = [after - before for before, after in zip(cpu, cpu_seconds(serve.pid))]
        results["loadavg"] = os.getloadavg()[0]
        stop.set()
        busy, busy_errors = queue.get()
        loaded.join()
        # No load again: the machine may be busier or quieter than it was at the start (other work on it).
        quiet = multiprocessing.Process(target=open_loop, args=(port, args.rate, args.seconds, offset + 3_000_000,
                                                                multiprocessing.Event(), None, queue))
        quiet.start()
        after, after_errors = queue.get()
        quiet.join()
        return {"idle": [x * 1000 for x in idle], "idle_errors": idle_errors, "busy": [x * 1000 for x in busy],
                "busy_errors": busy_errors, "after": [x * 1000 for x in after], "after_errors": after_errors,
                "load_seconds": load_seconds, "quiet_cores": quiet_cpu, **results}
    finally:
        serve.terminate()
        serve.wait(timeout=30)


def cpu_seconds(pid: int) -> tuple[float, float]:
    """CPU seconds used by a process itself, and by its child processes that have ended and been waited for
    (Linux: /proc/PID/stat)."""
    fields = [int(f) / os.sysconf("SC_CLK_TCK") for f in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[11:15]]
    return fields[0] + fields[1], fields[2] + fields[3]


def line(name: str, ms: list[float], errors: int) -> str:
    if not ms:
        return f"  {name:<34} no callbacks"
    return (f"  {name:<34} p50 {pct(ms, 50):7.1f}  p99 {pct(ms, 99):7.1f}  max {max(ms):7.1f}  n {len(ms):5d}"
            + (f"  ({errors} non-200)" if errors else ""))


def report(label: str, figures: dict, args) -> None:
    idle, busy = figures["idle"], figures["busy"]
    exports = figures.get("exports", [])
    reports = figures.get("reports", [])
    print(f"{label}:")
    print(f"  {args.exports} XLSX exports of {args.calls:,} calls: "
          + ", ".join(f"{status} {size / 1e6:.1f} MB in {secs:.1f} s" for status, size, secs in exports))
    if reports:
        pace = f"every {args.report_every:g} s" if args.report_every else "back to back"
        print(f"  /reports {pace} meanwhile: {len(reports)} runs, "
              f"{sum(secs for _, secs in reports) / len(reports):.1f} s each"
              + ("" if all(s == 200 for s, _ in reports) else f", statuses {sorted({s for s, _ in reports})}"))
    own, children = figures["serve_cpu"]
    print(f"  under load for {figures['load_seconds']:.0f} s: connector serve's own process used {own:.0f} s of CPU "
          f"({own / figures['load_seconds']:.2f} cores; {figures['quiet_cores']:.2f} with no export), its ended child "
          f"processes {children:.0f} s; the machine's load average at the end {figures['loadavg']:.1f} on "
          f"{os.cpu_count()} cores")
    print(f"  callbacks at {args.rate:.0f}/s, ms from the scheduled send:")
    print(line("no export (alone), before", idle, figures["idle_errors"]))
    print(line(f"{args.exports} XLSX exports + /reports", busy, figures["busy_errors"]))
    print(line("no export (alone), after", figures["after"], figures["after_errors"]))
    idle = idle + figures["after"]  # alone: before and after together
    if idle and busy:
        print(line("alone (before and after)", idle, figures["idle_errors"] + figures["after_errors"]))
        ratio = pct(busy, 99) / pct(idle, 99)
        met = ratio <= 2 and pct(busy, 99) < 100
        print(f"  p99 under load / alone: {ratio:.1f}x (goal <= 2x), p99 under load {pct(busy, 99):.1f} ms "
              f"(goal < 100 ms): {'met' if met else 'missed'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=20.0, help="the no-load run")
    parser.add_argument("--max-seconds", type=float, default=300.0, help="the loaded run stops here at most")
    parser.add_argument("--exports", type=int, default=2)
    parser.add_argument("--report-every", type=float, default=1.0,
                        help="seconds between one /reports and the next (a person reloading); 0: back to back")
    parser.add_argument("--code", type=Path, action="append", default=[],
                        help="also serve this checkout on the same data (repeatable)")
    args = parser.parse_args()

    tmp = tempfile.mkdtemp(prefix="export-load-")
    url = args.database_url or f"sqlite:///{tmp}/connector.db"
    if url.startswith("postgresql"):
        from bench.common import wipe_postgres

        wipe_postgres(url)
    took = seed(url, args.calls)
    where = url.split("@")[-1] if "@" in url else "SQLite (WAL)"
    print(f"database: {where}; seeded {args.calls:,} calls in {took:.0f} s; callbacks at {args.rate:.0f}/s")
    offset = 0
    for label, code in [("this checkout", ROOT), *((f"{c}", c) for c in args.code)]:
        figures = measure(code.resolve(), url, tmp, args, offset)
        offset += 2_000_000
        report(label, figures, args)


if __name__ == "__main__":
    main()
