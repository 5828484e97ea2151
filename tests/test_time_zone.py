"""The account's time zone: an admin chooses it on the settings page (or through the settings API), and the
console then shows times, reads its date filters' days, counts the reports' days and writes the exports' times
in it; the command line reads `--at` in it too. Until one is chosen CONSOLE_TIMEZONE (Moscow) is in force. The
JSON API keeps UTC."""
import html as html_text
import json
import re
from datetime import datetime, timezone

import pytest

from connector.core.secrets import Source
from connector.core.time_zone import RUSSIA, update_time_zone, zone_in_force, zone_problem
from connector.core.users import add_user
from tests.conftest import csrf_token, csv_rows, dtmf, make_config, summary
from tests.test_demo_data import cli_env, run, served_app  # noqa: F401 (fixtures)

PASSWORD = "correct horse battery"
# 20:30 UTC on 20 November 2026: 23:30 that day in Moscow (UTC+3), 01:30 on the 21st in Yekaterinburg (UTC+5).
LATE = int(datetime(2026, 11, 20, 20, 30, tzinfo=timezone.utc).timestamp())
NOON = int(datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc).timestamp())


# --- the zone in force ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["Europe/Moscow", "Asia/Yekaterinburg", "Asia/Kamchatka", "UTC", "Europe/Minsk"])
def test_a_real_zone_is_accepted(name):
    assert zone_problem(name) is None


@pytest.mark.parametrize("name", ["Mars/Olympus", "", "europe/moscow", "Moscow", "UTC+3", "localtime", "Factory",
                                  "../../etc/passwd", "/usr/share/zoneinfo/UTC", None, 3, "Europe/Moscow " * 10])
def test_anything_else_is_refused_and_says_what_is_expected(name):
    assert "expected an IANA time zone name such as Europe/Moscow" in zone_problem(name)


def test_every_russian_zone_is_offered():
    assert len(RUSSIA) == 12 and all(zone_problem(name) is None for name in RUSSIA)


@pytest.mark.parametrize("lang, name, at, label", [
    ("ru", "Europe/Moscow", None, "Москва (UTC+3)"),
    ("en", "Asia/Yekaterinburg", None, "Yekaterinburg (UTC+5)"),
    ("ru", "Asia/Kamchatka", None, "Петропавловск-Камчатский (UTC+12)"),
    ("en", "Asia/Kolkata", None, "Kolkata (UTC+5:30)"),
    ("en", "America/New_York", datetime(2026, 1, 15, tzinfo=timezone.utc), "New York (UTC-5)"),
    ("en", "Europe/Chisinau", datetime(2026, 7, 15, tzinfo=timezone.utc), "Chisinau (UTC+3)"),  # summer time
    ("ru", "UTC", None, "Всемирное координированное время (UTC)"),
    ("en", "UTC", None, "Coordinated Universal Time (UTC)"),
    ("ru", "Mars/Olympus", None, "Mars/Olympus"),  # not a zone: shown as stored
])
def test_a_zone_is_named_as_people_call_it_with_its_offset(app, lang, name, at, label):
    from webui.labels import zone_label

    with app.test_request_context(f"/?lang={lang}"):
        assert zone_label(name, at) == label


def test_the_environment_until_an_admin_chooses_then_the_console(db):
    with db.reading() as s:
        zone = zone_in_force(s, "Europe/Moscow")
    assert (zone.name, zone.source, zone.saved_at) == ("Europe/Moscow", Source.ENVIRONMENT, None)
    with db.transaction() as s:
        update_time_zone(s, "Asia/Yekaterinburg", actor="ann")
    with db.reading() as s:
        chosen = zone_in_force(s, "Europe/Moscow")
    assert (chosen.name, chosen.source) == ("Asia/Yekaterinburg", Source.CONSOLE) and chosen.saved_at is not None
    assert chosen.zone.key == "Asia/Yekaterinburg"


def test_a_bad_zone_stores_nothing(db):
    from connector.core.time_zone import TimeZoneError

    with pytest.raises(TimeZoneError) as refused, db.transaction() as s:
        update_time_zone(s, "Mars/Olympus", actor="ann")
    assert refused.value.field == "time_zone"
    with db.reading() as s:
        assert zone_in_force(s, "Europe/Moscow").source == Source.ENVIRONMENT


# --- the console ----------------------------------------------------------------------------------------

@pytest.fixture
def people(db, monkeypatch):
    monkeypatch.setattr("connector.core.users.PASSWORD_METHOD", "scrypt:1024:8:1")  # roles, not hashing cost
    with db.transaction() as s:
        add_user(s, "ann", "admin", PASSWORD, [])
        add_user(s, "sam", "supervisor", PASSWORD, [])


@pytest.fixture
def two_calls(mango_post):
    """"late" (score 4) is on 20 November in Moscow and on the 21st in Yekaterinburg; "noon" (10) on the 20th."""
    for entry_id, start, digits in [("late", LATE, "4"), ("noon", NOON, "10")]:
        assert mango_post("events/summary", summary(entry_id, start=start)).status_code == 200
        assert mango_post("events/dtmf", dtmf(entry_id, digits, timestamp=start + 80)).status_code == 200


def log_in(client, name):
    token = csrf_token(client.get("/login"))
    assert client.post("/login", data={"username": name, "password": PASSWORD, "csrf_token": token}).status_code == 302


def page(client, path: str) -> str:
    response = client.get(path)
    assert response.status_code == 200, path
    return html_text.unescape(response.get_data(as_text=True))


def late_row(calls_page: str) -> str:
    return re.search(r'<a href="/calls/late">([^<]*)</a>', calls_page).group(1)


def choose(client, name: str):
    token = csrf_token(client.get("/settings"))
    return client.post("/settings/time-zone", data={"time_zone": name, "csrf_token": token})


def test_an_admin_switches_to_yekaterinburg_and_every_time_follows(client, people, two_calls, auth):
    log_in(client, "ann")
    card = page(client, "/settings").split('id="time-zone"')[1].split('class="card"')[0]
    assert "Действует Москва (UTC+3) из переменной окружения CONSOLE_TIMEZONE" in card
    assert '<option selected value="Europe/Moscow">Москва (UTC+3)</option>' in card
    assert '<option value="Asia/Yekaterinburg">Екатеринбург (UTC+5)</option>' in card
    assert late_row(page(client, "/calls")) == "20.11.2026, 23:30"
    assert "/calls/late" not in page(client, "/calls?date_from=2026-11-21&date_to=2026-11-22")
    assert csv_rows(client.get("/calls/export.csv"))[1][:2] == ["late", "20.11.2026 23:30"]

    saved = choose(client, "Asia/Yekaterinburg")
    assert saved.status_code == 302 and saved.headers["Location"] == "/settings?zone_saved=1#time-zone"
    card = page(client, "/settings?zone_saved=1").split('id="time-zone"')[1].split('class="card"')[0]
    assert "Часовой пояс сохранён" in card and "Действует Екатеринбург (UTC+5): выбран в консоли" in card
    assert '<option selected value="Asia/Yekaterinburg">' in card

    assert late_row(page(client, "/calls")) == "21.11.2026, 01:30"  # 2 hours later than in Moscow
    on_21st = page(client, "/calls?date_from=2026-11-21&date_to=2026-11-22")
    assert "/calls/late" in on_21st and "/calls/noon" not in on_21st
    assert csv_rows(client.get("/calls/export.csv"))[1][:2] == ["late", "21.11.2026 01:30"]
    trend = page(client, "/reports").split('id="trend"')[1]
    assert "<td>20.11.2026</td><td>1</td><td>10.0</td>" in trend  # noon
    assert "<td>21.11.2026</td><td>1</td><td>4.0</td>" in trend  # late, on Yekaterinburg's 21st
    assert "Екатеринбург" in page(client, "/notifications")  # "time is given in the zone «…»"

    audit = page(client, "/audit")
    assert "Настройки аккаунта" in audit and "Часовой пояс: не задано → Екатеринбург (UTC+5)" in audit
    english = page(client, "/audit?lang=en")
    assert "Account settings" in english and "Time zone: not set → Yekaterinburg (UTC+5)" in english
    assert "In force: Yekaterinburg (UTC+5), chosen in the console" in page(client, "/settings")

    # The API keeps UTC, and reads the zone in force.
    api = client.get("/api/v1/calls/late", headers=auth).json
    assert api["started_at"] == "2026-11-20T20:30:00Z"
    assert client.get("/api/v1/settings", headers=auth).json["time_zone"] == "Asia/Yekaterinburg"


def test_the_zone_is_read_once_per_page(client, people, two_calls, db):
    from tests.conftest import counted_statements

    log_in(client, "ann")
    choose(client, "Asia/Yekaterinburg")
    with counted_statements(db, verbs=False) as statements:
        assert late_row(page(client, "/calls?date_from=2026-11-20")) == "21.11.2026, 01:30"
    zone_reads = [s for s in statements  # "values" is quoted on SQLite only
                  if s.replace('"', "").startswith("SELECT runtime_settings.values, runtime_settings.updated_at")]
    assert len(zone_reads) == 1, [s for s in statements if "runtime_settings" in s]


@pytest.mark.parametrize("name", ["Mars/Olympus", "", "Europe/Moscow'><script>"])
def test_a_zone_that_is_none_is_refused_beside_the_field_and_nothing_is_saved(client, people, auth, name):
    log_in(client, "ann")
    refused = choose(client, name)
    assert refused.status_code == 422
    card = html_text.unescape(refused.get_data(as_text=True)).split('id="time-zone"')[1].split('class="card"')[0]
    assert "Такого часового пояса нет: выберите его из списка. Ничего не сохранено." in card
    assert 'aria-invalid="true"' in card and "<script>" not in card
    assert client.get("/api/v1/settings", headers=auth).json["time_zone"] == "Europe/Moscow"
    assert client.get("/api/v1/settings/audit", headers=auth).json["items"] == []
    english = client.post("/settings/time-zone?lang=en", data={"time_zone": "Mars/Olympus",
                                                              "csrf_token": csrf_token(client.get("/settings"))})
    assert "There is no such time zone: choose one from the list. Nothing was saved." in english.get_data(as_text=True)


def test_the_form_needs_its_csrf_token_and_an_admin(client, people, auth):
    log_in(client, "ann")
    forged = client.post("/settings/time-zone", data={"time_zone": "Asia/Omsk", "csrf_token": "forged"})
    assert forged.status_code == 400 and "подделана" in forged.get_data(as_text=True)
    client.post("/logout", data={"csrf_token": csrf_token(client.get("/calls"))})
    log_in(client, "sam")
    token = csrf_token(client.get("/calls"))
    refused = client.post("/settings/time-zone", data={"time_zone": "Asia/Omsk", "csrf_token": token})
    assert refused.status_code == 403 and "Нет доступа" in refused.get_data(as_text=True)
    assert client.get("/api/v1/settings", headers=auth).json["time_zone"] == "Europe/Moscow"


@pytest.mark.parametrize("config_overrides", [{"CONSOLE_TIMEZONE": "Asia/Kolkata"}])
def test_a_zone_from_the_environment_outside_the_list_is_offered_and_named(client, people):
    log_in(client, "ann")
    card = page(client, "/settings").split('id="time-zone"')[1].split('class="card"')[0]
    assert re.search(r'<option selected value="Asia/Kolkata">[^<(]+ \(UTC\+5:30\)</option>', card), card


# --- the settings API -----------------------------------------------------------------------------------

def test_the_settings_api_reads_and_changes_the_zone(client, auth):
    assert client.get("/api/v1/settings", headers=auth).json["time_zone"] == "Europe/Moscow"
    changed = client.put("/api/v1/settings", json={"time_zone": "Asia/Vladivostok"}, headers=auth)
    assert changed.status_code == 200 and changed.json["time_zone"] == "Asia/Vladivostok"
    assert changed.json["max_threshold"] == 9  # the rest as it was
    [row] = client.get("/api/v1/settings/audit", headers=auth).json["items"]
    assert (row["scope"], row["before"], row["after"]) == ("account", {}, {"time_zone": "Asia/Vladivostok"})


@pytest.mark.parametrize("body", [{"time_zone": "Mars/Olympus"}, {"time_zone": 3}, {"time_zone": None},
                                  {"time_zone": "Asia/Omsk", "max_threshold": 101}])
def test_the_settings_api_refuses_a_bad_zone_and_keeps_nothing(client, auth, body):
    refused = client.put("/api/v1/settings", json=body, headers=auth)
    assert refused.status_code == 422
    if "max_threshold" not in body:
        assert refused.json["error"].startswith("time_zone: expected an IANA time zone name such as Europe/Moscow")
    assert client.get("/api/v1/settings", headers=auth).json["time_zone"] == "Europe/Moscow"
    assert client.get("/api/v1/settings/audit", headers=auth).json["items"] == []


# --- the command line -----------------------------------------------------------------------------------

def test_the_command_line_reads_moments_in_the_zone_in_force(db_url, db):
    from commands.cli import _account_zone

    config = make_config(db_url, CONSOLE_TIMEZONE="Europe/Samara")
    assert _account_zone(config).key == "Europe/Samara"  # nothing chosen: the environment's
    with db.transaction() as s:
        update_time_zone(s, "Asia/Irkutsk", actor="ann")
    assert _account_zone(config).key == "Asia/Irkutsk"


def test_simulate_at_is_read_in_the_zone_chosen_in_the_console(served_app, cli_env):  # noqa: F811
    from connector.core.db import Database

    database = Database(cli_env)
    try:
        with database.transaction() as s:
            update_time_zone(s, "Asia/Yekaterinburg", actor="ann")
    finally:
        database.dispose()
    output = run("simulate", "--url", served_app, "--call-id", "sim-zone", "--at", "2026-11-20 14:05")
    call = json.loads(output.split("stored call sim-zone:", 1)[1])
    assert call["started_at"] == "2026-11-20T09:05:00Z"  # 14:05 in Yekaterinburg (UTC+5)
