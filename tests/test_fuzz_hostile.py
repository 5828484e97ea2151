"""Malformed, forged and hostile requests on every inbound surface: never a 5xx, and a refused request
writes nothing. Derandomised in CI (the `ci` hypothesis profile); about 5,000 requests per database,
over 10,000 per run with PostgreSQL.

Drawing an example costs more than sending it, so an example whose request can reach the database is drawn
once and sent to every database (`every_database`), not drawn again per database. Forged callbacks and raw bytes
are refused before anything of theirs reaches the database (a signature or content type check; the only read is
of the pair in force, the same for every example), so they run on SQLite alone."""
import json

import pytest

from hypothesis import HealthCheck, given, settings, strategies as st
from sqlalchemy import func, select

from connector.core.models import Call, InboundEvent, Score, SettingsAudit
from connector.inbound.mango import callbacks as mango
from tests.conftest import ADMIN_TOKEN, MANGO_KEY, MANGO_SALT, sign_score

scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=False),
                    st.text(max_size=40), st.sampled_from(["\ud800", "\x00", "{score[0]}", "0001-01-01T00:00:00+01:00",
                                                           "9999-12-31T23:59:59-01:00", "1e3", "7", "-1"]))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                      max_leaves=8)
documents = st.dictionaries(st.sampled_from(["entry_id", "call_id", "seq", "call_direction", "from", "to",
                                             "talk_time", "end_time", "recording_id", "recording_state", "dtmf",
                                             "location", "timestamp", "call_state", "recipient"]), values, max_size=8)
kinds = st.sampled_from(["events/call", "events/summary", "events/recording", "events/record/added", "events/dtmf"])


COUNTS = select(*(select(func.count()).select_from(m).scalar_subquery()
                  for m in (InboundEvent, Call, Score, SettingsAudit)))


def rows(db) -> tuple:
    """Every table a request could write to, counted in one statement."""
    with db.reading() as session:
        return tuple(session.execute(COUNTS).one())


def fuzz(examples: int):
    return settings(max_examples=examples, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


class Known:
    """The counts of `rows` each database had after its last request, for a refused request to leave as they were.
    Counted once, then again only after a request that was let in (it may have written), instead of before
    every request: nothing else writes to a test's databases while it runs."""

    def __init__(self):
        self.counts = {}

    def __call__(self, db) -> tuple:
        if id(db) not in self.counts:
            self.counts[id(db)] = rows(db)
        return self.counts[id(db)]

    def let_in(self, db) -> None:
        self.counts.pop(id(db), None)


@pytest.fixture
def counts():
    return Known()


def refused_cleanly(response, db, before, where: str = "sqlite", counts: Known | None = None) -> None:
    assert response.status_code < 500, (where, response.status_code, response.get_data(as_text=True)[:300])
    if response.status_code >= 400:
        assert set(response.json) == {"error"} and "\n" not in response.json["error"], where
        assert rows(db) == before, where
    elif counts is not None:
        counts.let_in(db)


# Refused before the example reaches the database: one database is enough (see the module's docstring).
SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@SQLITE_ONLY
@fuzz(1200)
@given(kind=kinds, document=documents, key=st.sampled_from([MANGO_KEY, "other-key", ""]),
       sign=st.one_of(st.just(None), st.text(max_size=70)))
def test_forged_callbacks(client, db, counts, kind, document, key, sign):
    form = mango.signed_form(key or "x", MANGO_SALT + "wrong", json.dumps(document))
    form["vpbx_api_key"] = key
    if sign is not None:
        form["sign"] = sign
    before = counts(db)
    response = client.post(f"/mango/{kind}", data=form)
    assert response.status_code in (400, 403), response.get_data(as_text=True)[:300]
    refused_cleanly(response, db, before, counts=counts)


@fuzz(1500)
@given(kind=kinds, document=documents)
def test_signed_malformed_callbacks(every_database, counts, kind, document):
    form = mango.signed_form(MANGO_KEY, MANGO_SALT, json.dumps(document))
    for target in every_database:
        before = counts(target.db)
        response = target.client.post(f"/mango/{kind}", data=form)
        refused_cleanly(response, target.db, before, target.name, counts)


@SQLITE_ONLY
@fuzz(600)
@given(body=st.binary(max_size=300), content_type=st.sampled_from(
    ["application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/json", "text/plain", ""]),
       path=st.sampled_from(["/mango/events/summary", "/mango/ping", "/api/v1/scores", "/api/v1/settings"]))
def test_raw_bytes_on_every_intake(client, db, counts, body, content_type, path):
    before = counts(db)
    method = client.put if path == "/api/v1/settings" else client.post
    response = method(path, data=body, headers={"Content-Type": content_type} if content_type else {})
    refused_cleanly(response, db, before, counts=counts)


@fuzz(900)
@given(payload=st.dictionaries(st.sampled_from(["call_id", "score", "source", "rated_at", "comment", "operator",
                                                "phone"]), values, max_size=7),
       forge=st.sampled_from(["none", "headers", "signature", "stale"]))
def test_score_api(every_database, counts, payload, forge):
    body = json.dumps(payload)
    for target in every_database:
        headers = sign_score(body, timestamp=0 if forge == "stale" else None)  # a message id of its own
        if forge == "headers":
            headers = {"Content-Type": "application/json"}
        elif forge == "signature":
            headers["webhook-signature"] = "v1,AAAA"
        before = counts(target.db)
        response = target.client.post("/api/v1/scores", data=body, headers=headers)
        if forge != "none":
            assert response.status_code in (400, 401, 403), (target.name, response.get_data(as_text=True)[:300])
        refused_cleanly(response, target.db, before, target.name, counts)


@pytest.fixture
def no_token_throttle(monkeypatch):
    """Hundreds of wrong tokens from one address would be throttled (tests/test_sessions_and_logins.py): here
    every one must reach the validation being fuzzed."""
    from connector.core import throttle

    monkeypatch.setitem(throttle.RULES, "token", throttle.Rule(free=10**9, cap=0, lock_at=10**9, lock_seconds=0))


@fuzz(500)
@given(changes=st.dictionaries(st.sampled_from(["enabled", "scale_min", "scale_max", "max_threshold", "tag_template",
                                                "score_text_template", "rating_window_days", "lock_score",
                                                "amocrm_user_map", "other"]), values, min_size=1, max_size=4),
       token=st.sampled_from([ADMIN_TOKEN, "wrong", ""]))
def test_settings(every_database, counts, changes, token, no_token_throttle):
    for target in every_database:
        before = counts(target.db)
        response = target.client.put("/api/v1/settings", data=json.dumps(changes),
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        if token != ADMIN_TOKEN:
            assert response.status_code == 401, target.name
        refused_cleanly(response, target.db, before, target.name, counts)


@fuzz(400)
@given(query=st.dictionaries(st.sampled_from(["score_lte", "score_gte", "operator", "line", "date_from", "date_to",
                                              "tagged", "crm_status", "page", "per_page", "after", "x"]),
                             st.text(max_size=30), max_size=5),
       call_id=st.text(min_size=1, max_size=40), exp=st.text(max_size=12), sig=st.text(max_size=70))
def test_lists_and_recording_links(every_database, counts, query, call_id, exp, sig):
    for target in every_database:
        client, db = target.client, target.db
        before = counts(db)
        listed = client.get("/api/v1/calls", query_string=query, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        refused_cleanly(listed, db, before, target.name, counts)
        played = client.get("/recordings/x", query_string={"exp": exp, "sig": sig})
        assert played.status_code == 403, target.name
        one = client.get("/api/v1/calls/" + call_id.replace("/", "_"),
                         headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert one.status_code in (200, 400, 404, 405), target.name
