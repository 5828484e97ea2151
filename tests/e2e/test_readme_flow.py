"""The README's first walk-through, command by command, over real HTTP: the connector and the demo PBX as
their own processes, `simulate`, `users add`, then what the person does in the browser: log in, see the
simulated call, play it, review it, export the list."""
import io
import re
import subprocess
import sys

import pytest
import requests
from openpyxl import load_workbook

from tests.e2e.test_serve_and_simulate import free_port, running_connector, simulate

pytestmark = pytest.mark.e2e


def connector_command(env, cwd, *args, stdin: str | None = None):
    return subprocess.run([sys.executable, "-c", "import app; app.main()", *args], cwd=cwd, env=env, input=stdin,
                          capture_output=True, text=True, timeout=60)


def form_token(html: str) -> str:
    return re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html).group(1)


def test_a_new_user_logs_in_sees_plays_reviews_and_exports_the_simulated_call(tmp_path, db_url):
    pbx_port = free_port()
    pbx_url = f"http://127.0.0.1:{pbx_port}/vpbx/"
    with running_connector(tmp_path, db_url, MANGO_API_URL=pbx_url) as (base, env, cwd):
        pbx = subprocess.Popen([sys.executable, "-c", "import app; app.main()", "demo-pbx", "--port", str(pbx_port)],
                               cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            assert pbx.stdout.readline().startswith(f"demo PBX listening on {pbx_url}")
            made = simulate(env, cwd, "--score", "3", "--call-id", "sim-readme")
            assert made.returncode == 0, made.stderr
            added = connector_command(env, cwd, "users", "add", "sam", "--role", "supervisor", "--password-stdin",
                                      stdin="demo password\n")
            assert added.returncode == 0, added.stderr

            browser = requests.Session()
            login = browser.get(f"{base}/", timeout=10)
            assert login.url.endswith("/login")
            listed = browser.post(login.url, timeout=10, data={
                "username": "sam", "password": "demo password", "csrf_token": form_token(login.text)})
            assert listed.url.endswith("/calls") and "/calls/sim-readme" in listed.text

            page = browser.get(f"{base}/calls/sim-readme", timeout=10)
            source = re.search(r'<audio[^>]*src="([^"]+)"', page.text).group(1).replace("&amp;", "&")
            assert re.fullmatch(r"/recordings/sim-readme\?exp=\d+&sig=[0-9a-f]+", source), source
            played = browser.get(f"{base}{source}", timeout=10)  # connector -> 302 -> the PBX's one-time file
            assert played.status_code == 200 and played.headers["Content-Type"] == "audio/wav"
            assert played.content[:4] == b"RIFF" and len(played.content) > 8000
            assert browser.get(played.url, timeout=10).status_code == 404  # the file link was single-use

            reviewed = browser.post(f"{base}/calls/sim-readme/reviews", timeout=10, data={
                "score": "6", "comment": "greeting skipped", "csrf_token": form_token(page.text)})
            assert reviewed.status_code == 200 and "greeting skipped" in reviewed.text

            exported = browser.get(f"{base}/calls/export.xlsx", timeout=10)
            rows = list(load_workbook(io.BytesIO(exported.content), read_only=True).active.iter_rows(values_only=True))
            row = dict(zip(rows[0], rows[1]))
            assert len(rows) == 2 and row["call_id"] == "sim-readme"
            assert (row["customer_score"], row["supervisor_score"], row["tag"]) == (3, 6, "Оценка 3")
        finally:
            pbx.terminate()
            pbx.wait(timeout=10)
            pbx.stdout.close()


def test_the_demo_pbx_refuses_a_forged_request_and_unknown_recordings():
    from commands.demo_pbx import create_demo_pbx
    from connector.pbx.mango import signed_form

    client = create_demo_pbx("demo", "demo-salt").test_client()
    url = "/vpbx/queries/recording/post"
    forged = client.post(url, data=signed_form("demo", "wrong-salt", {"recording_id": "rec-sim-1"}))
    assert forged.json == {"result": 3102}
    unknown = client.post(url, data=signed_form("demo", "demo-salt", {"recording_id": "MToxMDA"}))
    assert unknown.json == {"result": 3320}
    issued = client.post(url, data=signed_form("demo", "demo-salt", {"recording_id": "rec-sim-1"}))
    assert issued.status_code == 302 and client.get(issued.headers["Location"]).status_code == 200
