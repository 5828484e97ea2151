"""Sessions and logins (issue 16, part 3): each defect found, each with its test.

- a cookie replayed after logout no longer works; a session ends when idle and at its absolute lifetime;
- failed logins get a growing delay, then a lockout that ends by itself or that an admin lifts (audited);
  an attacker failing from elsewhere never locks out a browser the user has logged in from;
- wrong bearer tokens are throttled per address;
- a password check holds no database lock and at most two web threads, so the PBX's intake goes on;
- passwords need 10 characters and more than spaces; ADMIN_TOKEN needs 32 characters or nothing starts;
- personal tokens expire and are revoked one by one, in the CLI and in the console.
"""
import os
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from commands.cli import cli
from connector.core.models import ApiToken, ConsoleSession, SettingsAudit
from connector.core.users import add_user, issue_token
from tests.conftest import ADMIN_TOKEN, console_login, csrf_token, dtmf, summary

PASSWORD = "correct horse battery"
ATTACKER = {"REMOTE_ADDR": "203.0.113.66"}


class Clock:
    """The time the sessions, tokens and throttle read; a test moves it."""

    def __init__(self):
        self.at = datetime.now(timezone.utc)

    def __call__(self):
        return self.at

    def advance(self, **delta):
        self.at += timedelta(**delta)


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr("connector.core.users._now", clock)
    monkeypatch.setattr("connector.core.throttle.now", clock)
    return clock


@pytest.fixture
def people(db, monkeypatch):
    monkeypatch.setattr("connector.core.users.PASSWORD_METHOD", "scrypt:1024:8:1")  # sessions, not hashing cost
    with db.transaction() as s:
        add_user(s, "ann", "admin", PASSWORD)
        add_user(s, "sam", "supervisor", PASSWORD)
        add_user(s, "olga", "operator", PASSWORD, ["101"])


@pytest.fixture
def cli_env(app, db_url, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("SECRET_KEY", "test-secret-key")


def users(*args, stdin=None, ok=True):
    result = CliRunner().invoke(cli, ["users", *args], input=stdin, catch_exceptions=False)
    assert (result.exit_code == 0) == ok, result.output
    return result


def logged_in(client) -> bool:
    return client.get("/calls").status_code == 200


def attempt(client, name, password, environ=None):
    """A login as a browser posts it, from `environ`'s address."""
    environ = {"environ_base": environ} if environ else {}
    token = csrf_token(client.get("/login", **environ))
    return client.post("/login", data={"username": name, "password": password, "csrf_token": token}, **environ)


def audit_rows(db) -> list[SettingsAudit]:
    with db.transaction() as s:
        return list(s.scalars(select(SettingsAudit).order_by(SettingsAudit.id)))


# --- sessions ------------------------------------------------------------------------------------------------

def test_a_cookie_replayed_after_logout_no_longer_works(client, people):
    console_login(client, "sam", PASSWORD)
    captured = client.get_cookie("session").value
    assert logged_in(client)
    client.post("/logout", data={"csrf_token": csrf_token(client.get("/calls"))})
    client.set_cookie("session", captured)  # whoever kept a copy of the cookie
    assert client.get("/calls").headers["Location"].startswith("/login")


def test_the_session_id_is_new_at_every_login_and_a_cookie_from_before_it_opens_nothing(app, client, people, db):
    client.get("/login?lang=en")
    before = client.get_cookie("session").value  # planted by whoever set up this browser
    console_login(client, "sam", PASSWORD)
    first = client.get_cookie("session").value
    console_login(client, "sam", PASSWORD)
    assert client.get_cookie("session").value != first
    other = app.test_client()
    other.set_cookie("session", before)
    assert other.get("/calls").status_code == 302
    with db.transaction() as s:
        assert len(s.scalars(select(ConsoleSession)).all()) == 2  # two logins, two server-side sessions


def test_a_session_ends_after_8_idle_hours(client, people, clock):
    console_login(client, "sam", PASSWORD)
    for _ in range(3):  # used every 7 hours: still there
        clock.advance(hours=7)
        assert logged_in(client)
    clock.advance(hours=8, seconds=1)
    assert not logged_in(client)


def test_a_session_ends_24_hours_after_its_login_however_busy(client, people, clock):
    """Before, every request gave the cookie 8 more hours: a captured cookie lasted until the user was disabled."""
    console_login(client, "sam", PASSWORD)
    for _ in range(23):
        clock.advance(hours=1)
        assert logged_in(client)
    clock.advance(hours=1)
    assert not logged_in(client)
    console_login(client, "sam", PASSWORD)  # a new login, a new day
    assert logged_in(client)


def test_disabling_a_user_ends_their_sessions_on_the_server(cli_env, client, people, db):
    console_login(client, "sam", PASSWORD)
    users("disable", "sam")
    with db.transaction() as s:
        assert s.scalars(select(ConsoleSession)).all() == []
    assert not logged_in(client)


# --- login throttling ----------------------------------------------------------------------------------------

def fail_until_locked(client, name, environ=None, clock=None, wrong="wrong password!"):
    """Wrong passwords as fast as allowed; returns the waits the connector imposed on the way (seconds)."""
    waits = []
    for _ in range(40):
        response = attempt(client, name, wrong, environ)
        if response.status_code == 429:
            wait = int(response.headers["Retry-After"])
            waits.append(wait)
            if wait >= 300:
                return waits
            clock.advance(seconds=wait)
        else:
            assert response.status_code == 401
    return waits


def test_forty_wrong_passwords_lock_the_account_and_the_right_one_is_refused(client, people, clock, db):
    waits = fail_until_locked(client, "sam", clock=clock)
    assert waits == [1, 2, 4, 8, 900]  # 5 free, then 1 s, 2 s, 4 s, 8 s, then locked for 15 minutes
    refused = attempt(client, "sam", PASSWORD)
    assert refused.status_code == 429 and "повторите через" in refused.get_data(as_text=True)
    assert not logged_in(client)
    # Refused attempts are not counted: hammering a lockout does not stretch it.
    for _ in range(20):
        attempt(client, "sam", "wrong password!")
    clock.advance(minutes=15, seconds=1)
    assert attempt(client, "sam", PASSWORD).status_code == 302  # a lockout ends by itself


def test_the_wait_is_an_answer_not_a_sleeping_thread(client, people, clock):
    fail_until_locked(client, "sam", clock=clock)
    started = time.monotonic()
    for _ in range(20):
        assert attempt(client, "sam", "wrong password!").status_code == 429
    assert time.monotonic() - started < 2


def test_a_flood_at_a_lockout_is_refused_before_any_form_work(client, people, clock):
    """Once this process knows the buckets hold, a login post is answered 429 before Flask reads a session or a
    form: a post with no form token at all (which the form would refuse 401) is still told to wait, with
    the security headers and no cookie. A browser with a device cookie still goes the whole way."""
    fail_until_locked(client, "sam", clock=clock)
    bare = client.application.test_client()
    refused = bare.post("/login", data={"username": "sam", "password": "wrong password!"})
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 800
    assert "повторите через" in refused.get_data(as_text=True) and "Set-Cookie" not in refused.headers
    assert refused.headers["X-Frame-Options"] == "DENY"
    # Another account from the same address is not held by sam's buckets: the form decides (no token: 401).
    assert bare.post("/login", data={"username": "olga", "password": "x"}).status_code == 401
    clock.advance(minutes=15, seconds=1)
    assert bare.post("/login", data={"username": "sam", "password": "x"}).status_code == 401  # over: the form again


def test_an_admin_lifts_a_lockout_from_the_cli_and_it_is_audited(cli_env, client, people, clock, db):
    fail_until_locked(client, "sam", clock=clock)
    listed = users("lockouts").output
    assert "pair:sam 127.0.0.1" in listed and "locked until" in listed
    assert "2 throttle bucket(s) lifted" in users("unlock", "sam").output  # pair:sam 127.0.0.1 and user:sam
    entry = audit_rows(db)[-1]
    assert (entry.scope, entry.actor, entry.before["locked"], entry.after["locked"]) == ("login:sam", "cli", True,
                                                                                         False)
    time.sleep(2.1)  # another process (the CLI) lifted it: this one trusts its cache at most 2 s
    assert attempt(client, "sam", PASSWORD).status_code == 302


def test_an_admin_lifts_a_lockout_in_the_console_and_it_is_audited(app, client, people, clock, db):
    fail_until_locked(client, "sam", clock=clock)
    admin = app.test_client()
    console_login(admin, "ann", PASSWORD)
    page = admin.get("/users")
    html = page.get_data(as_text=True)
    assert "вход sam с адреса 127.0.0.1" in html and "pair:" not in html and "блокировка" in html
    lifted = admin.post("/users/unlock", data={"username": "sam", "address": "", "csrf_token": csrf_token(page)})
    assert lifted.headers["Location"] == "/users"
    entry = audit_rows(db)[-1]
    assert (entry.scope, entry.actor, entry.before["locked"]) == ("login:sam", "ann", True)
    audit = admin.get("/audit").get_data(as_text=True)
    assert "Вход sam" in audit and "Вход заблокирован: да → нет" in audit and "login:sam" not in audit
    assert attempt(client, "sam", PASSWORD).status_code == 302  # the same process: at once


@pytest.mark.parametrize("who", ["sam", "olga"])
def test_only_admins_see_and_lift_lockouts(client, people, who):
    console_login(client, who, PASSWORD)
    assert client.get("/users").status_code == 403
    assert client.post("/users/unlock", data={"username": "sam", "csrf_token": csrf_token(client.get("/calls"))}) \
        .status_code == 403


def test_an_attacker_elsewhere_never_locks_out_the_browser_the_user_logs_in_from(app, client, people, clock):
    """The victim logged in from this browser before (it has the device cookie). An attacker fails from 40
    addresses until the account itself is locked: the victim still logs in from that browser; a browser the
    account never logged in from waits, but only minutes, and never longer than the attack's own lockout."""
    assert attempt(client, "sam", PASSWORD, {"REMOTE_ADDR": "198.51.100.7"}).status_code == 302
    client.post("/logout", data={"csrf_token": csrf_token(client.get("/calls"))})
    attacker, locked = app.test_client(), None
    for n in range(200):
        response = attempt(attacker, "sam", "wrong password!", {"REMOTE_ADDR": f"203.0.113.{n % 40 + 1}"})
        if response.status_code == 429:
            wait = int(response.headers["Retry-After"])
            if wait >= 60 * 4:
                locked = wait
                break
            clock.advance(seconds=wait)
    assert locked is not None and locked <= 300  # the account's own lockout: 5 minutes
    # The attacker's addresses are in their own buckets; the victim's browser in its own:
    assert attempt(client, "sam", PASSWORD, {"REMOTE_ADDR": "198.51.100.7"}).status_code == 302
    # Even from a new address (the user on the road, same browser):
    client.post("/logout", data={"csrf_token": csrf_token(client.get("/calls"))})
    assert attempt(client, "sam", PASSWORD, {"REMOTE_ADDR": "192.0.2.44"}).status_code == 302
    # A fresh browser waits for the account's lockout, which ends by itself.
    fresh = app.test_client()
    assert attempt(fresh, "sam", PASSWORD, {"REMOTE_ADDR": "192.0.2.45"}).status_code == 429
    clock.advance(minutes=5, seconds=1)
    assert attempt(fresh, "sam", PASSWORD, {"REMOTE_ADDR": "192.0.2.45"}).status_code == 302


def test_a_device_cookie_of_another_user_or_forged_counts_for_nothing(app, client, people, clock):
    assert attempt(client, "olga", PASSWORD).status_code == 302  # this browser knows olga, not sam
    waits = fail_until_locked(client, "sam", clock=clock)
    assert waits[-1] == 900
    client.set_cookie("qa_device", "forged", path="/login")
    assert attempt(client, "sam", PASSWORD).status_code == 429


def test_one_address_spraying_many_accounts_is_throttled(client, people, clock):
    statuses = [attempt(client, f"user{n}", "wrong password!", ATTACKER).status_code for n in range(12)]
    assert statuses[:11] == [401] * 11 and statuses[11] == 429  # 10 free across accounts, then the delay


# --- bearer tokens -------------------------------------------------------------------------------------------

def test_wrong_bearer_tokens_are_throttled_per_address(client, clock):
    """Before: 246 guesses a second, every one answered."""
    guesses = [client.get("/api/v1/calls", headers={"Authorization": f"Bearer guess-{n}"}, environ_base=ATTACKER)
               for n in range(12)]
    assert [g.status_code for g in guesses] == [401] * 11 + [429]
    assert guesses[-1].headers["Retry-After"] == "1" and "try again" in guesses[-1].json["error"]
    # Every token from that address waits, the right one too (else a right guess would show)...
    right = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    assert client.get("/api/v1/calls", headers=right, environ_base=ATTACKER).status_code == 429
    # ...other addresses do not.
    assert client.get("/api/v1/calls", headers=right, environ_base={"REMOTE_ADDR": "192.0.2.1"}).status_code == 200
    clock.advance(seconds=1)
    assert client.get("/api/v1/calls", headers=right, environ_base=ATTACKER).status_code == 200
    # The PBX's intake has no bearer token and is never throttled.
    assert client.post("/mango/ping", environ_base=ATTACKER).status_code == 200


def test_the_token_throttle_reaches_a_lockout(client, clock):
    for n in range(400):
        response = client.get("/api/v1/calls", headers={"Authorization": f"Bearer guess-{n}"}, environ_base=ATTACKER)
        if response.status_code == 429:
            wait = int(response.headers["Retry-After"])
            if wait >= 900:
                break
            clock.advance(seconds=wait)
    assert wait == 900


def test_an_address_behind_a_trusted_proxy_is_the_forwarded_one(db_url):
    from app import create_app
    from tests.conftest import make_config

    app = create_app(make_config(db_url, TRUSTED_PROXIES=1))
    client = app.test_client()
    try:
        for n in range(12):
            client.get("/api/v1/calls", headers={"Authorization": "Bearer guess", "X-Forwarded-For": "203.0.113.9"})
        auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        assert client.get("/api/v1/calls", headers={**auth, "X-Forwarded-For": "203.0.113.9"}).status_code == 429
        assert client.get("/api/v1/calls", headers={**auth, "X-Forwarded-For": "192.0.2.8"}).status_code == 200
    finally:
        app.extensions["connector"].db.dispose()


# --- the password check and the PBX's intake -----------------------------------------------------------------

def test_a_password_check_holds_no_database_lock_and_at_most_two_threads(app, people, monkeypatch):
    """A slow password check (scrypt) runs outside any transaction: a PBX callback commits meanwhile. Of
    three logins at once one is checked, one waits, the third is told to come back (503), unchecked."""
    import connector.core.users

    release, checking = threading.Event(), threading.Event()
    real = connector.core.users.check_password_hash

    def slow_check(stored, password):
        checking.set()
        release.wait(10)
        return real(stored, password)

    monkeypatch.setattr("connector.core.users.check_password_hash", slow_check)
    answers = {}

    def log_in(n):
        answers[n] = attempt(app.test_client(), "sam", PASSWORD, {"REMOTE_ADDR": f"192.0.2.{n}"}).status_code

    first = threading.Thread(target=log_in, args=(1,))
    first.start()
    assert checking.wait(5)
    second = threading.Thread(target=log_in, args=(2,))
    second.start()
    time.sleep(0.2)
    log_in(3)
    assert answers[3] == 503
    from connector.inbound.mango.callbacks import signed_form
    from tests.conftest import MANGO_KEY, MANGO_SALT

    started = time.monotonic()
    callback = app.test_client().post("/mango/events/summary", data=signed_form(MANGO_KEY, MANGO_SALT, summary("c-9")))
    assert callback.status_code == 200 and time.monotonic() - started < 2  # not behind the password check
    release.set()
    first.join(10)
    second.join(10)
    assert answers == {1: 302, 2: 302, 3: 503}


# --- passwords and ADMIN_TOKEN -------------------------------------------------------------------------------

@pytest.mark.parametrize("password, needle", [
    (" " * 8, "only spaces"),
    (" " * 12, "only spaces"),
    ("123456789", "at least 10 characters"),
    ("aaaaaaaaaaaa", "different characters"),
])
def test_weak_passwords_are_refused(cli_env, password, needle):
    refused = users("add", "x", "--role", "admin", "--password-stdin", stdin=password + "\n", ok=False)
    assert needle in refused.output


def test_a_password_change_follows_the_rule_and_ends_the_sessions(cli_env, client, people):
    console_login(client, "sam", PASSWORD)
    assert "only spaces" in users("password", "sam", "--password-stdin", stdin=" " * 10 + "\n", ok=False).output
    assert logged_in(client)
    users("password", "sam", "--password-stdin", stdin="a brand new passphrase\n")
    assert not logged_in(client)
    assert console_login(client, "sam", "a brand new passphrase").status_code == 302


@pytest.mark.parametrize("token, needle", [
    ("demo-token", "at least 32 characters, got 10"),
    ("x" * 40, "too repetitive"),
])
def test_a_weak_admin_token_is_refused_at_start(tmp_path, token, needle):
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": os.environ.get("PYTHONPATH", ""), "DATA_DIR": str(tmp_path),
           "ADMIN_TOKEN": token}
    result = subprocess.run([sys.executable, "-c", "import app; app.main(['serve'])"], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith("configuration error: ADMIN_TOKEN: ") and needle in result.stderr
    assert token not in result.stderr  # never printed back


# --- personal tokens -----------------------------------------------------------------------------------------

def test_a_personal_token_expires(client, people, db, clock):
    with db.transaction() as s:
        short, default = issue_token(s, "olga", days=1), issue_token(s, "olga")
    for token in (short, default):
        assert client.get("/api/v1/calls", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    clock.advance(days=1, seconds=1)
    assert client.get("/api/v1/calls", headers={"Authorization": f"Bearer {short}"}).status_code == 401
    clock.advance(days=88)
    assert client.get("/api/v1/calls", headers={"Authorization": f"Bearer {default}"}).status_code == 200
    clock.advance(days=1)
    assert client.get("/api/v1/calls", headers={"Authorization": f"Bearer {default}"}).status_code == 401


def test_tokens_are_listed_and_revoked_one_by_one_in_the_cli(cli_env, client, people, db):
    first = users("token", "olga", "--name", "reports").stdout.strip()
    second = users("token", "olga", "--days", "30").stdout.strip()
    assert client.get("/api/v1/calls", headers={"Authorization": f"Bearer {first}"}).status_code == 200
    with db.transaction() as s:
        ids = [t.id for t in s.scalars(select(ApiToken).order_by(ApiToken.id))]
    listed = users("tokens", "olga").output
    assert "reports" in listed and listed.count("active") == 2 and first not in listed
    assert "revoked" in users("revoke-token", str(ids[0])).output
    assert client.get("/api/v1/calls", headers={"Authorization": f"Bearer {first}"}).status_code == 401
    assert client.get("/api/v1/calls", headers={"Authorization": f"Bearer {second}"}).status_code == 200
    listed = users("tokens", "olga").output.splitlines()
    assert "revoked" in next(l for l in listed if l.strip().startswith(str(ids[0])))
    assert "no token 999" in users("revoke-token", "999", ok=False).output
    entry = audit_rows(db)[-1]
    assert (entry.scope, entry.actor, entry.after) == ("user:olga", "cli", {f"token {ids[0]}": "revoked"})


def test_tokens_are_listed_with_their_use_and_revoked_in_the_console(app, client, people, db):
    with db.transaction() as s:
        first, second = issue_token(s, "olga", name="bi"), issue_token(s, "olga")
    client.get("/api/v1/calls", headers={"Authorization": f"Bearer {first}"})
    with db.transaction() as s:
        ids = [t.id for t in s.scalars(select(ApiToken).order_by(ApiToken.id))]
        assert s.get(ApiToken, ids[0]).last_used_at is not None
    console_login(client, "ann", PASSWORD)
    page = client.get("/users?lang=en")
    html = page.get_data(as_text=True)
    assert f'id="token-{ids[0]}"' in html and "bi" in html and "Revoke" in html
    revoked = client.post(f"/users/tokens/{ids[0]}/revoke", data={"csrf_token": csrf_token(page)})
    assert revoked.headers["Location"] == "/users"
    assert client.post(f"/users/tokens/{ids[1]}/revoke", data={"csrf_token": "forged"}).status_code == 400
    assert client.get("/api/v1/calls", headers={"Authorization": f"Bearer {first}"}).status_code == 401
    assert client.get("/api/v1/calls", headers={"Authorization": f"Bearer {second}"}).status_code == 200
    row = client.get("/users?lang=ru").get_data(as_text=True).split(f'id="token-{ids[0]}"')[1].split("</tr>")[0]
    assert "отозван" in row and "Отозвать" not in row
    audit = client.get("/audit").get_data(as_text=True)
    assert "Пользователь olga" in audit and f"Токен {ids[0]}: действует → отозван" in audit and "user:" not in audit
