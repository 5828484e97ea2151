"""PostgreSQL crashes and comes back while the PBX sends: a private instance the test starts (never
the shared one) is stopped with `-m immediate` (crash recovery on start) mid-burst. Callbacks the
connector could not commit are answered 503, never 500 and never 200; the PBX sends them again."""
import glob
import os
import shutil
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest
import requests

from connector.core.db import Database, upgrade
from connector.inbound.mango.callbacks import signed_form
from tests.delivery_helpers import TOKEN
from tests.e2e.test_serve_and_simulate import running_connector
from tests.ports import free_port
from tests.fakes.amocrm import FakeAmo, create_fake_app
from tests.fakes.server import serving
from tests.ledger import ScoredCalls, assert_exactly_once, report, tally, wait_until_settled

pytestmark = pytest.mark.e2e


def postgres_bin() -> str | None:
    found = shutil.which("pg_ctl") or next(iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))), None)
    return os.path.dirname(found) if found else None


class PrivatePostgres:
    """A throwaway cluster on a free port. PostgreSQL refuses to run as root, so under root it runs
    as the `postgres` system user."""

    def __init__(self, bin_dir: str):
        self.bin_dir, self.port = bin_dir, free_port()
        self.root = tempfile.mkdtemp(prefix="connector-pg-")
        self.data = os.path.join(self.root, "data")
        self.as_user = []
        if os.geteuid() == 0:
            os.chmod(self.root, 0o755)
            shutil.chown(self.root, "postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *argv: str) -> None:
        # Not captured: the server started by pg_ctl would inherit the pipe and hold it open forever.
        subprocess.run([*self.as_user, os.path.join(self.bin_dir, argv[0]), *argv[1:]], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)

    def init(self) -> None:
        self._run("initdb", "-D", self.data, "-A", "trust", "-U", "postgres", "--no-sync")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", self.data, "-o", options, "-l", os.path.join(self.root, "log"), "-w", "start")

    def crash(self) -> None:
        self._run("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")

    def remove(self) -> None:
        subprocess.run([*self.as_user, os.path.join(self.bin_dir, "pg_ctl"), "-D", self.data, "-m", "immediate",
                        "stop"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
        shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def private_postgres():
    bin_dir = postgres_bin()
    if not bin_dir or (os.geteuid() == 0 and not shutil.which("runuser")):
        pytest.skip("PostgreSQL's server binaries are not installed")
    pg = PrivatePostgres(bin_dir)
    try:
        pg.init()
        pg.start()
        yield pg
    finally:
        pg.remove()


def test_postgres_crashes_and_restarts_under_load(tmp_path, capsys):
    fake = FakeAmo(long_lived_token=TOKEN)
    calls = ScoredCalls(count=80, prefix="pg").known_to(fake)  # 160 callbacks, nine senders: crashed a third in
    callbacks = [(kind, payload) for i in range(calls.count) for kind, payload in calls.callbacks(i)]
    answers: list[int] = []
    acknowledged = threading.Semaphore(0)
    down = threading.Event()
    met_it: set[int] = set()  # the senders refused while the database was down

    with private_postgres() as pg, serving(create_fake_app(fake)) as amo_url:
        upgrade(pg.url)
        crm = {"CRM": "amocrm", "AMOCRM_BASE_URL": amo_url, "AMOCRM_LONG_LIVED_TOKEN": TOKEN,
               "AMOCRM_USER_MAP": "101:5551", "SURVEY_WAIT_SECONDS": "0", "WORKER_POLL_SECONDS": "0.2",
               "WORKER_LEASE_SECONDS": "2"}  # a batch whose outcome the crash kept from the database
        with running_connector(tmp_path, pg.url, **crm) as (base, _env, _cwd):
            def send_until_acknowledged(index: int) -> None:
                """As the PBX does: anything but a 200 is sent again, a moment later."""
                kind, payload = callbacks[index]
                deadline = time.monotonic() + 90
                while time.monotonic() < deadline:
                    try:
                        status = requests.post(f"{base}/mango/{kind}", data=signed_form("e2e-key", "e2e-salt", payload),
                                               timeout=10).status_code
                    except requests.RequestException:
                        status = 0
                    answers.append(status)
                    if status != 200 and down.is_set():
                        met_it.add(threading.get_ident())
                    if status == 200:
                        acknowledged.release()
                        return
                    time.sleep(0.3)
                raise AssertionError(f"callback {index} never acknowledged")

            def crash_when_a_third_is_in() -> float:
                for _ in range(len(callbacks) // 3):
                    acknowledged.acquire(timeout=60)
                pg.crash()
                down.set()
                # Down until each of the eight senders has met it (2 s at most; a sender retries each 0.3 s).
                deadline = time.monotonic() + 2
                while time.monotonic() < deadline and len(met_it) < 8:
                    time.sleep(0.05)
                pg.start()
                down.clear()
                return time.monotonic()

            with ThreadPoolExecutor(9) as pool:
                crash = pool.submit(crash_when_a_third_is_in)
                sends = [pool.submit(send_until_acknowledged, i) for i in range(len(callbacks))]
                for sent in sends:
                    sent.result()
                crash.result()
            db = Database(pg.url)
            try:
                wait_until_settled(db)
                figures = {**tally(fake, calls, db), "callbacks": len(callbacks),
                           "answers": dict(sorted((s, answers.count(s)) for s in set(answers)))}
            finally:
                db.dispose()
    report("postgres-crash-and-restart", figures, capsys)
    assert_exactly_once(figures)
    assert set(figures["answers"]) <= {0, 200, 503} and figures["answers"][200] == len(callbacks)
    assert figures["answers"].get(503, 0) + figures["answers"].get(0, 0) > 0  # the crash was met
