"""Ingest benchmark: signed MANGO callbacks into `connector serve`, beside three anchors under the same server
(waitress, 32 threads), measured in the same run: a bare Flask endpoint that parses the form and answers,
a bare WSGI callable that reads the body and answers (the floor of the server itself), and that callable
storing each body durably before it answers (the stored floor: the least any connector must do, so the most
any could reach here).

    .venv/bin/python bench/ingest.py                       # SQLite in a temporary directory
    .venv/bin/python bench/ingest.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/bench
    .venv/bin/python bench/ingest.py --server gunicorn --database-url postgresql+psycopg://...   # production set-up
    .venv/bin/python bench/ingest.py --intake-only     # the request path alone: nothing applies what is stored

`--server waitress` (default) is `connector serve` with its embedded worker; `--server gunicorn` is the
Procfile's set-up: gunicorn with gevent workers (gunicorn.conf.py) and a standalone `connector worker`, the
anchors then under the same gunicorn settings.

Closed loop: `--connections` keep-alive clients post as fast as answers come, for `--seconds`;
three interleaved repetitions (floor, stored floor, Flask, connector, floor, ...). Open loop: requests are
scheduled at `--rate` per second whatever the answers do, and latency is counted from the scheduled
time (no coordinated omission). The apply lag (a callback's commit to its call being visible in the
API) comes from the inbox's own timestamps, for the open loop's callbacks (the closed loop offers more
than any server here takes, so its backlog says how long a flood takes to apply, printed apart). The load
runs in its own process. The PostgreSQL database given is wiped.
"""
from __future__ import annotations

import argparse
import http.client
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from datetime import datetime
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

KEY, SALT = "bench-key", "bench-salt"

BARE_APP = textwrap.dedent("""
    import logging
    import sys
    from flask import Flask, request
    from waitress import serve
    app = Flask("bare")
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # as `connector serve` does

    @app.post("/mango/<path:kind>")
    def event(kind):
        request.form.get("json")  # parse the form, as the connector does
        return {"success": True}

    @app.get("/healthz")
    def health():
        return {"status": "ok"}

    serve(app, host="127.0.0.1", port=int(sys.argv[1]), threads=32, ident="bare",
          connection_limit=1000, channel_timeout=30, cleanup_interval=10)  # the settings of `connector serve`
""")

# The floor: what the server itself costs for a request of this size, with no framework at all.
FLOOR_APP = textwrap.dedent("""
    import logging
    import sys
    from waitress import serve
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    BODY = b'{"success":true}\\n'

    def app(environ, start_response):
        environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))])
        return [BODY]

    serve(app, host="127.0.0.1", port=int(sys.argv[1]), threads=32, ident="floor",
          connection_limit=1000, channel_timeout=30, cleanup_interval=10)  # the settings of `connector serve`
""")


# The floor with the one thing any connector must do before it answers: the body stored durably, once (a unique
# key against duplicates), committed. No form, no signature, no validation, nothing applied: the most that any
# implementation could reach on this machine, the store being the same database the connector writes to (its own
# table; SQLite: a file of its own beside the connector's, with the connector's pragmas).
STORED_FLOOR_APP = textwrap.dedent("""
    import hashlib
    import logging
    import os
    import queue
    import sqlite3
    import sys
    import threading
    from datetime import datetime, timezone
    from waitress import serve
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    BODY = b'{"success":true}\\n'
    URL = os.environ["DATABASE_URL"]
    CREATE = ("CREATE TABLE IF NOT EXISTS anchor_events (id {key}, dedupe_key VARCHAR(64) NOT NULL UNIQUE, "
              "payload TEXT NOT NULL, received_at TIMESTAMP NOT NULL)")
    INSERT = "INSERT INTO anchor_events (dedupe_key, payload, received_at) VALUES ({p}, {p}, {p}) ON CONFLICT DO NOTHING"

    if URL.startswith("sqlite"):
        connection = sqlite3.connect(os.path.join(os.path.dirname(URL.split("///", 1)[1]), "anchor.db"),
                                     isolation_level=None, check_same_thread=False)
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=30000"):
            connection.execute("PRAGMA " + pragma)
        connection.execute(CREATE.format(key="INTEGER PRIMARY KEY"))
        writer, statement = threading.Lock(), INSERT.format(p="?")

        def store(key, payload, now):
            with writer:  # one writer at a time, as SQLite allows
                connection.execute(statement, (key, payload, now))
    else:
        import psycopg
        conninfo = URL.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(conninfo, autocommit=True) as setup:
            setup.execute(CREATE.format(key="BIGSERIAL PRIMARY KEY"))
        pool, statement = queue.LifoQueue(), INSERT.format(p="%s")

        def store(key, payload, now):
            try:
                conn = pool.get_nowait()
            except queue.Empty:
                conn = psycopg.connect(conninfo, autocommit=True)
            try:
                conn.execute(statement, (key, payload, now))  # autocommit: one round trip
            finally:
                pool.put(conn)

    def app(environ, start_response):
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        if environ["REQUEST_METHOD"] == "POST":
            store(hashlib.sha256(body).hexdigest(), body.decode("latin-1"), datetime.now(timezone.utc))
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))])
        return [BODY]

    serve(app, host="127.0.0.1", port=int(sys.argv[1]), threads=32, ident="stored",
          connection_limit=1000, channel_timeout=30, cleanup_interval=10)  # the settings of `connector serve`
""")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(port: int, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}: see server-*.log in its data directory")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("server did not start")


STATES = ("Appeared", "Connected", "OnHold", "Connected", "Disconnected")


def call_events(n: int) -> list[tuple[str, str]]:
    """The callbacks of one call, as MANGO sends them: 10 leg state changes, the recording, the
    survey digits and the summary (13 callbacks), each a signed form body."""
    from connector.inbound.mango.callbacks import signed_form

    entry, leg, now = f"bench-{os.getpid()}-{n}", f"leg-{n}", int(time.time())
    payloads = [("events/call", {"entry_id": entry, "call_id": leg, "seq": seq, "timestamp": now,
                                 "call_state": STATES[seq % 5],
                                 "location": "abonent", "from": {"number": "79001234567"},
                                 "to": {"extension": "101", "number": "74950000000", "line_number": "74950000000"}})
                for seq in range(1, 11)]
    payloads += [
        ("events/recording", {"entry_id": entry, "call_id": leg, "recording_id": f"rec-{entry}", "seq": 11,
                              "recording_state": "Completed", "completion_code": 1000, "timestamp": now}),
        ("events/dtmf", {"entry_id": entry, "call_id": leg, "seq": 12, "dtmf": str(1 + n % 10), "location": "ivr.5",
                         "timestamp": now}),
        ("events/summary", {"entry_id": entry, "call_direction": 1, "from": {"number": "79001234567"},
                            "to": {"extension": "101", "number": "74950000000"}, "line_number": "74950000000",
                            "create_time": now - 70, "forward_time": now - 68, "talk_time": now - 60,
                            "end_time": now, "entry_result": 1, "disconnect_reason": 1110}),
    ]
    return [(f"/mango/{kind}", urlencode(signed_form(KEY, SALT, payload))) for kind, payload in payloads]


def bodies(count: int, offset: int) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    n = offset
    while len(out) < count:
        out.extend(call_events(n))
        n += 1
    return out[:count]


HEADERS = {"Content-Type": "application/x-www-form-urlencoded"}


def _post(conn: http.client.HTTPConnection, path: str, body: str) -> int:
    conn.request("POST", path, body=body, headers=HEADERS)
    response = conn.getresponse()
    response.read()
    return response.status


TICK = os.sysconf("SC_CLK_TCK")


def machine_busy() -> float:
    """CPU seconds the whole machine has spent on anything but idling, since boot (Linux's /proc/stat)."""
    user, nice, system, idle, iowait, *rest = map(int, Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:])
    return (user + nice + system + sum(rest[:3])) / TICK  # irq, softirq, steal


def process_tree(pid: int) -> set[int]:
    """`pid` and its descendants now (a gunicorn master's workers)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        fields = _read(entry / "stat").rsplit(")", 1)[-1].split() if entry.name.isdigit() else []
        if len(fields) > 1:  # none: not a process, or it ended meanwhile
            parents[int(entry.name)] = int(fields[1])
    tree, grown = {pid}, True
    while grown:
        found = {child for child, parent in parents.items() if parent in tree} - tree
        tree |= found
        grown = bool(found)
    return tree


def postgres_processes() -> set[int]:
    """The PostgreSQL server's processes on this machine (its backends do the database's share of the work)."""
    return {int(e.name) for e in Path("/proc").iterdir()
            if e.name.isdigit() and _read(e / "comm").startswith("postgres")}


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def cpu_seconds(pids: set[int]) -> float:
    """User and system CPU seconds the processes have used so far."""
    total = 0
    for pid in pids:
        fields = _read(Path(f"/proc/{pid}/stat")).rsplit(")", 1)[-1].split()
        if len(fields) > 12:
            total += int(fields[11]) + int(fields[12])
    return total / TICK


def closed_loop(port: int, connections: int, seconds: float, offset: int, queue) -> None:
    """In its own process: `connections` clients post back to back; reports (count, errors, the machine's
    busy CPU seconds while they posted: the load itself included, the making of the bodies not)."""
    work = bodies(int(8000 * seconds), offset)  # more than any server here answers: the run is never cut short
    lock, cursor, counts = threading.Lock(), [0], [0, 0]
    busy_before = machine_busy()
    stop_at = time.monotonic() + seconds

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while time.monotonic() < stop_at:
            with lock:
                if cursor[0] >= len(work):
                    return
                path, body = work[cursor[0]]
                cursor[0] += 1
            status = _post(conn, path, body)
            with lock:
                counts[0 if status == 200 else 1] += 1

    threads = [threading.Thread(target=client) for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    queue.put((*counts, machine_busy() - busy_before))


def open_loop(port: int, rate: float, seconds: float, offset: int, queue) -> None:
    """In its own process: requests start on a fixed schedule; latency counts from the schedule."""
    total = int(rate * seconds)
    work = bodies(total, offset)
    start = time.monotonic() + 0.5
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    next_index = [0]

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
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


def in_process(target, *args, fresh: bool = False):
    """`target(*args, queue)` in its own process, and what it put in the queue. `fresh`: a process started
    afresh, not forked: a fork of a process whose threads hold locks (a server's, an event loop's) may hang."""
    context = multiprocessing.get_context("spawn" if fresh else None)
    queue = context.Queue()
    proc = context.Process(target=target, args=(*args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] if ordered else float("nan")


BIN = Path(sys.executable).parent


def connector_env(database_url: str, data_dir: str, port: int) -> dict:
    return {**os.environ, "DATABASE_URL": database_url, "DATA_DIR": data_dir, "PORT": str(port),
            "MANGO_API_KEY": KEY, "MANGO_API_SALT": SALT, "MANGO_SURVEY_LOCATION": "ivr.5",
            "ADMIN_TOKEN": "bench-admin-token-Jr5mQ9wT3xC7vN2kL8pZ4hB6", "SECRET_KEY": "bench-secret", "CRM": "none",
            "PROMETHEUS_MULTIPROC_DIR": os.path.join(data_dir, "metrics")}


ANCHORS = {"floor": FLOOR_APP, "stored floor": STORED_FLOOR_APP, "bare Flask": BARE_APP}  # name -> its program


def start_servers(server: str, database_url: str, data_dir: str, ports: dict[str, int], *,
                  apply: bool = True) -> dict[str, subprocess.Popen]:
    """The anchors and the connector (with whatever applies its events, unless not `apply`), under `server`."""
    env = connector_env(database_url, data_dir, ports["connector"])
    # Logs go to files: a pipe nobody reads fills up and stalls the server at its next log line.
    logs = iter(open(Path(data_dir, f"server-{n}.log"), "w") for n in range(len(ANCHORS) + 2))
    if server == "waitress":
        started = {name: subprocess.Popen([sys.executable, "-c", program, str(ports[name])], env=env,
                                          stdout=next(logs), stderr=subprocess.STDOUT)
                   for name, program in ANCHORS.items()}
        serve = ["serve"] if apply else ["serve", "--no-worker"]
        started["connector"] = subprocess.Popen([sys.executable, "-c", "import app; app.main()", *serve], cwd=ROOT,
                                                env=env, stdout=next(logs), stderr=subprocess.STDOUT)
        return started
    subprocess.run([str(BIN / "connector"), "db", "upgrade"], cwd=ROOT, env=env, check=True, capture_output=True)
    gunicorn = [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py"]
    started = {}
    for n, (name, program) in enumerate(ANCHORS.items()):
        Path(data_dir, f"anchor_{n}.py").write_text(program.split("serve(app")[0])  # the app, not its server
        started[name] = subprocess.Popen([*gunicorn, "--pythonpath", data_dir, f"anchor_{n}:app"], cwd=ROOT,
                                         env={**env, "PORT": str(ports[name])}, stdout=next(logs),
                                         stderr=subprocess.STDOUT)
    started["connector"] = subprocess.Popen([*gunicorn, "app:create_app()"], cwd=ROOT, env=env, stdout=next(logs),
                                            stderr=subprocess.STDOUT)
    if apply:
        started["worker"] = subprocess.Popen([str(BIN / "connector"), "worker"], cwd=ROOT, env=env,
                                             stdout=next(logs), stderr=subprocess.STDOUT)
    return started


def _engine(database_url: str):
    from sqlalchemy import create_engine

    return create_engine(database_url)


def last_event_id(database_url: str) -> int:
    from sqlalchemy import text

    engine = _engine(database_url)
    with engine.connect() as conn:
        last = conn.execute(text("SELECT max(id) FROM inbound_events")).scalar()
    engine.dispose()
    return last or 0


def apply_lag(database_url: str, after_id: int = 0, up_to_id: int | None = None) -> tuple[list[float], int]:
    """Commit-to-applied seconds of the events with ids in (after_id, up_to_id]; and how many wait still."""
    from sqlalchemy import text

    engine = _engine(database_url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT received_at, applied_at FROM inbound_events WHERE id > :a AND id <= :b"),
                            {"a": after_id, "b": up_to_id if up_to_id is not None else 2**62}).all()
    engine.dispose()

    def moment(value):  # SQLite hands back text
        return datetime.fromisoformat(value) if isinstance(value, str) else value

    lags = [(moment(a) - moment(r)).total_seconds() for r, a in rows if a is not None]
    return lags, sum(1 for _, a in rows if a is None)


def wait_applied(database_url: str, seconds: float = 120.0) -> float:
    """Seconds until nothing waits to be applied (the closed loop's backlog drained)."""
    started = time.monotonic()
    while apply_lag(database_url)[1] and time.monotonic() - started < seconds:
        time.sleep(0.5)
    return time.monotonic() - started


def lag_line(what: str, lags: list[float], unapplied: int) -> str:
    ms = [x * 1000 for x in lags] or [float("nan")]
    return (f"{what} ({len(lags)} events): p50 {pct(ms, 50):.0f} ms  p95 {pct(ms, 95):.0f} ms  p99 {pct(ms, 99):.0f} ms"
            f"  max {max(ms):.0f} ms; {unapplied} unapplied")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rate", type=float, default=300.0)
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--server", choices=["waitress", "gunicorn"], default="waitress")
    parser.add_argument("--intake-only", action="store_true",
                        help="nothing applies the stored callbacks (`serve --no-worker`, no `connector worker`): "
                             "the request path alone, to tell its cost from applying's")
    args = parser.parse_args()

    tmp = tempfile.mkdtemp(prefix="ingest-bench-")
    database_url = args.database_url or f"sqlite:///{tmp}/connector.db"
    if database_url.startswith("postgresql"):
        from bench.common import wipe_postgres

        wipe_postgres(database_url)
    names = [*ANCHORS, "connector"]
    ports = {name: free_port() for name in names}
    processes = start_servers(args.server, database_url, tmp, ports, apply=not args.intake_only)
    try:
        for name in names:
            wait_up(ports[name], processes[name])
        print(f"server: {args.server}{' (intake only: nothing applies)' if args.intake_only else ''}; "
              f"database: {database_url.split('@')[-1]}; {args.connections} connections, "
              f"{args.seconds:.0f} s per run, {args.repetitions} interleaved repetitions")
        offset = 0
        closed: dict[str, list[float]] = {name: [] for name in names}
        spent: dict[str, dict[str, float]] = {name: {} for name in names}  # CPU seconds by part, callbacks
        for _ in range(args.repetitions):
            for name in names:
                parts = {"server": process_tree(processes[name].pid)}
                if name == "connector" and "worker" in processes:
                    parts["worker"] = process_tree(processes["worker"].pid)
                if database_url.startswith("postgresql"):
                    parts["PostgreSQL"] = postgres_processes()
                before = {part: cpu_seconds(pids) for part, pids in parts.items()}
                ok, errors, busy = in_process(closed_loop, ports[name], args.connections, args.seconds, offset)
                offset += 100_000
                closed[name].append(ok / args.seconds)
                for part, pids in parts.items():
                    spent[name][part] = spent[name].get(part, 0.0) + cpu_seconds(pids) - before[part]
                for part, value in (("machine", busy), ("callbacks", ok)):
                    spent[name][part] = spent[name].get(part, 0.0) + value
                if errors:
                    print(f"  ! {name}: {errors} non-200 answers")
        rate = {name: statistics.median(runs) for name, runs in closed.items()}
        print("closed loop (median of runs, callbacks/s):")
        for name in names:
            print(f"  {name:<12} {rate[name]:8.0f}   runs {', '.join(f'{r:.0f}' for r in closed[name])}")
        print(f"  connector / bare Flask {rate['connector'] / rate['bare Flask']:5.2f}   (target >= 1.0)")
        print(f"  connector / floor      {rate['connector'] / rate['floor']:5.2f}   "
              f"(bare Flask / floor {rate['bare Flask'] / rate['floor']:.2f})")
        print(f"  stored floor / bare Flask {rate['stored floor'] / rate['bare Flask']:5.2f}   (the most any "
              "connector could reach here: the server and the durable insert, nothing else)")
        print(f"CPU per callback in the closed loop, µs (the machine: every process on its {os.cpu_count()} cores, "
              "the load's own included):")
        for name in names:
            used = spent[name]
            print(f"  {name:<12} " + "  ".join(f"{part} {1e6 * used[part] / used['callbacks']:4.0f}"
                                                for part in used if part != "callbacks"))
        if not args.intake_only:
            drained = wait_applied(database_url)
            print(lag_line(f"closed loop's backlog applied {drained:.1f} s after its last run; apply lag",
                           *apply_lag(database_url)))

        print(f"open loop at {args.rate:.0f}/s for {args.seconds:.0f} s (ms from the scheduled start):")
        p99s = {}
        before = last_event_id(database_url)
        for name in names:
            latencies, errors = in_process(open_loop, ports[name], args.rate, args.seconds, offset)
            offset += 100_000
            ms = [x * 1000 for x in latencies]
            p99s[name] = pct(ms, 99)
            print(f"  {name:<12} p50 {pct(ms, 50):6.1f}  p95 {pct(ms, 95):6.1f}  p99 {pct(ms, 99):6.1f}"
                  f"{f'  ({errors} non-200)' if errors else ''}")
        print(f"  connector p99 {p99s['connector']:.1f} ms (target <= 15 ms, or <= 2x the bare Flask p99 "
              f"{2 * p99s['bare Flask']:.1f} ms on a loaded machine)")
        if not args.intake_only:
            time.sleep(2)  # let the worker finish the last batch
            print(lag_line("apply lag at the open loop's rate, commit to visible", *apply_lag(database_url, before))
                  + " (target p99 < 1000 ms)")
    finally:
        for proc in processes.values():
            proc.terminate()
            proc.wait(timeout=20)


if __name__ == "__main__":
    main()
