"""Malformed and hostile input found by fuzzing: each gets a one-line 4xx naming the field, never a
500 (a 500 tells a sender to retry forever and puts customer data into tracebacks), and writes nothing."""
import json

import pytest
from sqlalchemy import func, select

from connector.core.links import recording_link
from connector.core.models import Call, InboundEvent, Score, SettingsAudit
from tests.conftest import dtmf, recording, summary


def rows(db) -> tuple:
    with db.transaction() as s:
        return tuple(s.scalar(select(func.count()).select_from(m)) for m in (InboundEvent, Call, Score, SettingsAudit))


def one_line_4xx(response, status: int, needle: str) -> None:
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True))
    assert set(response.json) == {"error"} and "\n" not in response.json["error"]
    assert needle in response.json["error"], response.json["error"]


def deep(levels: int) -> str:
    return "[" * levels + "]" * levels


# --- recording links ------------------------------------------------------------------

@pytest.mark.parametrize("sig", ["é", "\u043f\u0440\u0438\u0432\u0435\u0442", "%ff"])
def test_a_recording_link_with_a_non_ascii_signature_is_403(client, app, sig):
    link = recording_link("http://x", app.config["SECRET_KEY"], "call-1")
    exp = link.split("exp=")[1].split("&")[0]
    response = client.get(f"/recordings/call-1?exp={exp}&sig={sig}")
    one_line_4xx(response, 403, "invalid")


# --- nesting, surrogates ----------------------------------------------------------------

@pytest.mark.parametrize("levels", [1000, 5000])  # 5000 levels still fit the 64 KiB body limit
def test_deeply_nested_json_in_a_callback_is_400(mango_post, db, levels):
    before = rows(db)
    one_line_4xx(mango_post("events/summary", deep(levels)), 400, "json")
    one_line_4xx(mango_post("events/summary", json.dumps({**summary(), "extra": "x"})[:-1] + ', "n": '
                            + deep(levels) + "}"), 400, "json")
    assert rows(db) == before


@pytest.mark.parametrize("levels", [1000, 20_000])
def test_deeply_nested_json_in_the_score_api_and_settings_is_400(post_score, client, auth, db, levels):
    from tests.conftest import sign_score

    body = '{"call_id": "c", "score": 3, "comment": ' + deep(levels) + "}"
    one_line_4xx(client.post("/api/v1/scores", data=body, headers=sign_score(body)), 400, "JSON")
    one_line_4xx(client.put("/api/v1/settings", data='{"max_threshold": ' + deep(levels) + "}",
                            headers={**auth, "Content-Type": "application/json"}), 400, "JSON")
    assert rows(db) == (0, 0, 0, 0)


@pytest.mark.parametrize("kind, payload, field", [
    ("events/summary", {**summary(), "entry_id": "call-\ud800"}, "entry_id"),
    ("events/summary", {**summary(), "to": {"extension": "\udfff"}}, "to.extension"),
    ("events/dtmf", {**dtmf(), "dtmf": "3\ud800"}, "dtmf"),
    ("events/recording", {**recording(), "recording_id": "\ud800"}, "recording_id"),
    ("events/sms", {"entry_id": "\ud800"}, "entry_id"),
])
def test_lone_surrogates_in_a_callback_are_400(mango_post, db, kind, payload, field):
    one_line_4xx(mango_post(kind, json.dumps(payload)), 400, field)
    assert rows(db) == (0, 0, 0, 0)


@pytest.mark.parametrize("field", ["call_id", "comment", "operator", "phone"])
def test_lone_surrogates_in_the_score_api_are_400(post_score, db, field):
    one_line_4xx(post_score({"call_id": "c", "score": 3, field: "x\ud800"}), 400, field)
    assert rows(db) == (0, 0, 0, 0)


def test_lone_surrogates_in_settings_and_filters_are_4xx(client, auth, db):
    response = client.put("/api/v1/settings", data=json.dumps({"tag_template": "Оценка {score} \ud800"}),
                          headers={**auth, "Content-Type": "application/json"})
    one_line_4xx(response, 422, "tag_template")
    response = client.put("/api/v1/settings", data=json.dumps({"amocrm_user_map": {"\ud800": 5}}),
                          headers={**auth, "Content-Type": "application/json"})
    one_line_4xx(response, 422, "amocrm_user_map")
    assert client.get("/api/v1/calls?operator=%ED%A0%80", headers=auth).status_code in (200, 400)
    assert rows(db) == (0, 0, 0, 0)


# --- dates at the edge ----------------------------------------------------------------------

EDGE_DATES = ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"]


@pytest.mark.parametrize("when", EDGE_DATES)
def test_edge_dates_in_rated_at_are_400(post_score, db, when):
    one_line_4xx(post_score({"call_id": "c", "score": 3, "rated_at": when}), 400, "rated_at")
    assert rows(db) == (0, 0, 0, 0)


@pytest.mark.parametrize("name, when, listed", [
    ("date_from", EDGE_DATES[0], True), ("date_to", EDGE_DATES[1], True),  # from the start, to the end of time
    ("date_to", EDGE_DATES[0], False), ("date_from", EDGE_DATES[1], False),
])
def test_edge_dates_in_filters_are_the_first_or_the_last_moment(client, auth, mango_post, name, when, listed):
    # Valid date-times, just outside what a datetime holds in UTC: a filter's bound there selects what it says.
    from urllib.parse import quote

    assert mango_post("events/summary", summary()).status_code == 200
    response = client.get(f"/api/v1/calls?{name}={quote(when)}", headers=auth)
    assert response.status_code == 200, response.json
    assert [c["call_id"] for c in response.json["items"]] == (["call-1"] if listed else [])
    report = client.get(f"/api/v1/reports/operators?{name}={quote(when)}", headers=auth)
    assert report.status_code == 200 and report.json["totals"]["calls"] == (1 if listed else 0)


# --- templates -------------------------------------------------------------------------------

@pytest.mark.parametrize("template", ["Оценка {score[0]}", "Оценка {score.x}", "Оценка {{score}}",
                                      "Оценка {score!r}", "Оценка {score:>300}", "{score} {0}", "{score} {}"])
def test_only_a_plain_score_placeholder_is_allowed(client, auth, db, template):
    for name in ("tag_template", "score_text_template"):
        response = client.put("/api/v1/settings", data=json.dumps({name: template}),
                              headers={**auth, "Content-Type": "application/json"})
        one_line_4xx(response, 422, name)
    assert rows(db) == (0, 0, 0, 0)


def test_a_template_has_at_most_255_characters(client, auth):
    # As written: then it fits with any score (a placeholder renders shorter than `{score}`), on any scale.
    headers = {**auth, "Content-Type": "application/json"}
    ok = client.put("/api/v1/settings", headers=headers,
                    data=json.dumps({"scale_max": 99, "tag_template": "x" * 248 + "{score}"}))
    assert ok.status_code == 200 and len(ok.json["tag_template"]) == 255
    one_line_4xx(client.put("/api/v1/settings", data=json.dumps({"tag_template": "x" * 249 + "{score}"}),
                            headers=headers), 422, "tag_template: at most 255 characters")


# --- numbers ---------------------------------------------------------------------------------

def test_time_differences_that_overflow_are_400(mango_post, db):
    one_line_4xx(mango_post("events/summary", {**summary(), "talk_time": 1, "end_time": 253_402_300_000}),
                 400, "end_time")
    assert rows(db) == (0, 0, 0, 0)


@pytest.mark.parametrize("value", [1.5, "7", 1e3, True])
def test_numbers_are_not_coerced(mango_post, post_score, db, value):
    one_line_4xx(mango_post("events/call", {"entry_id": "c", "call_id": "l", "seq": value,
                                            "call_state": "Connected"}), 400, "seq")
    one_line_4xx(mango_post("events/summary", {**summary(), "call_direction": value}), 400, "call_direction")
    one_line_4xx(post_score({"call_id": "c", "score": value}), 400, "score")
    assert rows(db) == (0, 0, 0, 0)


# --- paths -----------------------------------------------------------------------------------

def test_an_event_path_too_long_or_with_nul_is_400(mango_post, client, db):
    form = mango_post.form({"entry_id": "c"})
    one_line_4xx(client.post("/mango/events/" + "x" * 100, data=form), 400, "path")
    one_line_4xx(client.post("/mango/events/sms%00x", data=form), 400, "path")
    assert rows(db) == (0, 0, 0, 0)


# --- user map --------------------------------------------------------------------------------

@pytest.mark.parametrize("user_id", [2**31, 2**63, 0, -1, 1.5, "5"])
def test_a_user_id_that_cannot_be_stored_is_refused_at_the_api(client, auth, db, user_id):
    response = client.put("/api/v1/settings", data=json.dumps({"amocrm_user_map": {"101": user_id}}),
                          headers={**auth, "Content-Type": "application/json"})
    one_line_4xx(response, 422, "amocrm_user_map")
    assert rows(db) == (0, 0, 0, 0)


# --- whatever slips through ------------------------------------------------------------------

def test_a_database_data_error_is_a_4xx_without_personal_data(app, client, caplog):
    from sqlalchemy.exc import DataError, IntegrityError

    @app.get("/boom/<kind>")
    def boom(kind):
        error = DataError if kind == "data" else IntegrityError
        raise error("INSERT INTO calls (customer_phone) VALUES ('79001234567')", {}, ValueError("value too long"))

    one_line_4xx(client.get("/boom/data"), 422, "does not fit")
    one_line_4xx(client.get("/boom/integrity"), 409, "conflict")
    assert "79001234567" not in caplog.text


@pytest.mark.parametrize("call_id", ["a%00b", "x" * 200])
def test_a_call_id_no_call_can_have_is_404(client, auth, call_id):
    one_line_4xx(client.get(f"/api/v1/calls/{call_id}", headers=auth), 404, "call_id")
