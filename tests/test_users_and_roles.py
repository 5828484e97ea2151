"""People: users made with the CLI, personal tokens, what each role may see and do, reviews and
notifications."""
import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from commands.cli import cli
from connector.core.models import ApiToken, Score, User
from connector.core.users import add_user, disable_user, issue_token
from tests.conftest import ADMIN_TOKEN, dtmf, summary


def users(*args, stdin: str | None = None, ok: bool = True):
    result = CliRunner().invoke(cli, ["users", *args], input=stdin, catch_exceptions=False)
    assert (result.exit_code == 0) == ok, result.output
    return result.output


PEOPLE = [("ann", "admin", []), ("sam", "supervisor", []), ("olga", "operator", ["101"]),
          ("oleg", "operator", ["102", "103"])]


@pytest.fixture
def cli_env(app, db_url, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("SECRET_KEY", "test-secret-key")


@pytest.fixture
def people(db, monkeypatch):
    """An admin, a supervisor and two operators, each with a personal token (auth headers by name).
    Their passwords are hashed at a low scrypt cost: these tests are about roles, not hashing."""
    monkeypatch.setattr("connector.core.users.PASSWORD_METHOD", "scrypt:1024:8:1")
    tokens = {}
    with db.transaction() as s:
        for name, role, extensions in PEOPLE:
            add_user(s, name, role, "correct horse battery", extensions)
        s.flush()
        tokens = {name: issue_token(s, name) for name, _, _ in PEOPLE}
    return {name: {"Authorization": f"Bearer {token}"} for name, token in tokens.items()}


def disable(db, name):
    with db.transaction() as s:
        disable_user(s, name)


@pytest.fixture
def calls(mango_post):
    """call-1 is olga's (extension 101, score 3), call-2 is oleg's (102, score 9)."""
    for entry_id, extension, digits in [("call-1", "101", "3"), ("call-2", "102", "9")]:
        mango_post("events/summary", summary(entry_id, extension=extension))
        mango_post("events/dtmf", dtmf(entry_id, digits))


def test_users_made_with_the_cli_are_listed_disabled_and_stored_without_secrets(cli_env, client, db):
    assert "no users yet" in users("list")
    tokens = {}
    for name, role, extensions in PEOPLE:
        extension_args = [arg for ext in extensions for arg in ("--extension", ext)]
        assert f"user {name} added" in users("add", name, "--role", role, *extension_args, "--password-stdin",
                                             stdin="correct horse battery\n")
        tokens[name] = users("token", name).splitlines()[0]  # then, on stderr, how long it is valid
    assert client.get("/api/v1/calls", headers={"Authorization": f"Bearer {tokens['olga']}"}).status_code == 200
    listing = users("list")
    assert "olga" in listing and "operator" in listing and "101" in listing and "102,103" in listing
    with db.transaction() as s:
        stored = " ".join(u.password_hash for u in s.scalars(select(User)))
        hashes = list(s.scalars(select(ApiToken.token_hash)))
    assert "correct horse" not in stored and stored.count("scrypt:") == 4
    assert not set(tokens.values()) & set(hashes) and len(hashes) == 4
    assert "disabled" in users("disable", "olga")
    assert "disabled" in users("list").split("olga")[1].splitlines()[0]
    assert client.get("/api/v1/calls", headers={"Authorization": f"Bearer {tokens['olga']}"}).status_code == 401


@pytest.mark.parametrize("args, needle", [
    (["add", "x", "--role", "operator", "--password-stdin"], "needs at least one --extension"),
    (["add", "x y", "--role", "admin", "--password-stdin"], "username"),
    (["add", "short", "--role", "admin", "--password-stdin"], "at least 10 characters"),
    (["disable", "nobody"], "no user nobody"),
    (["token", "nobody"], "no user nobody"),
])
def test_cli_refuses_bad_users_with_one_line(cli_env, people, args, needle):
    stdin = "tiny\n" if "short" in args else "long enough pass\n"
    assert needle in users(*args, stdin=stdin, ok=False)


def test_a_second_user_with_the_same_name_is_refused(cli_env, people):
    assert "already exists" in users("add", "sam", "--role", "admin", "--password-stdin", stdin="long enough pass\n", ok=False)


def test_an_operator_sees_only_their_own_calls(client, people, calls):
    mine = client.get("/api/v1/calls", headers=people["olga"]).json["items"]
    assert [c["call_id"] for c in mine] == ["call-1"]
    assert client.get("/api/v1/calls/call-1", headers=people["olga"]).status_code == 200
    other = client.get("/api/v1/calls/call-2", headers=people["olga"])
    assert other.status_code == 404 and other.json == {"error": "unknown call call-2"}
    # A filter naming another operator finds nothing rather than widening the view.
    assert client.get("/api/v1/calls?operator=102", headers=people["olga"]).json["items"] == []
    assert {c["call_id"] for c in client.get("/api/v1/calls", headers=people["sam"]).json["items"]} == \
        {"call-1", "call-2"}


ANY, NOT_OPERATOR, ADMIN = {"ann", "sam", "olga"}, {"ann", "sam"}, {"ann"}


ROUTES = [
    ("GET", "/api/v1/calls", None, ANY),
    ("GET", "/api/v1/calls/call-1", None, ANY),
    ("GET", "/api/v1/calls/call-1/reviews", None, ANY),
    ("POST", "/api/v1/calls/call-1/reviews", {"score": 5}, NOT_OPERATOR),
    ("GET", "/api/v1/notifications", None, ANY),
    ("POST", "/api/v1/notifications/read", {}, ANY),
    ("GET", "/api/v1/settings", None, NOT_OPERATOR),
    ("PUT", "/api/v1/settings", {"max_threshold": 8}, ADMIN),
    ("GET", "/api/v1/settings/audit", None, ADMIN),
    ("GET", "/api/v1/status", None, NOT_OPERATOR),
]


@pytest.mark.parametrize("who", ["ann", "sam", "olga", "nobody", "disabled"])
def test_permission_matrix(client, db, people, calls, who):
    """Every route for one caller (one set-up per caller, not per cell: the matrix runs on both databases)."""
    if who == "disabled":
        disable(db, "sam")
    headers = {"nobody": {"Authorization": "Bearer not-a-token"}}.get(who) or people["sam" if who == "disabled"
                                                                                    else who]
    for method, path, body, allowed in ROUTES:
        response = client.open(path, method=method, json=body, headers=headers)
        cell = f"{who} {method} {path}"
        if who in ("nobody", "disabled"):
            assert response.status_code == 401 and response.json == {"error": "unknown token"}, cell
        elif who in allowed:
            assert response.status_code in (200, 201), (cell, response.json)
        else:
            role = dict((name, role) for name, role, _ in PEOPLE)[who]
            assert response.status_code == 403 and response.json["error"] == f"{role} may not do this", cell


def test_a_review_is_shown_notifies_the_operator_and_never_touches_the_customer_score(client, people, calls, db):
    response = client.post("/api/v1/calls/call-1/reviews", json={"score": 6, "comment": "Слишком длинное ожидание"},
                           headers=people["sam"])
    assert response.status_code == 201
    call = response.json
    assert call["customer_score"] == 3 and call["supervisor_score"] == 6
    [review] = call["reviews"]
    assert (review["by"], review["score"], review["comment"]) == ("sam", 6, "Слишком длинное ожидание")
    client.post("/api/v1/calls/call-1/reviews", json={"score": 8}, headers=people["ann"])
    call = client.get("/api/v1/calls/call-1", headers=people["olga"]).json
    assert call["supervisor_score"] == 8 and [r["by"] for r in call["reviews"]] == ["sam", "ann"]
    assert call["customer_score"] == 3 and call["decision"]["tag"] == "Оценка 3"

    notes = client.get("/api/v1/notifications", headers=people["olga"]).json
    assert [(n["call_id"], n["kind"], n["read"]) for n in notes["items"]] == [("call-1", "review", False)] * 2
    assert notes["unread"] == 2
    assert client.get("/api/v1/notifications", headers=people["oleg"]).json["items"] == []  # not his call
    first = notes["items"][1]["id"]
    assert client.post("/api/v1/notifications/read", json={"ids": [first]}, headers=people["olga"]).json == \
        {"marked": 1}
    assert client.get("/api/v1/notifications", headers=people["olga"]).json["unread"] == 1
    assert client.post("/api/v1/notifications/read", headers=people["olga"]).json == {"marked": 1}
    # Someone else's ids are not theirs to mark.
    assert client.post("/api/v1/notifications/read", json={"ids": [first]}, headers=people["sam"]).json == \
        {"marked": 0}


def test_supervisors_are_notified_of_new_low_scores_only(client, people, calls):
    items = client.get("/api/v1/notifications", headers=people["sam"]).json["items"]
    assert [(n["call_id"], n["kind"]) for n in items] == [("call-1", "low_score")]  # call-2 scored 9
    assert client.get("/api/v1/notifications", headers=people["olga"]).json["items"] == []


def test_the_api_pages_through_every_notification_and_counts_all_unread(client, people, calls):
    """Past the newest 100 (all the API gave before): 130 reviews of olga's call page 50 at a time, the last
    page's `next` absent, `unread` counting all 130 whatever the page; `unread=true` selects, a bad cursor 400."""
    for n in range(130):
        assert client.post("/api/v1/calls/call-1/reviews", json={"score": 1 + n % 10}, headers=people["sam"]) \
            .status_code == 201
    seen, url = [], "/api/v1/notifications"
    while url:
        page = client.get(url, headers=people["olga"]).json
        assert page["unread"] == 130 and page["total"] == 130 and len(page["items"]) <= 50
        seen += [n["id"] for n in page["items"]]
        url = page["_links"].get("next")
    assert len(seen) == 130 == len(set(seen)) and seen == sorted(seen, reverse=True)
    client.post("/api/v1/notifications/read", json={"ids": seen[:100]}, headers=people["olga"])
    unread = client.get("/api/v1/notifications?unread=true&per_page=500", headers=people["olga"]).json
    assert [n["id"] for n in unread["items"]] == seen[100:] and unread["unread"] == unread["total"] == 30
    assert client.get("/api/v1/notifications?before=x", headers=people["olga"]).status_code == 400
    assert client.get("/api/v1/notifications?per_page=501", headers=people["olga"]).status_code == 400


@pytest.mark.parametrize("body, needle", [
    ({"score": 100}, "score"),  # on no scale
    ({"score": "5"}, "score"),
    ({"score": 5, "extra": 1}, "extra"),
    ({"comment": "no score"}, "score"),
])
def test_a_bad_review_is_refused_and_writes_nothing(client, people, calls, db, body, needle):
    response = client.post("/api/v1/calls/call-1/reviews", json=body, headers=people["sam"])
    assert response.status_code == 422 and needle in response.json["error"]
    with db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(Score).where(Score.source == "supervisor")) == 0


def test_a_review_outside_the_scale_in_force_is_a_409_conflict(client, people, calls, db):
    # 11 is on some scale (0 to 99), not on the 1..10 one in force for the call's line.
    response = client.post("/api/v1/calls/call-1/reviews", json={"score": 11}, headers=people["sam"])
    assert response.status_code == 409 and "outside the scale 1..10" in response.json["error"]
    with db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(Score).where(Score.source == "supervisor")) == 0


def test_the_bootstrap_admin_token_still_works_and_has_no_notifications(client, calls):
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    assert client.post("/api/v1/calls/call-1/reviews", json={"score": 7}, headers=auth).status_code == 201
    assert client.get("/api/v1/notifications", headers=auth).json == {"items": [], "unread": 0, "total": 0, "_links": {}}
    assert client.get("/api/v1/calls/call-1", headers=auth).json["reviews"][0]["by"] == "admin token"


def test_settings_changes_are_audited_under_the_users_name(client, people):
    client.put("/api/v1/settings", json={"max_threshold": 5}, headers=people["ann"])
    [entry] = client.get("/api/v1/settings/audit", headers=people["ann"]).json["items"]
    assert entry["actor"] == "ann"


@pytest.mark.parametrize("config_overrides", [{"QA_LOCK_SCORE": "false"}])
def test_a_call_tells_supervisors_once_while_its_score_stays_low(client, people, mango_post):
    """Without the lock a customer may rate again (on the rating page, say): 3, then 2, then 1 is one low call to
    look at, not three; a score back above the threshold and low again is news again."""
    mango_post("events/summary", summary("call-1", extension="101"))
    for seq, digits in enumerate(["3", "2", "1", "9", "4"]):
        mango_post("events/dtmf", dtmf("call-1", digits, seq=seq + 1, timestamp=1_763_800_100 + seq))
    items = client.get("/api/v1/notifications", headers=people["sam"]).json["items"]
    assert [(n["call_id"], n["kind"]) for n in items] == [("call-1", "low_score")] * 2
