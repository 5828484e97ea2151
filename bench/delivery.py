"""Delivery throughput against the fake amoCRM at its real limit of 7 requests per second.

Every call has a low score, so each needs two requests (log the call, tag the entity).
With batches of 50 the bound is 7 x 50 / 2 = 175 calls per second; the baseline sends
one call per request (bound 3.5 per second). Run:

    .venv/bin/python bench/delivery.py [--calls 1750] [--baseline-calls 35] [--workers 1]
    .venv/bin/python bench/delivery.py --load 100 [--database-url ...]

With `--load RATE`, the delivery runs inside `connector serve` (the embedded set-up: web server, inbox
and delivery worker in one process), first alone and then while another process posts RATE MANGO call
state callbacks per second to it (calls without a summary: they load the server and the database but
add nothing to deliver). Time runs from amoCRM's first request to the last job done. With `--split`,
the web process (`connector serve --no-worker`) and a `connector worker` are two processes, the
production layout of the Procfile.
"""
from __future__ import annotations

import argparse
import http.client
import logging
import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import func, select  # noqa: E402

from app import create_app  # noqa: E402
from connector.wiring import build_worker  # noqa: E402
from connector.core.db import downgrade, upgrade  # noqa: E402
from connector.core.models import DeliveryJob  # noqa: E402
from tests.conftest import MangoPoster, dtmf, make_config, summary  # noqa: E402
from tests.fakes.amocrm import FakeAmo, create_fake_app  # noqa: E402
from tests.fakes.server import serving  # noqa: E402

RATE = 7
ROOT = Path(__file__).resolve().parent.parent
logging.getLogger("werkzeug").setLevel(logging.WARNING)


def open_jobs(db) -> int:
    with db.transaction() as s:
        return s.scalar(select(func.count()).select_from(DeliveryJob).where(DeliveryJob.status != "done"))


CRM_SETTINGS = {"CRM": "amocrm", "AMOCRM_LONG_LIVED_TOKEN": "bench-token", "SURVEY_WAIT_SECONDS": "0",
                "AMOCRM_RATE_LIMIT": str(RATE), "AMOCRM_USER_MAP": "101:5551"}


def prepare(url: str, fake, calls: int, wipe: bool, settings: dict, recordings: bool = False):
    """An empty schema, then `calls` low-score calls (callers known to `fake`) waiting for delivery to
    the target of `settings`; returns (config, app)."""
    from tests.conftest import recording

    if wipe:
        downgrade(url, "base")  # each run starts from an empty schema: the database is wiped
    upgrade(url)
    config = make_config(url, **settings)
    app = create_app(config)
    post = MangoPoster(app.test_client())
    for i in range(calls):
        phone = f"7933{i:07d}"
        fake.add_contact(phone)
        post("events/summary", summary(f"b{i}", customer=phone))
        if recordings:
            post("events/recording", recording(f"b{i}", f"rec-b{i}"))
        post("events/dtmf", dtmf(f"b{i}", str(1 + i % 8)))
    return config, app


def check(fake: FakeAmo, calls: int) -> None:
    assert len(fake.calls) == calls, f"{len(fake.calls)} calls logged, expected {calls}"
    assert set(fake.tag_adds.values()) == {1}, "a tag was added twice"


def run(calls: int, batch: int, workers: int, database_url: str | None) -> tuple[float, FakeAmo]:
    fake = FakeAmo(rate_limit=RATE, long_lived_token="bench-token")
    with tempfile.TemporaryDirectory() as tmp, serving(create_fake_app(fake), ) as amo_url:
        url = database_url or f"sqlite:///{tmp}/bench.db"
        config, app = prepare(url, fake, calls, bool(database_url), {**CRM_SETTINGS, "AMOCRM_BASE_URL": amo_url})
        db = app.extensions["connector"].db
        pool = [build_worker(config, db) for _ in range(workers)]
        for worker in pool:
            worker.target.max_batch = batch
        stop = threading.Event()
        threads = [threading.Thread(target=w.run, args=(stop,), daemon=True) for w in pool]
        started = time.monotonic()
        for t in threads:
            t.start()
        while open_jobs(db):
            time.sleep(0.05)
        elapsed = time.monotonic() - started
        stop.set()
        for t in threads:
            t.join(timeout=10)
        check(fake, calls)
        db.dispose()
        return calls / elapsed, fake


B24_RATE = 2.0  # Bitrix24's leaky bucket drains 2 requests per second (5 on Enterprise)
B24_COMMANDS = 5  # per low-score call: register, finish, attachRecord; then a comment and the fields update
# (without a recording, 4)
MANGO_RECORDINGS_RATE = 10.0  # MANGO serves 10 recordings a second per product: each attach downloads one


class Later:
    """The connector's WSGI app, known only once its server has an address (its links name it)."""

    app = None

    def __call__(self, environ, start_response):
        return self.app(environ, start_response)


def run_bitrix24(calls: int, database_url: str | None, recordings: bool) -> tuple[float, int, int, float]:
    """`calls` low-score calls delivered to the fake Bitrix24 (bucket of 50 draining at 2/s); with
    `recordings`, each is attached for real: the portal downloads it inside attachRecord through the
    connector's signed link, served from the copy the connector made beforehand from the fake MANGO (10
    files a second), as it does while calls come in. Returns (calls/s, requests, 503 answers, seconds spent
    copying), timed from the worker's start until every call, mark and recording is in."""
    from connector.wiring import build_recording_copier, build_workers
    from tests.conftest import MANGO_KEY, MANGO_SALT
    from tests.fakes.bitrix24 import FakeBitrix24, create_fake_bitrix24
    from tests.fakes.mango import FakeMango, create_fake_mango

    fake = FakeBitrix24(drain_per_second=B24_RATE)
    pbx = FakeMango(MANGO_KEY, MANGO_SALT, recordings={f"rec-b{i}" for i in range(calls)},
                    rate_limit=int(MANGO_RECORDINGS_RATE))
    connector = Later()
    with tempfile.TemporaryDirectory() as tmp, serving(create_fake_bitrix24(fake)) as b24_url, \
            serving(create_fake_mango(pbx)) as pbx_url, serving(connector) as connector_url:
        url = database_url or f"sqlite:///{tmp}/bench.db"
        settings = {"CRM": "bitrix24", "SURVEY_WAIT_SECONDS": "0", **fake.connector_settings(b24_url),
                    "BITRIX24_RATE_LIMIT": str(B24_RATE), "BITRIX24_SCORE_FIELD": "UF_CRM_QA_SCORE",
                    "BITRIX24_LOW_SCORE_FIELD": "UF_CRM_QA_LOW", "PUBLIC_BASE_URL": connector_url,
                    "MANGO_API_URL": pbx_url + "/vpbx/", "MANGO_RATE_LIMIT": str(MANGO_RECORDINGS_RATE)}
        config, app = prepare(url, fake, calls, bool(database_url), settings, recordings=recordings)
        connector.app = app
        db = app.extensions["connector"].db
        [worker] = build_workers(config, db)
        copying = 0.0
        if recordings:  # as the calls came in over the day: each file copied once, at MANGO's pace
            copier = build_recording_copier(config, db, [worker])
            began = time.monotonic()
            while copier.run_once():
                pass
            copying = time.monotonic() - began
        stop = threading.Event()
        thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
        started = time.monotonic()
        thread.start()
        while open_jobs(db):
            time.sleep(0.05)
        elapsed = time.monotonic() - started
        stop.set()
        thread.join(timeout=10)
        assert len(fake.finished()) == len(fake.calls) == len(fake.statistics) == calls, \
            "a call was lost or registered twice"
        assert len(fake.comments) == calls, "a score comment was lost or doubled"
        if recordings:
            attached = [c.get("record_attaches", 0) for c in fake.calls.values()]
            assert attached == [1] * calls, "a recording was not attached, or attached twice"
        db.dispose()
        return calls / elapsed, len(fake.requests), sum(1 for r in fake.requests if r[2] == 503), copying


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post_call_states(port: int, rate: float, stop, sent) -> None:
    """In its own process: MANGO call state callbacks on a schedule of `rate` per second, from 8
    connections (an answer that is late does not delay the next one), until `stop` is set."""
    from urllib.parse import urlencode

    from connector.inbound.mango.callbacks import signed_form

    start, lock, counter = time.monotonic(), threading.Lock(), [0]

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while not stop.is_set():
            with lock:
                n = counter[0]
                counter[0] += 1
            delay = start + n / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            payload = {"entry_id": f"load-{n // 10}", "call_id": f"leg-{n // 10}", "seq": n % 10 + 1,
                       "timestamp": int(time.time()), "call_state": "Connected", "location": "abonent",
                       "from": {"number": "79001234567"}, "to": {"extension": "101", "number": "74950000000"}}
            conn.request("POST", "/mango/events/call", body=urlencode(signed_form("bench-key", "bench-salt", payload)),
                         headers={"Content-Type": "application/x-www-form-urlencoded"})
            conn.getresponse().read()
            with lock:
                sent.value += 1

    threads = [threading.Thread(target=client) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def run_served(calls: int, database_url: str | None, load: float, split: bool) -> tuple[float, float, FakeAmo]:
    """Delivery inside `connector serve`, with `load` call state callbacks per second posted to it;
    returns (scored calls per second, callbacks per second actually posted, the fake)."""
    fake = FakeAmo(rate_limit=RATE, long_lived_token="bench-token")
    with tempfile.TemporaryDirectory() as tmp, serving(create_fake_app(fake)) as amo_url:
        url = database_url or f"sqlite:///{tmp}/bench.db"
        _config, app = prepare(url, fake, calls, bool(database_url), {**CRM_SETTINGS, "AMOCRM_BASE_URL": amo_url})
        db = app.extensions["connector"].db
        port = free_port()
        env = {**os.environ, **CRM_SETTINGS, "DATABASE_URL": url, "DATA_DIR": tmp, "PORT": str(port),
               "AMOCRM_BASE_URL": amo_url, "MANGO_API_KEY": "bench-key", "MANGO_API_SALT": "bench-salt",
               "SECRET_KEY": "bench-secret", "ADMIN_TOKEN": "bench-admin-token-Jr5mQ9wT3xC7vN2kL8pZ4hB6"}
        stop, sent = multiprocessing.Event(), multiprocessing.Value("i", 0)
        with open(Path(tmp) / "serve.log", "w") as log_file:
            connector = [sys.executable, "-c", "import app; app.main()"]
            # Split: the web process only stores, a `connector worker` applies and delivers (the Procfile's layout).
            commands = ([[*connector, "serve", "--no-worker"], [*connector, "worker"]] if split
                        else [[*connector, "serve"]])
            servers = [subprocess.Popen(command, cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT)
                       for command in commands]
        loader = None
        try:
            if load:
                while True:  # the load starts as soon as the server listens
                    try:
                        socket.create_connection(("127.0.0.1", port), timeout=1).close()
                        break
                    except OSError:
                        time.sleep(0.05)
                loader = multiprocessing.Process(target=post_call_states, args=(port, load, stop, sent))
                loader.start()
                load_started = time.monotonic()
            while open_jobs(db):
                time.sleep(0.05)
            finished = time.monotonic()
        finally:
            stop.set()
            if loader:
                loader.join(timeout=30)
            for server in servers:
                server.terminate()
                server.wait(timeout=20)
            troubles = [line for line in (Path(tmp) / "serve.log").read_text().splitlines()
                        if " WARNING " in line or " ERROR " in line]
            for line in troubles[:5]:
                print(f"  serve: {line[:200]}")
        first = min(t for t, _m, path, _s in fake.requests if path.startswith("/api/"))
        check(fake, calls)
        db.dispose()
        posted = sent.value / (finished - load_started) if load else 0.0
        return calls / (finished - first), posted, fake


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=1750)
    parser.add_argument("--baseline-calls", type=int, default=35)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--database-url", default=None,
                        help="default: a temporary SQLite file; a given database is WIPED")
    parser.add_argument("--load", type=float, default=0.0,
                        help="call state callbacks per second posted to `connector serve` while it delivers")
    parser.add_argument("--split", action="store_true",
                        help="with --load: the web process and the worker as two processes, as in production")
    parser.add_argument("--bitrix24", action="store_true", help="deliver to the fake Bitrix24 instead")
    args = parser.parse_args()

    if args.bitrix24:
        calls = min(args.calls, 400)
        print(f"low-score calls delivered per second to the fake Bitrix24 (bucket 50, {B24_RATE:.0f} requests/s), "
              f"timed until every call, comment and recording is in:")
        for recordings in (False, True):
            rate, sent, refused, copying = run_bitrix24(calls, args.database_url, recordings)
            commands = B24_COMMANDS if recordings else B24_COMMANDS - 1
            bound = B24_RATE * 50 / commands
            print(f"  {'with recordings:   ' if recordings else 'without recordings:'} {rate:7.1f} calls/s  "
                  f"({calls} calls, {sent} requests, {refused} x 503)  bound portal {B24_RATE:.0f} x 50 / {commands}"
                  f" = {bound:.1f}/s -> {100 * rate / bound:.1f} % of it{' (target >= 90 %)' if recordings else ''}")
            if recordings:
                print(f"    (the {calls} files were copied from MANGO beforehand in {copying:.1f} s: "
                      f"{calls / copying:.1f}/s against its {MANGO_RECORDINGS_RATE:.0f}/s)")
        return
    bound = RATE * 50 / 2
    if args.load:
        alone, _, _ = run_served(args.calls, args.database_url, 0, args.split)
        loaded, posted, fake = run_served(args.calls, args.database_url, args.load, args.split)
        where = "`connector serve --no-worker` + `connector worker`" if args.split else "`connector serve`"
        print(f"scored calls delivered per second by {where}, fake amoCRM at {RATE} requests/s:")
        print(f"  alone:                       {alone:7.1f} calls/s  -> {100 * alone / bound:.1f} % of the bound")
        print(f"  under {posted:5.0f} callbacks/s:     {loaded:7.1f} calls/s  -> {100 * loaded / bound:.1f} % of the "
              f"bound {bound:.0f}/s (target >= 90 %); max {fake.max_requests_in_any_second()} requests in any "
              f"second, {sum(1 for r in fake.requests if r[3] == 429)} x 429")
        return
    batched, fake = run(args.calls, 50, args.workers, args.database_url)
    baseline, _ = run(args.baseline_calls, 1, args.workers, args.database_url)
    requests_sent = len([r for r in fake.requests if r[2].startswith("/api/")])
    print(f"scored calls delivered per second, fake amoCRM at {RATE} requests/s, {args.workers} worker(s):")
    print(f"  batched (50 per request): {batched:7.1f} calls/s  ({args.calls} calls, {requests_sent} requests, "
          f"max {fake.max_requests_in_any_second()} requests in any second, "
          f"{sum(1 for r in fake.requests if r[3] == 429)} x 429)")
    print(f"  bound 7 x 50 / 2:         {bound:7.1f} calls/s  -> {100 * batched / bound:.1f} % of the bound "
          f"(target >= 90 %)")
    print(f"  baseline (1 per request): {baseline:7.1f} calls/s  ({args.baseline_calls} calls; bound 3.5)")


if __name__ == "__main__":
    main()
