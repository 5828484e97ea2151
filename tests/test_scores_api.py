"""The generic score API: Standard Webhooks signed JSON from any quality system."""
import json
import time

import pytest
from sqlalchemy import func, select

from connector.core.models import Call, InboundEvent, Score
from tests.conftest import sign_score


def counts(db):
    with db.transaction() as s:
        return tuple(s.scalar(select(func.count()).select_from(m)) for m in (InboundEvent, Call, Score))


def test_customer_score_from_a_quality_system(post_score, client, auth):
    response = post_score({"call_id": "call-9", "score": 4, "source": "customer",
                           "rated_at": "2026-11-22T10:00:00Z", "operator": "105", "comment": "slow"})
    assert response.status_code == 200
    assert response.json["status"] == "accepted"
    call = client.get("/api/v1/calls/call-9", headers=auth).json
    assert call["customer_score"] == 4 and call["decision"]["tag"] == "Оценка 4"
    assert call["scores"][0]["operator"] == "105" and call["scores"][0]["comment"] == "slow"
    assert call["scores"][0]["rated_at"] == "2026-11-22T10:00:00Z"


def test_supervisor_score_sits_beside_the_customer_score(post_score, client, auth):
    post_score({"call_id": "call-9", "score": 2})
    post_score({"call_id": "call-9", "score": 8, "source": "supervisor", "comment": "fine"})
    call = client.get("/api/v1/calls/call-9", headers=auth).json
    assert (call["customer_score"], call["supervisor_score"]) == (2, 8)
    assert call["decision"]["tag"] == "Оценка 2"


def test_a_seen_webhook_id_changes_nothing(post_score, db):
    assert post_score({"call_id": "call-9", "score": 4}, msg_id="msg_1").status_code == 200
    before = counts(db)
    again = post_score({"call_id": "call-9", "score": 2}, msg_id="msg_1")
    # Standard Webhooks senders retry until they see a 2xx: a seen id is acknowledged.
    assert again.status_code == 200 and again.json == {"success": True, "duplicate": True}
    assert counts(db) == before


def test_stale_timestamp_is_refused(post_score, db):
    response = post_score({"call_id": "c", "score": 4}, timestamp=int(time.time()) - 600)
    assert response.status_code == 403 and "too old" in response.json["error"]
    assert counts(db) == (0, 0, 0)


def test_forged_signature_is_refused(client, db):
    body = json.dumps({"call_id": "c", "score": 4})
    headers = sign_score(body, secret="whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=")
    response = client.post("/api/v1/scores", data=body, headers=headers)
    assert response.status_code == 403
    tampered = sign_score(body)
    response = client.post("/api/v1/scores", data=body.replace("4", "1"), headers=tampered)
    assert response.status_code == 403
    assert counts(db) == (0, 0, 0)


@pytest.mark.parametrize("drop", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_signature_headers_are_401(client, db, drop):
    body = json.dumps({"call_id": "c", "score": 4})
    headers = sign_score(body)
    headers.pop(drop)
    assert client.post("/api/v1/scores", data=body, headers=headers).status_code == 401
    assert counts(db) == (0, 0, 0)


def test_malformed_signature_header_is_403_not_500(client):
    body = json.dumps({"call_id": "c", "score": 4})
    headers = {**sign_score(body), "webhook-signature": "garbage-without-comma"}
    response = client.post("/api/v1/scores", data=body, headers=headers)
    assert response.status_code == 403 and "malformed" in response.json["error"]


@pytest.mark.parametrize("payload, needle", [
    ({"score": 4}, "call_id"),
    ({"call_id": "c", "score": "four"}, "score"),
    ({"call_id": "c", "score": 4, "source": "robot"}, "source"),
    ({"call_id": "c", "score": 4, "rated_at": "yesterday"}, "rated_at"),
])
def test_wrong_shape_is_400_naming_the_field(post_score, db, payload, needle):
    response = post_score(payload)
    assert response.status_code == 400 and response.json["error"].startswith(needle)
    assert counts(db) == (0, 0, 0)


def test_out_of_scale_score_is_409_and_nothing_is_kept(post_score, db):
    # 42 fits some scale (0 to 99), not the 1..10 one in force: a conflict with the settings.
    response = post_score({"call_id": "c", "score": 42})
    assert response.status_code == 409 and "outside the scale 1..10" in response.json["error"]
    assert counts(db) == (0, 0, 0)


@pytest.mark.parametrize("score", [-1, 100])
def test_a_score_no_scale_holds_is_400(post_score, db, score):
    response = post_score({"call_id": "c", "score": score})
    assert response.status_code == 400 and response.json["error"].startswith("score:")
    assert counts(db) == (0, 0, 0)


def test_an_integral_number_is_an_integer(client, auth):
    # JSON has one number type: 4.0 is the integer 4 (as the OpenAPI document's `integer` reads it).
    body = '{"call_id": "c", "score": 4.0}'
    response = client.post("/api/v1/scores", data=body, headers=sign_score(body))
    assert response.status_code == 200 and response.json["status"] == "accepted"
    assert client.get("/api/v1/calls/c", headers=auth).json["customer_score"] == 4


def test_wrong_content_type_is_415(client):
    assert client.post("/api/v1/scores", data="x", content_type="text/plain").status_code == 415


@pytest.mark.parametrize("config_overrides", [{"SCORES_WEBHOOK_SECRET": ""}])
def test_api_is_closed_without_a_secret(post_score):
    assert post_score({"call_id": "c", "score": 4}).status_code == 403
