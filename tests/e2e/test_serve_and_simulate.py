"""`connector serve` as a real process on a free port, fed by `connector simulate` over real HTTP."""
import json
import os
import socket
import subprocess
import sys
import time

import pytest
import requests

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(tmp_path, db_url):
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")},
        "DATABASE_URL": db_url, "PORT": str(port), "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "MANGO_API_KEY": "e2e-key", "MANGO_API_SALT": "e2e-salt", "MANGO_SURVEY_LOCATION": "ivr.5",
        "ADMIN_TOKEN": "e2e-token", "SECRET_KEY": "e2e-secret",
    }
    proc = subprocess.Popen([sys.executable, "-c", "import app; app.main()", "serve"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
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
                raise AssertionError(f"connector did not start: {proc.stdout.read()}")
            time.sleep(0.2)
        yield base, env, tmp_path
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()


def test_simulate_shows_the_whole_flow(served):
    base, env, cwd = served
    result = subprocess.run([sys.executable, "-c", "import app; app.main()", "simulate", "--score", "3",
                             "--call-id", "sim-e2e"], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert "POST /mango/events/summary" in result.stdout and "-> 200" in result.stdout
    stored = json.loads(result.stdout.split("stored call sim-e2e:", 1)[1])
    assert stored["customer_score"] == 3 and stored["decision"]["tag"] == "Оценка 3"
    assert stored["recording_id"] == "rec-sim-e2e" and stored["operator"] == "101"


def test_real_http_form_posts_and_errors(served):
    from connector.pbx.mango import signed_form

    base, _, _ = served
    form = signed_form("e2e-key", "e2e-salt", {"entry_id": "e2e-2", "call_direction": 1,
                                               "to": {"extension": "102"}, "from": {"number": "7900"}})
    assert requests.post(f"{base}/mango/events/summary", data=form, timeout=5).json() == {"success": True}
    again = requests.post(f"{base}/mango/events/summary", data=form, timeout=5)
    assert again.status_code == 409
    forged = requests.post(f"{base}/mango/events/summary", data={**form, "sign": "0" * 64}, timeout=5)
    assert forged.status_code == 403 and forged.json() == {"error": "sign does not match"}
    huge = requests.post(f"{base}/mango/events/summary", data={**form, "json": "x" * 200_000}, timeout=5)
    assert huge.status_code == 413
    call = requests.get(f"{base}/api/v1/calls/e2e-2", headers={"Authorization": "Bearer e2e-token"}, timeout=5)
    assert call.json()["operator"] == "102"
