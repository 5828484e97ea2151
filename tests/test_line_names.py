"""One rule for a line's name wherever it comes from or is named: the PBX's callbacks, the list and report
filters, the settings API and the console's line form. A line any call carries can be filtered and
configured; a name no call could carry is refused everywhere with the same reason."""
from urllib.parse import quote

import pytest

from connector.core.users import add_user
from tests.conftest import console_login, csrf_token, summary

TOO_LONG = "7" * 33
NAMED = "Продажи 1"


def test_a_named_line_goes_through_every_surface(client, auth, mango_post):
    assert mango_post("events/summary", summary("c1", line=NAMED)).status_code == 200
    listed = client.get(f"/api/v1/calls?line={quote(NAMED)}", headers=auth).json["items"]
    assert [c["call_id"] for c in listed] == ["c1"]
    assert client.get(f"/api/v1/reports/lines?line={quote(NAMED)}", headers=auth).status_code == 200
    assert client.put(f"/api/v1/settings/lines/{quote(NAMED)}", json={"max_threshold": 5},
                      headers=auth).status_code == 200


def test_a_blank_line_from_the_pbx_is_no_line(client, auth, mango_post):
    assert mango_post("events/summary", summary("c1", line="   ")).status_code == 200
    assert client.get("/api/v1/calls/c1", headers=auth).json["line_number"] is None


@pytest.mark.parametrize("line", [TOO_LONG, "   "])
def test_a_name_no_call_could_carry_is_refused_everywhere(client, auth, mango_post, line, db, monkeypatch):
    if line.strip():
        assert mango_post("events/summary", summary("c1", line=line)).status_code == 400
    assert client.get(f"/api/v1/calls?line={quote(line)}", headers=auth).status_code == 400
    assert client.get(f"/api/v1/reports/lines?line={quote(line)}", headers=auth).status_code == 400
    refused = client.put(f"/api/v1/settings/lines/{quote(line)}", json={"max_threshold": 5}, headers=auth)
    assert refused.status_code == 404
    assert "not only spaces" in refused.json["error"] or "at most 32" in refused.json["error"]
    assert client.get("/api/v1/settings/lines", headers=auth).json["items"] == []

    monkeypatch.setattr("connector.core.users.PASSWORD_METHOD", "scrypt:1024:8:1")
    with db.transaction() as s:
        add_user(s, "ann", "admin", "correct horse battery", [])
    console_login(client, "ann", "correct horse battery")
    page = client.get("/settings")
    form = client.post("/settings/lines", data={"line_number": line, "max_threshold": "5", "enabled": "on",
                                                "csrf_token": csrf_token(page)})
    said = form.get_data(as_text=True)  # a blank field is asked for first; any other name, the line rule
    assert form.status_code == 400 and ("от 1 до 32 символов" in said or "Укажите линию" in said)
    assert client.get("/api/v1/settings/lines", headers=auth).json["items"] == []
