"""What a browser opens carries security headers (no script, no framing, no sniffing, no referrer);
the PBX's callbacks go without them; a login link cannot split a header or leave the site."""
from urllib.parse import quote

import pytest

from connector.core.users import add_user
from tests.conftest import ADMIN_TOKEN, csrf_token, summary

PASSWORD = "correct horse battery"


@pytest.fixture
def sam(db, monkeypatch):
    monkeypatch.setattr("connector.core.users.PASSWORD_METHOD", "scrypt:1024:8:1")
    with db.transaction() as s:
        add_user(s, "sam", "supervisor", PASSWORD, [])


@pytest.mark.parametrize("path", ["/login", "/api/v1/calls", "/healthz", "/api/openapi.json"])
def test_pages_and_the_api_carry_the_security_headers(client, path):
    response = client.get(path, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert response.status_code == 200
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'none'" in policy and "frame-ancestors 'none'" in policy
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"  # a recording link's signature stays here
    assert response.headers["X-Frame-Options"] == "DENY"


def test_the_pbx_callbacks_go_without_them(mango_post):
    response = mango_post("events/summary", summary())
    assert response.status_code == 200 and "Content-Security-Policy" not in response.headers


@pytest.mark.parametrize("target", ["/calls%0d%0aSet-Cookie:%20sid=x", "/calls%0aX: y", "/%5Cevil.example/x",
                                    "/%5C%5Cevil.example", "//evil.example/x"])
def test_a_login_link_cannot_split_the_header_or_leave_the_site(client, sam, target):
    token = csrf_token(client.get("/login"))
    response = client.post(f"/login?next={target}", data={"username": "sam", "password": PASSWORD,
                                                         "csrf_token": token})
    assert response.status_code == 302 and response.headers["Location"] == "/calls"
    assert "Set-Cookie: sid=x" not in str(response.headers)


def test_a_login_link_to_a_page_here_still_works(client, sam):
    token = csrf_token(client.get("/login"))
    target = "/calls?operator=101&line=" + quote("Продажи")
    response = client.post(f"/login?next={quote(target)}", data={"username": "sam", "password": PASSWORD,
                                                                "csrf_token": token})
    assert response.headers["Location"] == target
