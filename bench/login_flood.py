"""Login flood benchmark: the PBX's callbacks while people (or an attacker) hammer the login form.

    .venv/bin/python bench/login_flood.py                      # SQLite in a temporary directory
    .venv/bin/python bench/login_flood.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/bench
    .venv/bin/python bench/login_flood.py --root /tmp/old      # the same against another checkout

`connector serve` (waitress, 32 threads, embedded worker) with one user, `sam`. Signed callbacks go in on an
open loop (`--rate` per second, latency counted from the scheduled time), for `--seconds` each:

- quiet: no flood;
- flood, one address: `--flooders` clients post wrong passwords for `sam` back to back from one address
  (the throttle soon answers them 429 without checking anything);
- flood, many addresses: each wrong login from a new address (X-Forwarded-For, TRUSTED_PROXIES=1) for a new
  username, so no throttle bucket ever fills and every attempt asks for a password check: what protects the
  callbacks then is that a process checks one password at a time and turns the rest away (503).

Callback p50/p99 of the three are printed side by side, with what the flood got. The PostgreSQL database
given is wiped.
"""
from __future__ import annotations

import argparse
import http.client
import multiprocessing
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.ingest import connector_env, free_port, in_process, open_loop, pct, wait_up  # noqa: E402

CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')


def flood(port: int, flooders: int, seconds: float, spread: bool, queue) -> None:
    """In its own process: `flooders` clients post wrong logins back to back; reports status counts."""
    stop_at = time.monotonic() + seconds
    counts: Counter = Counter()
    lock = threading.Lock()

    def client(n: int):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("GET", "/login")
        page = conn.getresponse()
        cookie = page.getheader("Set-Cookie", "").split(";")[0]
        token = CSRF.search(page.read().decode()).group(1)
        i = 0
        while time.monotonic() < stop_at:
            i += 1
            name = f"nobody{n}-{i}" if spread else "sam"
            headers = {"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie}
            if spread:
                headers["X-Forwarded-For"] = f"10.{n}.{i // 250 % 250}.{i % 250 + 1}"
            body = urlencode({"username": name, "password": "wrong password!", "csrf_token": token})
            try:
                conn.request("POST", "/login", body=body, headers=headers)
                response = conn.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                status = "error"
            with lock:
                counts[status] += 1

    threads = [threading.Thread(target=client, args=(n,)) for n in range(flooders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    queue.put(dict(counts))


def measure(port: int, rate: float, seconds: float, offset: int, flooders: int, spread: bool | None):
    """Callback latencies (ms) over `seconds`, with a flood running meanwhile unless `spread` is None."""
    flood_queue, flood_proc = None, None
    if spread is not None:
        flood_queue = multiprocessing.Queue()
        flood_proc = multiprocessing.Process(target=flood, args=(port, flooders, seconds + 1.0, spread, flood_queue))
        flood_proc.start()
        time.sleep(0.5)  # the flood is on before the first callback
    latencies, errors = in_process(open_loop, port, rate, seconds, offset)
    logins = {}
    if flood_proc is not None:
        logins = flood_queue.get()
        flood_proc.join()
    return [x * 1000 for x in latencies], errors, logins


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=50.0, help="callbacks per second")
    parser.add_argument("--flooders", type=int, default=24, help="concurrent wrong logins (16-32 in the issue)")
    parser.add_argument("--root", default=str(ROOT), help="the checkout whose connector is measured")
    args = parser.parse_args()

    tmp = tempfile.mkdtemp(prefix="login-flood-")
    database_url = args.database_url or f"sqlite:///{tmp}/connector.db"
    if database_url.startswith("postgresql"):
        from bench.common import wipe_postgres

        wipe_postgres(database_url)
    port = free_port()
    env = {**connector_env(database_url, tmp, port), "TRUSTED_PROXIES": "1", "PYTHONPATH": args.root}
    command = [sys.executable, "-c", "import app; app.main()"]
    added = subprocess.run([*command, "users", "add", "sam", "--role", "supervisor", "--password-stdin"],
                           cwd=args.root, env=env, input="correct horse battery\n", capture_output=True, text=True)
    if added.returncode:
        raise SystemExit(f"users add: {added.stderr.strip()}")
    log = open(Path(tmp, "server.log"), "w")
    server = subprocess.Popen([*command, "serve"], cwd=args.root, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_up(port, server)
        print(f"connector from {args.root}; database: {database_url.split('@')[-1]}; callbacks at {args.rate:.0f}/s "
              f"for {args.seconds:.0f} s per column; {args.flooders} concurrent wrong logins")
        results = {}
        for offset, (name, spread) in enumerate([("quiet", None), ("flood, one address", False),
                                                 ("flood, many addresses", True)]):
            results[name] = measure(port, args.rate, args.seconds, offset * 100_000, args.flooders, spread)
        names = list(results)
        print(f"{'callbacks (ms from schedule)':<30}" + "".join(f"{n:>24}" for n in names))
        for label, p in (("p50", 50), ("p95", 95), ("p99", 99)):
            print(f"{label:<30}" + "".join(f"{pct(results[n][0], p):>24.1f}" for n in names))
        print(f"{'callbacks not 200':<30}" + "".join(f"{results[n][1]:>24}" for n in names))
        for n in names[1:]:
            logins = results[n][2]
            total = sum(logins.values())
            shown = ", ".join(f"{status}: {count}" for status, count in sorted(logins.items(), key=str))
            print(f"logins during '{n}': {total / args.seconds:.0f}/s ({shown})")
    finally:
        server.terminate()
        server.wait(timeout=20)
        log.close()


if __name__ == "__main__":
    main()
