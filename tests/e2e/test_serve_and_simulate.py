"""`connector serve` as a real process on a free port, fed by `connector simulate` over real HTTP."""
import json
import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from tests.ports import free_port

pytestmark = pytest.mark.e2e


@contextmanager
def running_connector(cwd, db_url, processes: list | None = None, alongside=None, **extra_env):
    """`connector serve` as its own process on a free port; yields (base url, env, cwd). The process
    is appended to `processes`, for a test that kills it. `alongside(env, cwd)`, when given, is called as
    soon as the process is started, to start what the test needs while it starts up."""
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "PYTHONPATH")},
        "DATABASE_URL": db_url, "PORT": str(port), "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "MANGO_API_KEY": "e2e-key", "MANGO_API_SALT": "e2e-salt", "MANGO_SURVEY_LOCATION": "ivr.5",
        "ADMIN_TOKEN": "e2e-admin-token-Hk4nP8qR2vX6zB9mC3tW7yL5", "SECRET_KEY": "e2e-secret", **extra_env,
    }
    # Its log goes to a file: a pipe nobody reads fills up and blocks the process at its next log line.
    log_path = Path(cwd) / f"serve-{port}.log"
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen([sys.executable, "-c", "import app; app.main()", "serve"], cwd=cwd, env=env,
                                stdout=log_file, stderr=subprocess.STDOUT, text=True)
    if processes is not None:
        processes.append(proc)
    if alongside is not None:
        alongside(env, cwd)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"connector did not start: {log_path.read_text()}")
            time.sleep(0.05)
        yield base, env, cwd
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def served(tmp_path, db_url):
    with running_connector(tmp_path, db_url) as running:
        yield running


def applied_call(base: str, call_id: str, ready=lambda call: True, timeout: float = 10.0) -> dict:
    """The call once the embedded worker applied the stored events (the webhook only stores them)."""
    deadline = time.monotonic() + timeout
    while True:
        response = requests.get(f"{base}/api/v1/calls/{call_id}", headers={"Authorization": "Bearer e2e-admin-token-Hk4nP8qR2vX6zB9mC3tW7yL5"},
                                timeout=5)
        if response.status_code == 200 and ready(response.json()):
            return response.json()
        if time.monotonic() > deadline:
            raise AssertionError(f"call {call_id} not applied in {timeout} s: {response.status_code} {response.text}")
        time.sleep(0.05)


def simulate(env, cwd, *args):
    return subprocess.run([sys.executable, "-c", "import app; app.main()", "simulate", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


def test_simulate_shows_the_whole_flow(served):
    base, env, cwd = served
    result = simulate(env, cwd, "--score", "3", "--call-id", "sim-e2e")
    assert result.returncode == 0, result.stderr
    assert "POST /mango/events/summary" in result.stdout and "-> 200" in result.stdout
    stored = json.loads(result.stdout.split("stored call sim-e2e:", 1)[1])
    assert stored["customer_score"] == 3 and stored["decision"]["tag"] == "Оценка 3"
    assert stored["recording_id"] == "rec-sim-e2e" and stored["operator"] == "101"


def test_real_http_form_posts_and_errors(served):
    from connector.inbound.mango.callbacks import signed_form

    base, _, _ = served
    form = signed_form("e2e-key", "e2e-salt", {"entry_id": "e2e-2", "call_direction": 1,
                                               "to": {"extension": "102"}, "from": {"number": "7900"}})
    assert requests.post(f"{base}/mango/events/summary", data=form, timeout=5).json() == {"success": True}
    again = requests.post(f"{base}/mango/events/summary", data=form, timeout=5)
    assert again.status_code == 200 and again.json() == {"success": True, "duplicate": True}
    forged = requests.post(f"{base}/mango/events/summary", data={**form, "sign": "0" * 64}, timeout=5)
    assert forged.status_code == 403 and forged.json() == {"error": "sign does not match"}
    huge = requests.post(f"{base}/mango/events/summary", data={**form, "json": "x" * 200_000}, timeout=5)
    assert huge.status_code == 413
    assert applied_call(base, "e2e-2")["operator"] == "102"


def test_served_connector_delivers_to_amocrm_with_its_embedded_worker(tmp_path, db_url):
    from tests.fakes.amocrm import FakeAmo, create_fake_app
    from tests.fakes.mango import FakeMango, create_fake_mango
    from tests.fakes.server import serving

    fake = FakeAmo(long_lived_token="e2e-amo-token")
    fake.add_contact("79001234567")
    pbx = create_fake_mango(FakeMango("e2e-key", "e2e-salt", recordings={"rec-sim-amo"}))
    with serving(create_fake_app(fake)) as amo_url, serving(pbx) as pbx_url, running_connector(
            tmp_path, db_url, CRM="amocrm", AMOCRM_BASE_URL=amo_url, AMOCRM_LONG_LIVED_TOKEN="e2e-amo-token",
            AMOCRM_USER_MAP="101:5551", WORKER_POLL_SECONDS="0.2", MANGO_API_URL=pbx_url + "/vpbx/") as (
            base, env, cwd):
        result = simulate(env, cwd, "--score", "2", "--call-id", "sim-amo")
        assert result.returncode == 0, result.stderr
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            call = requests.get(f"{base}/api/v1/calls/sim-amo", timeout=5,
                                headers={"Authorization": "Bearer e2e-admin-token-Hk4nP8qR2vX6zB9mC3tW7yL5"}).json()
            if call["crm"]["status"] == "delivered":
                break
            time.sleep(0.05)
        assert call["crm"]["status"] == "delivered", call["crm"]
        [logged] = fake.calls
        assert logged["call_result"] == "Оценка качества: 2" and logged["responsible_user_id"] == 5551
        assert list(fake.contacts.values())[0]["tags"] == ["Оценка 2"]
        # The CRM's player opens our link, which redirects to a fresh PBX file link.
        played = requests.get(logged["link"], timeout=30)
        assert played.status_code == 200 and played.headers["Content-Type"] == "audio/mpeg"


def test_concurrent_events_of_one_new_call_join_into_one_row(served):
    """Events of a call the connector has never seen, all at once on a threaded server."""
    from concurrent.futures import ThreadPoolExecutor

    from connector.inbound.mango.callbacks import signed_form

    base, _, _ = served
    entry = "race-1"
    events = [("events/summary", {"entry_id": entry, "call_direction": 1, "to": {"extension": "103"},
                                  "from": {"number": "79001112233"}, "create_time": 1, "end_time": 61,
                                  "talk_time": 11}),
              ("events/recording", {"entry_id": entry, "recording_id": "r-race", "recording_state": "Completed",
                                    "completion_code": 1000, "seq": 9}),
              ("events/dtmf", {"entry_id": entry, "call_id": "leg", "seq": 10, "dtmf": "4", "location": "ivr.5"})]
    events += [("events/call", {"entry_id": entry, "call_id": "leg", "seq": n, "call_state": "Connected"})
               for n in range(1, 6)]

    def post(event):
        kind, payload = event
        return requests.post(f"{base}/mango/{kind}", data=signed_form("e2e-key", "e2e-salt", payload), timeout=30)

    with ThreadPoolExecutor(len(events)) as pool:
        statuses = [r.status_code for r in pool.map(post, events)]
    assert statuses == [200] * len(events)
    # Until all three events are applied (the inbox may apply them in more than one pass); one lost waits out
    # the timeout and fails below.
    call = applied_call(base, entry,
                        lambda c: c["customer_score"] is not None and c["recording_id"] and c["operator"])
    assert (call["operator"], call["recording_id"], call["customer_score"]) == ("103", "r-race", 4)
    listed = requests.get(f"{base}/api/v1/calls", headers={"Authorization": "Bearer e2e-admin-token-Hk4nP8qR2vX6zB9mC3tW7yL5"}, timeout=5).json()
    assert listed["_meta"]["total"] == 1


def test_serve_says_where_its_data_lives_warns_and_listens_only_once_bound(tmp_path):
    """Started from another directory with nothing set: it names the database and key file,
    warns about the missing credentials, and its "listening" line means the port answers."""
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "PYTHONPATH")},
           "PORT": str(port), "DATA_DIR": str(tmp_path / "data")}
    proc = subprocess.Popen([sys.executable, "-c", "import app; app.main()", "serve"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line.rstrip())
            if "listening on" in line:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    pass  # bound before it said so
                break
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()
    output = "\n".join(lines)
    assert f"database: sqlite:///{tmp_path / 'data' / 'connector.db'}" in output
    assert f"secret key: {tmp_path / 'data' / 'secret_key'}" in output
    assert "MANGO_API_KEY and MANGO_API_SALT are not both set" in output and "ADMIN_TOKEN is not set" in output
    assert (tmp_path / "data" / "secret_key").stat().st_mode & 0o077 == 0
    key = (tmp_path / "data" / "secret_key").read_text()
    assert key not in output


def test_served_connector_pulls_quality_scores_with_no_crm(tmp_path, db_url):
    """`connector serve` with MANGO_QUALITY_API: its embedded scanner reads the call statistics (and its
    poller asks the Contact Center about the calls those show it handled)."""
    from connector.inbound.mango.callbacks import signed_form
    from tests.fakes.mango import FakeMango, create_fake_mango
    from tests.fakes.server import serving

    pbx = FakeMango("e2e-key", "e2e-salt")
    pbx.add_stats_call("cc-1", time.time() - 60, contact_center=True, mark_client="2")
    with serving(create_fake_mango(pbx)) as pbx_url, running_connector(
            tmp_path, db_url, MANGO_QUALITY_API="true", MANGO_API_URL=pbx_url + "/vpbx/",
            WORKER_POLL_SECONDS="0.2") as (base, env, cwd):
        now = int(time.time())
        summary = {"entry_id": "cc-1", "call_direction": 1, "from": {"number": "79001234567"},
                   "to": {"extension": "101"}, "create_time": now - 60, "talk_time": now - 50, "end_time": now}
        posted = requests.post(f"{base}/mango/events/summary", timeout=5,
                               data=signed_form("e2e-key", "e2e-salt", summary))
        assert posted.status_code == 200
        call = applied_call(base, "cc-1", lambda c: c["customer_score"] is not None, timeout=30)
        assert (call["customer_score"], call["survey"], call["decision"]["tag"]) == (2, "answered", "Оценка 2")
        assert call["crm"]["status"] == "skipped"
