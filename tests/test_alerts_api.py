"""The alerts through the token API (admins only): their settings (`/settings/alerts`: a value out of range is
422 naming the field, nothing saved) and who gets which line's alerts (`/alert-routes`: an operator is refused,
the same route twice changes nothing, each change audited)."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from connector.core import alert_people
from connector.core.models import AlertRoute, SettingsAudit
from connector.core.users import add_user, issue_token
from connector.delivery.alerts import settings as alert_settings

LINE = "74950000001"


@pytest.fixture
def people(db, monkeypatch):
    monkeypatch.setattr("connector.core.users.PASSWORD_METHOD", "scrypt:1024:8:1")
    with db.transaction() as s:
        for name, role in (("sam", "supervisor"), ("olga", "operator"), ("gone", "supervisor")):
            add_user(s, name, role, "correct horse battery", ["101"] if role == "operator" else [])
        s.flush()
        from connector.core.users import disable_user
        disable_user(s, "gone")
        return {name: {"Authorization": f"Bearer {issue_token(s, name, days=1)}"} for name in ("sam", "olga")}


def test_an_admin_reads_and_changes_the_settings_audited(client, db, auth, people):
    assert client.get("/api/v1/settings/alerts", headers=auth).json == alert_settings.AlertSettings().as_dict()
    answer = client.patch("/api/v1/settings/alerts", headers=auth,
                          json={"quiet_from_hour": 22, "quiet_until_hour": 8, "cap_per_hour": 5})
    assert answer.status_code == 200
    assert answer.json == {"supervisor_below": 0, "divergence": 0, "quiet_from_hour": 22, "quiet_until_hour": 8,
                           "cap_per_hour": 5}
    assert client.get("/api/v1/settings/alerts", headers=auth).json["cap_per_hour"] == 5
    with db.reading() as s:
        audit = s.scalars(select(SettingsAudit).where(SettingsAudit.scope == alert_settings.SCOPE)).one()
    assert audit.actor == "admin token" and audit.after["quiet_from_hour"] == 22


@pytest.mark.parametrize("body, status, said", [
    ({"cap_per_hour": 101}, 422, "cap_per_hour"),
    ({"divergence": "5"}, 422, "divergence"),
    ({"divergence": True}, 422, "divergence"),
    ({"loudness": 3}, 422, "loudness"),
    ({}, 400, "expected a JSON object"),
    ([1], 400, "expected a JSON object"),
])
def test_a_wrong_setting_is_refused_naming_it_and_nothing_is_saved(client, db, auth, people, body, status, said):
    answer = client.patch("/api/v1/settings/alerts", headers=auth, json=body)
    assert answer.status_code == status and said in answer.json["error"]
    with db.reading() as s:
        assert alert_settings.read(s) == alert_settings.AlertSettings()
        assert s.scalars(select(SettingsAudit).where(SettingsAudit.scope == alert_settings.SCOPE)).all() == []


def test_an_admin_adds_lists_and_removes_routes_audited(client, db, auth, people):
    answer = client.post("/api/v1/alert-routes", headers=auth, json={"username": "sam", "line": LINE})
    assert answer.status_code == 201
    route = answer.json
    assert (route["username"], route["line"], route["group"]) == ("sam", LINE, None)
    again = client.post("/api/v1/alert-routes", headers=auth, json={"username": "sam", "line": LINE, "group": ""})
    assert again.status_code == 200 and again.json == route  # the same route: nothing changes
    every = client.post("/api/v1/alert-routes", headers=auth, json={"username": "sam", "group": "sales-2"})
    assert every.status_code == 201 and every.json["line"] is None
    listed = client.get("/api/v1/alert-routes", headers=auth).json["items"]
    assert [(r["username"], r["line"], r["group"]) for r in listed] == [("sam", None, "sales-2"), ("sam", LINE, None)]

    assert client.delete(f"/api/v1/alert-routes/{route['id']}", headers=auth).status_code == 204
    assert client.delete(f"/api/v1/alert-routes/{route['id']}", headers=auth).status_code == 404
    assert client.delete(f"/api/v1/alert-routes/{2**40}", headers=auth).status_code == 404
    assert [r["id"] for r in client.get("/api/v1/alert-routes", headers=auth).json["items"]] == [every.json["id"]]
    with db.reading() as s:
        audits = s.scalars(select(SettingsAudit).where(SettingsAudit.scope == alert_people.ROUTES_SCOPE)
                           .order_by(SettingsAudit.id)).all()
    assert [(a.before, a.after) for a in audits] == [
        ({}, {"user": "sam", "line": LINE, "group": ""}), ({}, {"user": "sam", "line": "", "group": "sales-2"}),
        ({"user": "sam", "line": LINE, "group": ""}, {})]


@pytest.mark.parametrize("body, status, said", [
    ({"username": "olga"}, 409, "supervisors and admins only"),
    ({"username": "nobody"}, 404, "no such user"),
    ({"username": "gone"}, 404, "no such user"),
    ({"username": "sam", "group": "отдел"}, 422, "group"),
    ({"username": "sam", "line": "7" * 33}, 422, "line"),
    ({"username": "sam", "line": "74\x0195"}, 422, "line"),
    ({"username": "sam", "extra": 1}, 422, "extra"),
    ({"line": LINE}, 422, "username"),
])
def test_a_route_that_cannot_be_is_refused_and_nothing_is_added(client, db, auth, people, body, status, said):
    answer = client.post("/api/v1/alert-routes", headers=auth, json=body)
    assert answer.status_code == status and said in answer.json["error"]
    with db.reading() as s:
        assert s.scalars(select(AlertRoute)).all() == []


@pytest.mark.parametrize("who", ["sam", "olga"])
def test_only_an_admin_may(client, db, people, who):
    headers = people[who]
    assert client.get("/api/v1/settings/alerts", headers=headers).status_code == 403
    assert client.patch("/api/v1/settings/alerts", headers=headers, json={"cap_per_hour": 1}).status_code == 403
    assert client.get("/api/v1/alert-routes", headers=headers).status_code == 403
    assert client.post("/api/v1/alert-routes", headers=headers, json={"username": "sam"}).status_code == 403
    assert client.delete("/api/v1/alert-routes/1", headers=headers).status_code == 403
    assert client.get("/api/v1/alert-routes").status_code == 401
    with db.reading() as s:
        assert s.scalars(select(AlertRoute)).all() == [] and alert_settings.read(s).cap_per_hour == 0


@pytest.mark.parametrize("body", ['{"username": "\\ud800"}', '{"username": "sam", "line": "74\\ud800"}',
                                  '{"username": "sa\\u0000m"}'])
def test_text_no_database_can_store_is_refused_before_it_reaches_one(client, db, auth, people, body):
    answer = client.post("/api/v1/alert-routes", headers=auth, data=body, content_type="application/json")
    assert answer.status_code == 422 and "\n" not in answer.json["error"]
    with db.reading() as s:
        assert s.scalars(select(AlertRoute)).all() == []
