"""The documented production set-up, started exactly as the Procfile says: migrations, gunicorn with
gevent workers, a standalone worker. Neither it nor `connector serve` stops answering while 200 idle
connections are held open."""
import os
import shlex
import socket
import subprocess
import sys
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
import requests

from connector.inbound.mango.callbacks import signed_form
from tests.e2e.test_serve_and_simulate import applied_call, running_connector
from tests.ports import free_port

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def procfile() -> dict[str, list[str]]:
    commands = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        argv = shlex.split(command)
        argv[0] = str(BIN / argv[0])  # the console scripts of this environment
        commands[name.strip()] = argv
    return commands


@contextmanager
def idle_connections(port: int, count: int = 200):
    """Connections that are open and send nothing, as keep-alive clients and scanners hold them."""
    with ExitStack() as stack:
        for _ in range(count):
            stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=5))
        time.sleep(0.5)
        yield


def healthz_answers(base: str) -> bool:
    return requests.get(f"{base}/healthz", timeout=3).status_code == 200


def test_procfile_processes_serve_apply_and_stay_up(tmp_path, db_url):
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")},
           "DATABASE_URL": db_url, "DATA_DIR": str(tmp_path), "PORT": str(port), "WEB_CONCURRENCY": "2",
           "MANGO_API_KEY": "e2e-key", "MANGO_API_SALT": "e2e-salt", "ADMIN_TOKEN": "e2e-admin-token-Hk4nP8qR2vX6zB9mC3tW7yL5",
           "SECRET_KEY": "e2e-secret", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")}
    commands = procfile()
    assert set(commands) == {"release", "web", "worker"}
    subprocess.run(commands["release"], cwd=ROOT, env=env, check=True, capture_output=True, timeout=60)
    processes = [subprocess.Popen(commands[name], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True) for name in ("web", "worker")]
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if healthz_answers(base):
                    break
            except (requests.ConnectionError, requests.Timeout):
                pass  # not bound yet, or the worker that accepted is still loading the app
            assert time.monotonic() < deadline and processes[0].poll() is None, processes[0].stderr.read()
            time.sleep(0.2)
        summary = {"entry_id": "prod-1", "call_direction": 1, "from": {"number": "79001234567"},
                   "to": {"extension": "101"}, "create_time": 1, "talk_time": 11, "end_time": 71}
        # The other gunicorn worker may still be loading the app (seconds on a busy machine): the PBX,
        # like this request, waits for the answer.
        posted = requests.post(f"{base}/mango/events/summary", data=signed_form("e2e-key", "e2e-salt", summary),
                               timeout=30)
        assert posted.json() == {"success": True}
        assert applied_call(base, "prod-1")["operator"] == "101"  # applied by the standalone worker
        with idle_connections(port):
            assert healthz_answers(base)
        # Two gunicorn workers, one sum: whichever worker answers the scrape counts the other's callback.
        scraped = requests.get(f"{base}/metrics", timeout=5).text
        assert 'connector_callbacks_total{endpoint="mango",outcome="accepted"} 1.0' in scraped
    finally:
        for proc in processes:  # stopped together, as the platform stops a release's processes
            proc.terminate()
        for proc in processes:
            proc.wait(timeout=15)
            proc.stderr.close()


def test_serve_keeps_answering_with_200_idle_connections(tmp_path, db_url):
    with running_connector(tmp_path, db_url) as (base, _env, _cwd):
        port = int(base.rsplit(":", 1)[1])
        with idle_connections(port):
            assert healthz_answers(base)


@contextmanager
def slow_connections(port: int, count: int):
    """Slowloris: connections that started a request and send its headers a line at a time, never done."""
    with ExitStack() as stack:
        socks = []
        for _ in range(count):
            sock = stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=5))
            sock.sendall(b"POST /mango/events/call HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            socks.append(sock)
        for sock in socks:  # one more header line each, as the attack does to stay under the idle timeout
            sock.sendall(b"X-Slow: 1\r\n")
        time.sleep(0.5)
        yield


def test_serve_keeps_answering_callbacks_with_1100_slow_connections(tmp_path, db_url):
    """Past about a thousand connections waitress's select() loop stalled: the PBX waited 50 s."""
    with running_connector(tmp_path, db_url) as (base, env, _cwd):
        port = int(base.rsplit(":", 1)[1])
        with slow_connections(port, 1100):
            started = time.monotonic()
            assert healthz_answers(base)
            form = signed_form(env["MANGO_API_KEY"], env["MANGO_API_SALT"],
                               {"entry_id": "slow-1", "call_id": "leg-1", "seq": 1, "timestamp": int(time.time()),
                                "call_state": "Appeared", "location": "ivr",
                                "from": {"number": "79001234567"}, "to": {"number": "74950000000"}})
            answer = requests.post(f"{base}/mango/events/call", data=form, timeout=5)
            assert answer.status_code == 200 and time.monotonic() - started < 5
