"""The README's first walk-through, command by command, over real HTTP: the connector and the demo PBX as
their own processes, `demo`, then what each demo account does in the browser: the supervisor sees the calls,
plays one, reviews it and exports the list; an operator sees only their own calls; the admin has the
settings. Then `simulate` with its options."""
import io
import json
import re
import subprocess
import sys
from contextlib import ExitStack

import pytest
import requests
from openpyxl import load_workbook

from tests.e2e.test_serve_and_simulate import running_connector, simulate
from tests.ports import free_port

pytestmark = pytest.mark.e2e


def connector_command(env, cwd, *args, stdin: str | None = None):
    return subprocess.run([sys.executable, "-c", "import app; app.main()", *args], cwd=cwd, env=env, input=stdin,
                          capture_output=True, text=True, timeout=120)


def form_token(html: str) -> str:
    return re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html).group(1)


def logged_in(base: str, username: str, password: str) -> tuple[requests.Session, requests.Response]:
    browser = requests.Session()
    login = browser.get(f"{base}/", timeout=10)
    assert login.url.endswith("/login")
    page = browser.post(login.url, timeout=10, data={"username": username, "password": password,
                                                     "csrf_token": form_token(login.text)})
    assert page.url.endswith("/calls"), username
    return browser, page


def test_a_new_user_fills_the_demo_and_tries_every_role(tmp_path, db_url):
    pbx_port = free_port()
    pbx_url = f"http://127.0.0.1:{pbx_port}/vpbx/"
    started = []

    def start_the_pbx(env, cwd):
        """The demo PBX starts while the connector does (each takes a Python start-up), as the README has
        both started; it is stopped however the test ends."""
        pbx = subprocess.Popen([sys.executable, "-c", "import app; app.main()", "demo-pbx", "--port", str(pbx_port)],
                               cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        started.append(pbx)
        cleanup.callback(stop, pbx)

    def stop(pbx):
        pbx.terminate()
        pbx.wait(timeout=10)
        pbx.stdout.close()

    with ExitStack() as cleanup, running_connector(tmp_path, db_url, alongside=start_the_pbx,
                                                   MANGO_API_URL=pbx_url) as (base, env, cwd):
        [pbx] = started
        assert pbx.stdout.readline().startswith(f"demo PBX listening on {pbx_url}")
        made = connector_command(env, cwd, "demo", "500")  # the README's 2000, fewer for time
        assert made.returncode == 0 and made.stderr == "", made.stderr
        passwords = dict(re.findall(r"^  (demo-[\w-]+) .* password: (\S+)$", made.stdout, re.MULTILINE))
        assert len(passwords) == 4
        admin = {"Authorization": f"Bearer {env['ADMIN_TOKEN']}"}

        browser, listed = logged_in(base, "demo-supervisor", passwords["demo-supervisor"])
        assert len(re.findall(r'href="/calls/demo-1-\d+"', listed.text)) >= 20
        low = browser.get(base + re.search(r'id="low-scores" href="([^"]+)"', listed.text)
                          .group(1).replace("&amp;", "&"), timeout=10)
        assert "Оценка " in low.text and low.url != listed.url
        calls = requests.get(f"{base}/api/v1/calls?per_page=100&tagged=true", headers=admin, timeout=10).json()
        call = next(c for c in calls["items"] if c["recording_id"])["call_id"]
        page = browser.get(f"{base}/calls/{call}", timeout=10)
        source = re.search(r'<audio[^>]*src="([^"]+)"', page.text).group(1).replace("&amp;", "&")
        assert re.fullmatch(rf"/recordings/{call}\?exp=\d+&sig=[0-9a-f]+", source), source
        played = browser.get(f"{base}{source}", timeout=10)  # connector -> 302 -> the PBX's one-time file
        assert played.status_code == 200 and played.headers["Content-Type"] == "audio/wav"
        assert played.content[:4] == b"RIFF" and len(played.content) > 8000
        assert browser.get(played.url, timeout=10).status_code == 404  # the file link was single-use
        reviewed = browser.post(f"{base}/calls/{call}/reviews", timeout=10, data={
            "score": "6", "comment": "greeting skipped", "csrf_token": form_token(page.text)})
        assert reviewed.status_code == 200 and "greeting skipped" in reviewed.text
        assert browser.get(f"{base}/reports", timeout=10).status_code == 200
        exported = browser.get(f"{base}/calls/export.xlsx?tagged=true", timeout=30)
        rows = list(load_workbook(io.BytesIO(exported.content), read_only=True).active.iter_rows(values_only=True))
        row = next(dict(zip(rows[0], r)) for r in rows[1:] if r[rows[0].index("Звонок")] == call)
        assert row["Оценка супервизора"] == 6 and row["Тег"] == f"Оценка {row['Оценка клиента']}"

        operator, mine = logged_in(base, "demo-operator-101", passwords["demo-operator-101"])
        shown = set(re.findall(r'href="/calls/(demo-1-\d+)"', mine.text))
        theirs = requests.get(f"{base}/api/v1/calls?operator=101&per_page=100", headers=admin, timeout=10).json()
        assert shown and shown <= {c["call_id"] for c in theirs["items"]}
        other = requests.get(f"{base}/api/v1/calls?operator=102&per_page=1", headers=admin, timeout=10).json()
        assert operator.get(f"{base}/calls/{other['items'][0]['call_id']}", timeout=10).status_code == 404

        settings, _ = logged_in(base, "demo-admin", passwords["demo-admin"])
        assert settings.get(f"{base}/settings", timeout=10).status_code == 200

        one = simulate(env, cwd, "--operator", "102", "--line", "74950000002", "--phone", "79001234567",
                       "--at", "2026-11-20 14:05", "--score", "2", "--call-id", "sim-readme")
        assert one.returncode == 0, one.stderr
        stored = json.loads(one.stdout.split("stored call sim-readme:", 1)[1])
        assert (stored["operator"], stored["line_number"], stored["started_at"]) == (
            "102", "74950000002", "2026-11-20T11:05:00Z")


def test_the_demo_pbx_refuses_a_forged_request_and_unknown_recordings():
    from commands.demo_pbx import create_demo_pbx
    from connector.inbound.mango.callbacks import signed_form

    client = create_demo_pbx("demo", "demo-salt").test_client()
    url = "/vpbx/queries/recording/post"
    forged = client.post(url, data=signed_form("demo", "wrong-salt", {"recording_id": "rec-sim-1"}))
    assert forged.json == {"result": 3102}
    unknown = client.post(url, data=signed_form("demo", "demo-salt", {"recording_id": "MToxMDA"}))
    assert unknown.json == {"result": 3320}
    issued = client.post(url, data=signed_form("demo", "demo-salt", {"recording_id": "rec-sim-1"}))
    assert issued.status_code == 302 and client.get(issued.headers["Location"]).status_code == 200


def test_the_demo_pbx_prints_a_rating_sms_with_its_link_and_a_masked_number():
    from commands.demo_pbx import create_demo_pbx
    from connector.inbound.mango.callbacks import signed_form

    said = []
    client = create_demo_pbx("demo", "demo-salt", say=said.append).test_client()
    body = {"command_id": "rating-1-ab", "from_extension": "101", "to_number": "79161234567",
            "text": "Оцените разговор: http://127.0.0.1:8080/r/abcdefghijklmnopqrstuv"}
    assert client.post("/vpbx/commands/sms", data=signed_form("demo", "demo-salt", body)).json == {"result": 1000}
    assert said == ["SMS to 7916***67 from extension 101: Оцените разговор: "
                    "http://127.0.0.1:8080/r/abcdefghijklmnopqrstuv"]
    forged = client.post("/vpbx/commands/sms", data=signed_form("demo", "wrong-salt", body))
    assert forged.json == {"result": 3102} and len(said) == 1
