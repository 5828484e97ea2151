"""The PBX side: signed callbacks in, joined into calls, survey digits into scores."""
import json

import pytest
from sqlalchemy import func, select

from connector.core.models import Call, InboundEvent, Score
from tests.conftest import dtmf, recording, summary


def count(db, model):
    with db.transaction() as s:
        return s.scalar(select(func.count()).select_from(model))


def get(client, auth, call_id="call-1"):
    response = client.get(f"/api/v1/calls/{call_id}", headers=auth)
    assert response.status_code == 200, response.json
    return response.json


def test_summary_recording_and_survey_join_into_one_call(mango_post, client, auth):
    assert mango_post("events/dtmf", dtmf(digits="3")).json == {"success": True}
    assert mango_post("events/summary", summary()).status_code == 200
    assert mango_post("events/recording", recording()).status_code == 200

    call = get(client, auth)
    assert call["direction"] == "inbound"
    assert call["operator"] == "101"
    assert call["customer_phone"] == "79001234567"
    assert call["line_number"] == "74950000000"
    assert call["talk_seconds"] == 60
    assert call["recording_id"] == "rec-1"
    assert call["customer_score"] == 3
    assert call["decision"]["record"] is True and call["decision"]["tag"] == "Оценка 3"
    # The survey came before the summary; the score still names the operator it rated.
    assert call["scores"][0]["operator"] == "101"


@pytest.mark.parametrize("order", [["summary", "recording", "dtmf"], ["recording", "dtmf", "summary"],
                                   ["dtmf", "recording", "summary"]])
def test_any_arrival_order_gives_the_same_call(mango_post, client, auth, order):
    payloads = {"summary": summary(), "recording": recording(), "dtmf": dtmf(digits="10")}
    for kind in order:
        assert mango_post(f"events/{kind}", payloads[kind]).status_code == 200
    call = get(client, auth)
    assert (call["operator"], call["recording_id"], call["customer_score"]) == ("101", "rec-1", 10)
    assert call["decision"]["tag"] is None and call["decision"]["record"] is True


def test_outbound_call_operator_is_the_caller(mango_post, client, auth):
    mango_post("events/summary", summary(direction=2, extension="202", customer="79005550000"))
    call = get(client, auth)
    assert (call["direction"], call["operator"], call["customer_phone"]) == ("outbound", "202", "79005550000")


def test_internal_call_is_not_sent_to_a_crm(mango_post, client, auth):
    mango_post("events/summary", summary(direction=0))
    call = get(client, auth)
    assert call["direction"] == "internal" and call["crm"]["status"] == "skipped"


def test_duplicates_are_recognised_and_change_nothing(mango_post, db, client, auth):
    assert mango_post("events/summary", summary()).status_code == 200
    assert mango_post("events/dtmf", dtmf(digits="3")).status_code == 200
    before = count(db, InboundEvent), count(db, Score)
    again = mango_post("events/summary", summary())
    # The PBX reads only the status and retries anything else: a duplicate is acknowledged.
    assert again.status_code == 200 and again.json == {"success": True, "duplicate": True}
    assert mango_post("events/dtmf", dtmf(digits="3")).json["duplicate"] is True
    assert mango_post("events/recording", recording()).json == {"success": True}
    assert mango_post("events/recording", recording()).json["duplicate"] is True
    assert (count(db, InboundEvent), count(db, Score)) == (before[0] + 1, before[1])
    assert get(client, auth)["customer_score"] == 3


def test_recording_started_then_completed_keeps_the_completed_id(mango_post, client, auth):
    mango_post("events/recording", recording(state="Started", code=None, seq=1))
    assert get(client, auth)["recording_id"] is None
    mango_post("events/recording", recording(state="Completed", seq=2))
    assert get(client, auth)["recording_id"] == "rec-1"


def test_a_failed_recording_is_not_used(mango_post, client, auth):
    mango_post("events/recording", recording(code=4002))
    assert get(client, auth)["recording_id"] is None


def test_older_call_event_does_not_overwrite_newer_state(mango_post, db):
    base = {"entry_id": "call-1", "call_id": "leg-1", "timestamp": 1, "location": "abonent",
            "from": {"number": "79001234567"}, "to": {"extension": "101", "line_number": "74950000000"}}
    mango_post("events/call", {**base, "seq": 3, "call_state": "Disconnected"})
    mango_post("events/call", {**base, "seq": 2, "call_state": "Connected"})
    with db.transaction() as s:
        call = s.scalars(select(Call)).one()
        assert (call.last_event_seq, call.last_call_state, call.line_number) == (3, "Disconnected", "74950000000")


@pytest.mark.parametrize("digits, reason", [("*", "digits"), ("0", "outside the scale"), ("11", "outside")])
def test_unusable_survey_digits_are_kept_as_refused(mango_post, client, auth, digits, reason):
    assert mango_post("events/dtmf", dtmf(digits=digits)).status_code == 200
    call = get(client, auth)
    assert call["customer_score"] is None and call["decision"]["tag"] is None
    [score] = call["scores"]
    assert score["status"] == "refused" and reason in score["reason"] and score["raw"] == digits


def test_digits_from_another_ivr_menu_are_not_a_score(mango_post, client, auth):
    mango_post("events/dtmf", dtmf(digits="2", location="ivr.1"))
    assert get(client, auth)["scores"] == []


def test_locked_score_keeps_the_first_and_records_the_second(mango_post, client, auth):
    mango_post("events/dtmf", dtmf(digits="3", seq=5))
    mango_post("events/dtmf", dtmf(digits="9", seq=6))
    call = get(client, auth)
    assert call["customer_score"] == 3
    assert [s["status"] for s in call["scores"]] == ["accepted", "kept"]


@pytest.mark.parametrize("config_overrides", [{"QA_LOCK_SCORE": "false"}])
def test_unlocked_newer_score_wins_and_replaces_the_tag(mango_post, client, auth):
    mango_post("events/dtmf", dtmf(digits="3", seq=5))
    mango_post("events/dtmf", dtmf(digits="5", seq=6))
    call = get(client, auth)
    assert call["customer_score"] == 5 and call["decision"]["tag"] == "Оценка 5"
    assert call["scores"][-1]["tag_to_remove"] == "Оценка 3"


@pytest.mark.parametrize("config_overrides", [{"QA_ENABLED": "false"}])
def test_feature_off_stores_but_skips_the_crm(mango_post, client, auth):
    mango_post("events/summary", summary())
    mango_post("events/dtmf", dtmf(digits="2"))
    call = get(client, auth)
    assert call["customer_score"] == 2
    assert call["decision"]["record"] is False and call["decision"]["tag"] is None
    assert call["crm"]["status"] == "skipped"


@pytest.mark.parametrize("config_overrides", [{"QA_RATING_WINDOW_DAYS": "1"}])
def test_late_survey_outside_window_is_refused(mango_post, client, auth):
    mango_post("events/summary", summary(start=1_763_800_000))
    mango_post("events/dtmf", dtmf(digits="2", timestamp=1_763_800_000 + 3 * 86400))
    call = get(client, auth)
    assert call["customer_score"] is None and call["scores"][0]["status"] == "refused"


def test_other_events_and_results_are_verified_and_acknowledged(mango_post, db, client):
    assert mango_post("events/sms", {"command_id": "c1", "reason": 1000}).json == {"success": True}
    assert mango_post("result/callback", {"command_id": "c2", "result": 1000}).status_code == 200
    assert mango_post("ping", {}).status_code == 200
    assert count(db, InboundEvent) == 2
    bad = client.post("/mango/events/sms", data={**mango_post.form({"a": 1}), "sign": "0" * 64})
    assert bad.status_code == 403


def test_other_kinds_are_deduplicated_by_kind_and_body(mango_post, db):
    """The SMS command's outcome and the carrier's report may carry the same body: two facts, both kept."""
    body = {"command_id": "sms-1", "result": 1000}
    assert mango_post("result/sms", body).json == {"success": True}
    assert mango_post("events/sms", body).json == {"success": True}  # another kind: not a duplicate
    assert mango_post("result/sms", body).json == {"success": True, "duplicate": True}
    assert count(db, InboundEvent) == 2


# --- bad input: a one-line 4xx, never a 500, nothing written ---------------

def _nothing_written(db):
    assert count(db, InboundEvent) == 0 and count(db, Call) == 0 and count(db, Score) == 0


@pytest.mark.parametrize("form_change, status, needle", [
    ({"vpbx_api_key": "someone-else"}, 403, "vpbx_api_key"),
    ({"sign": "a" * 64}, 403, "sign"),
    ({"sign": None}, 400, "sign"),
    ({"json": None}, 400, "json"),
    ({"vpbx_api_key": None}, 400, "vpbx_api_key"),
])
def test_unsigned_or_missing_fields_are_refused(mango_post, client, db, form_change, status, needle):
    form = mango_post.form(summary())
    for key, value in form_change.items():
        if value is None:
            form.pop(key)
        else:
            form[key] = value
    response = client.post("/mango/events/summary", data=form)
    assert response.status_code == status
    assert needle in response.json["error"] and "\n" not in response.json["error"]
    _nothing_written(db)


def test_sign_over_a_reserialised_json_is_refused(mango_post, client, db):
    form = mango_post.form('{"entry_id": "call-1",  "call_direction": 1}')
    form["json"] = json.dumps(json.loads(form["json"]))  # same data, other bytes
    assert client.post("/mango/events/summary", data=form).status_code == 403
    _nothing_written(db)


@pytest.mark.parametrize("payload, needle", [
    ("not json", "not valid JSON"),
    ("[1, 2]", "JSON object"),
    (json.dumps({"call_direction": 1}), "entry_id"),
    (json.dumps({"entry_id": "x", "call_direction": 7}), "call_direction"),
    (json.dumps({"entry_id": "x" * 129, "call_direction": 1}), "entry_id"),
    (json.dumps({"entry_id": "x", "call_direction": 1, "to": {"extension": ["101"]}}), "to.extension"),
    (json.dumps({"entry_id": "a\u0000b", "call_direction": 1}), "NUL"),
    (json.dumps({"entry_id": "x", "call_direction": 1, "end_time": 10**15}), "end_time"),
    (json.dumps({"entry_id": "x", "call_direction": 1, "disconnect_reason": 2**40}), "disconnect_reason"),
])
def test_malformed_json_names_the_field(mango_post, db, payload, needle):
    response = mango_post("events/summary", payload)
    assert response.status_code == 400 and needle in response.json["error"]
    _nothing_written(db)


def test_unknown_keys_are_tolerated(mango_post, client, auth):
    assert mango_post("events/summary", {**summary(), "new_field_2027": {"x": 1}}).status_code == 200
    assert get(client, auth)["operator"] == "101"


def test_oversized_body_is_refused(mango_post, client, db):
    big = {**summary(), "padding": "x" * 70_000}
    response = client.post("/mango/events/summary", data=mango_post.form(big))
    assert response.status_code == 413 and response.json == {"error": "request body too large"}
    _nothing_written(db)


def test_wrong_content_type_is_refused(mango_post, client, db):
    response = client.post("/mango/events/summary", json=mango_post.form(summary()))
    assert response.status_code == 415 and "x-www-form-urlencoded" in response.json["error"]
    _nothing_written(db)


@pytest.mark.parametrize("config_overrides", [{"MANGO_API_SALT": ""}])
def test_events_are_refused_until_credentials_are_set(mango_post, db):
    response = mango_post("events/summary", summary())
    assert response.status_code == 403 and "MANGO_API" in response.json["error"]
    _nothing_written(db)


def test_multipart_form_is_accepted_like_urlencoded(mango_post, client, auth):
    response = client.post("/mango/events/summary", data=mango_post.form(summary()),
                           content_type="multipart/form-data")
    assert response.status_code == 200 and response.json == {"success": True}
    mango_post.apply()
    assert get(client, auth)["operator"] == "101"


def test_empty_ping_is_acknowledged_and_stores_nothing(client, db):
    for kwargs in ({}, {"content_type": "application/x-www-form-urlencoded"},
                   {"content_type": "multipart/form-data"}):
        response = client.post("/mango/ping", **kwargs)
        assert response.status_code == 200 and response.json == {"success": True}
    _nothing_written(db)


def test_ping_with_fields_is_verified(client, mango_post):
    forged = {**mango_post.form({}), "sign": "0" * 64}
    assert client.post("/mango/ping", data=forged).status_code == 403
    assert client.post("/mango/ping", data=mango_post.form({})).status_code == 200


def test_unknown_path_is_404_json(client):
    response = client.post("/mango/other/thing", data={"a": "b"})
    assert response.status_code == 404 and response.json == {"error": "not found"}


def test_an_address_given_with_a_trailing_slash_still_receives_the_events(client, mango_post, auth):
    """MANGO may join `<address>/` and `/events/summary` with a doubled slash: the event is taken, not
    redirected (a PBX need not follow a 308), and stored as any other."""
    from connector.inbound.mango.callbacks import signed_form
    from tests.conftest import MANGO_KEY, MANGO_SALT, summary

    answer = client.post("/mango//events/summary", data=signed_form(MANGO_KEY, MANGO_SALT, summary("call-slash")))
    assert answer.status_code == 200, answer.get_data(as_text=True)
    mango_post.apply()
    assert client.get("/api/v1/calls/call-slash", headers=auth).status_code == 200
