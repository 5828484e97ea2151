"""A cursor is well-formed or it is refused with 400: a forged one whose numbers overflow the database's
integers answered 500 (SQLite: "Python int too large to convert to SQLite INTEGER"). A cursor is
`[score_]microseconds_id`, each part bounded (the OpenAPI document states the pattern), so no cursor that
passes can overflow; a well-formed one past the data is a position, answered with an empty page."""
import base64

import pytest

from connector.core.users import add_user
from tests.conftest import ADMIN_TOKEN, console_login

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def old_style(raw: str) -> str:
    """The cursors of earlier versions: base64 of `moment|id|sort|score`."""
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


CURSORS = [
    ("newest", "1763800000000000_99999999999999999999999"),  # an id past 64 bits
    ("lowest_score", "99999999999999999999999_1763800000000000_1"),  # a score past 32 bits
    ("newest", "9999999999999999999999999_1"),  # a moment past any date
    ("newest", old_style("2026-01-01T00:00:00+00:00|1|newest|")),
]


@pytest.mark.parametrize("sort, cursor", CURSORS)
def test_a_forged_cursor_is_a_400_in_the_api(client, sort, cursor):
    answer = client.get(f"/api/v1/calls?sort={sort}&after={cursor}", headers=AUTH)
    assert answer.status_code == 400 and answer.json == {"error": "after: not a cursor from _links.next"}


@pytest.mark.parametrize("sort, cursor", CURSORS)
def test_a_forged_cursor_is_a_400_in_the_console_and_its_exports(client, db, monkeypatch, sort, cursor):
    monkeypatch.setattr("connector.core.users.PASSWORD_METHOD", "scrypt:1024:8:1")
    with db.transaction() as s:
        add_user(s, "sam", "supervisor", "correct horse battery", [])
    console_login(client, "sam", "correct horse battery")
    for path in ("/calls", "/calls/export.csv", "/calls/export.xlsx"):
        assert client.get(f"{path}?sort={sort}&after={cursor}").status_code == 400, path
