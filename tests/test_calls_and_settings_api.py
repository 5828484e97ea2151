"""Calls list and detail, runtime settings with audit, auth, health."""
import pytest

from tests.conftest import dtmf, summary


@pytest.fixture
def calls(mango_post):
    """Five answered calls; operator 101 or 102, scores 2, 5, 9, 10 and one unrated."""
    rows = [("c1", "101", "2", 0), ("c2", "102", "5", 1), ("c3", "101", "9", 2), ("c4", "102", "10", 3),
            ("c5", "101", None, 4)]
    for entry_id, ext, digits, day in rows:
        start = 1_763_800_000 + day * 86400
        assert mango_post("events/summary", summary(entry_id, extension=ext, start=start)).status_code == 200
        if digits:
            assert mango_post("events/dtmf", dtmf(entry_id, digits)).status_code == 200
    return rows


def ids(response):
    assert response.status_code == 200, response.json
    return sorted(c["call_id"] for c in response.json["items"])


def test_filters(client, auth, calls):
    def get(query):
        return ids(client.get(f"/api/v1/calls?{query}", headers=auth))

    assert get("") == ["c1", "c2", "c3", "c4", "c5"]
    assert get("score_lte=5") == ["c1", "c2"]
    assert get("score_gte=9") == ["c3", "c4"]
    assert get("operator=101") == ["c1", "c3", "c5"]
    assert get("tagged=true") == ["c1", "c2"]
    assert get("tagged=false") == ["c3", "c4", "c5"]
    assert get("line=74950000000&operator=102") == ["c2", "c4"]
    assert get("line=1") == []
    assert get("date_from=2025-11-23T08:00:00Z&date_to=2025-11-25T08:00:00Z") == ["c2", "c3"]
    assert get("crm_status=skipped") == ["c1", "c2", "c3", "c4", "c5"]  # CRM=none
    assert get("crm_status=delivered") == []


def test_pagination_with_totals_and_links(client, auth, calls):
    first = client.get("/api/v1/calls?per_page=2", headers=auth).json
    assert first["_meta"] == {"page": 1, "per_page": 2, "total": 5, "total_capped": False}
    assert [c["call_id"] for c in first["items"]] == ["c5", "c4"]  # newest first
    assert "next" in first["_links"] and "prev" not in first["_links"]
    # _links.next is a keyset cursor: a deep page costs what the first one does.
    assert "after=" in first["_links"]["next"] and "&page=" not in first["_links"]["next"]
    second = client.get(first["_links"]["next"], headers=auth).json
    assert [c["call_id"] for c in second["items"]] == ["c3", "c2"] and second["_meta"]["page"] is None
    last = client.get(second["_links"]["next"], headers=auth).json
    assert [c["call_id"] for c in last["items"]] == ["c1"] and "next" not in last["_links"]
    by_page = client.get("/api/v1/calls?per_page=2&page=2", headers=auth).json
    assert [c["call_id"] for c in by_page["items"]] == ["c3", "c2"] and "prev" in by_page["_links"]
    capped = client.get("/api/v1/calls?per_page=1000", headers=auth).json
    assert capped["_meta"]["per_page"] == 100


def test_cursor_keeps_the_filters_and_refuses_forgeries(client, auth, calls):
    first = client.get("/api/v1/calls?operator=101&per_page=1", headers=auth).json
    pages = [first["items"]]
    link = first["_links"].get("next")
    while link:
        page = client.get(link, headers=auth).json
        pages.append(page["items"])
        link = page["_links"].get("next")
    assert [p[0]["call_id"] for p in pages] == ["c5", "c3", "c1"]
    for forged in ("x", "bm90IGEgY3Vyc29y", "MjAyNi0xMS0yM3w0Mg"):  # garbage, "not a cursor", a naive time
        response = client.get(f"/api/v1/calls?after={forged}", headers=auth)
        assert response.status_code == 400 and response.json["error"].startswith("after")


def walk(client, auth, link):
    """Every call id a list gives, following `_links.next` from `link`."""
    seen = []
    while link:
        page = client.get(link, headers=auth)
        assert page.status_code == 200, page.json
        seen += [c["call_id"] for c in page.json["items"]]
        link = page.json["_links"].get("next")
    return seen


@pytest.mark.parametrize("sort, expected", [
    ("newest", ["c6", "c5", "c4", "c3", "c2", "c1"]),
    ("oldest", ["c1", "c2", "c3", "c4", "c5", "c6"]),
    # Rated calls only; equal scores (c2 and c6 are both 5) follow the time in the same direction.
    ("lowest_score", ["c1", "c2", "c6", "c3", "c4"]),
    ("highest_score", ["c4", "c3", "c6", "c2", "c1"]),
])
def test_every_sort_pages_by_keyset_through_every_call(client, auth, calls, mango_post, sort, expected):
    start = 1_763_800_000 + 5 * 86400
    assert mango_post("events/summary", summary("c6", extension="102", start=start)).status_code == 200
    assert mango_post("events/dtmf", dtmf("c6", "5")).status_code == 200
    for per_page in (1, 2, 100):
        assert walk(client, auth, f"/api/v1/calls?sort={sort}&per_page={per_page}") == expected, per_page
    filtered = walk(client, auth, f"/api/v1/calls?sort={sort}&per_page=1&operator=102")
    assert filtered == [c for c in expected if c in ("c2", "c4", "c6")]
    first = client.get(f"/api/v1/calls?sort={sort}&per_page=1", headers=auth).json
    assert first["_meta"]["total"] == len(expected)


def test_a_cursor_is_a_position_under_any_sort(client, auth, calls):
    # After c2 (score 5, day 1) in the lowest-score order...
    link = client.get("/api/v1/calls?sort=lowest_score&per_page=2", headers=auth).json["_links"]["next"]
    assert walk(client, auth, link) == ["c3", "c4"]
    # ...and the same cursor under another sort: after c2's place in that order.
    assert walk(client, auth, link.replace("sort=lowest_score", "sort=newest")) == ["c1"]
    assert walk(client, auth, link.replace("sort=lowest_score", "sort=oldest")) == ["c3", "c4", "c5"]
    assert walk(client, auth, link.replace("sort=lowest_score", "sort=highest_score")) == ["c1"]
    # After the unrated c5 (the newest call), which the score orders do not list: past their end.
    after_c5 = client.get("/api/v1/calls?per_page=1", headers=auth).json["_links"]["next"]
    for sort in ("lowest_score", "highest_score"):
        page = client.get(f"{after_c5}&sort={sort}", headers=auth)
        assert page.status_code == 200 and page.json["items"] == [] and "next" not in page.json["_links"]
    response = client.get("/api/v1/calls?sort=loudest", headers=auth)
    assert response.status_code == 400 and response.json["error"].startswith("sort")


# `[score_]microseconds_id`: the farthest positions a cursor may name, past the end of each order.
PAST_THE_END = {"newest": "-999999999999999999_0", "oldest": "999999999999999999_999999999999999999",
                "lowest_score": "999999999_0_0", "highest_score": "-999999999_0_0"}


@pytest.mark.parametrize("sort, after", PAST_THE_END.items())
def test_a_cursor_past_the_end_is_an_empty_page_not_an_error(client, auth, calls, sort, after):
    page = client.get(f"/api/v1/calls?sort={sort}&after={after}", headers=auth)
    assert page.status_code == 200, page.json
    assert page.json["items"] == [] and "next" not in page.json["_links"]


def test_a_cursor_before_the_start_lists_everything(client, auth, calls):
    page = client.get("/api/v1/calls?after=999999999999999999_999999999999999999", headers=auth)
    assert [c["call_id"] for c in page.json["items"]] == ["c5", "c4", "c3", "c2", "c1"]


@pytest.mark.parametrize("after", ["x", "1_2_3_4", "1_", "_1", "1.5_2", "1_2_-3", "9999999999_1_1",
                                   "1_9999999999999999999_1", "1_1_9999999999999999999", "%201_1", "1_1%0A"])
def test_a_malformed_or_overflowing_cursor_is_400(client, auth, after):
    response = client.get(f"/api/v1/calls?after={after}", headers=auth)
    assert response.status_code == 400 and response.json == {"error": "after: not a cursor from _links.next"}


def test_counts_stop_at_the_cap(client, auth, calls, monkeypatch):
    from connector.core import calls as calls_module

    monkeypatch.setattr(calls_module, "COUNT_CAP", 3)
    meta = client.get("/api/v1/calls", headers=auth).json["_meta"]
    assert (meta["total"], meta["total_capped"]) == (3, True)
    meta = client.get("/api/v1/calls?operator=102", headers=auth).json["_meta"]
    assert (meta["total"], meta["total_capped"]) == (2, False)


@pytest.mark.parametrize("query, needle", [("score_lte=low", "score_lte"), ("tagged=maybe", "tagged"),
                                           ("crm_status=lost", "crm_status"), ("page=0", "page"),
                                           ("colour=red", "colour")])
def test_bad_filters_are_400_naming_the_parameter(client, auth, query, needle):
    response = client.get(f"/api/v1/calls?{query}", headers=auth)
    assert response.status_code == 400 and response.json["error"].startswith(needle)


def test_call_json_shape(client, auth, calls):
    call = client.get("/api/v1/calls/c1", headers=auth).json
    assert {"call_id", "direction", "operator", "customer_phone", "line_number", "started_at", "ended_at",
            "talk_seconds", "recording_id", "customer_score", "supervisor_score", "decision", "crm"} <= set(call)
    assert call["started_at"] == "2025-11-22T08:26:40Z"
    assert {"status", "entity_type", "entity_id", "attempts", "last_error"} <= set(call["crm"])


def test_unknown_call_is_404(client, auth):
    response = client.get("/api/v1/calls/nope", headers=auth)
    assert response.status_code == 404 and "nope" in response.json["error"]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"}])
def test_api_requires_the_token(client, headers):
    for path in ("/api/v1/calls", "/api/v1/calls/c1", "/api/v1/settings"):
        response = client.get(path, headers=headers)
        assert response.status_code == 401 and response.json["error"]


def test_settings_change_is_validated_applied_and_audited(client, auth, mango_post):
    settings = client.get("/api/v1/settings", headers=auth).json
    assert settings["max_threshold"] == 9 and settings["enabled"] is True

    changed = client.put("/api/v1/settings", json={"max_threshold": 4}, headers=auth)
    assert changed.status_code == 200 and changed.json["max_threshold"] == 4
    mango_post("events/dtmf", dtmf("c7", "5"))
    assert client.get("/api/v1/calls/c7", headers=auth).json["decision"]["tag"] is None

    audit = client.get("/api/v1/settings/audit", headers=auth).json["items"]
    assert len(audit) == 1 and audit[0]["actor"] == "admin token"
    assert (audit[0]["before"]["max_threshold"], audit[0]["after"]["max_threshold"]) == (9, 4)


@pytest.mark.parametrize("body, status, needle", [
    ({"max_threshold": 20}, 409, "max_threshold: must lie within [1, 11]"),  # valid, but not on this scale
    ({"max_threshold": 101}, 422, "max_threshold"),  # on no scale
    ({"scale_min": 10}, 409, "scale_max: the scale must satisfy"),  # not below the scale_max in force
    ({"scale_min": 99}, 422, "scale_min"),
    ({"tag_template": "x" * 249 + "{score}"}, 422, "tag_template: at most 255 characters"),
    ({"scale_max": "ten"}, 422, "scale_max"),
    ({"unknown": 1}, 422, "unknown"),
    ([1, 2], 400, "object"),
    ({"high_scores": "skip", "max_threshold": 5}, 422, "high_scores: must be one of default, ignore, record"),
    ({"high_scores": True}, 422, "high_scores: expected str"),
    ({"bitrix24_user_map": {"101": 7}, "high_scores": "skip"}, 422, "high_scores"),  # the good map is not kept
])
def test_bad_settings_are_refused_and_not_audited(client, auth, body, status, needle):
    response = client.put("/api/v1/settings", json=body, headers=auth)
    assert response.status_code == status and needle in response.json["error"]
    settings = client.get("/api/v1/settings", headers=auth).json
    assert (settings["max_threshold"], settings["high_scores"], settings["bitrix24_user_map"]) == (9, "default", {})
    assert client.get("/api/v1/settings/audit", headers=auth).json["items"] == []


def test_the_rule_for_high_scores_is_set_audited_and_decides_the_next_scores(client, auth, mango_post):
    assert client.get("/api/v1/settings", headers=auth).json["high_scores"] == "default"
    changed = client.put("/api/v1/settings", json={"high_scores": "ignore"}, headers=auth)
    assert changed.status_code == 200 and changed.json["high_scores"] == "ignore"
    [row] = client.get("/api/v1/settings/audit", headers=auth).json["items"]
    assert (row["before"]["high_scores"], row["after"]["high_scores"]) == ("default", "ignore")
    mango_post("events/dtmf", dtmf("c9", "10"))
    decision = client.get("/api/v1/calls/c9", headers=auth).json["decision"]
    assert (decision["record"], decision["tag"], decision["at_or_above_threshold"], decision["high_scores"]) == \
        (True, None, True, "ignore")
    assert decision["reason"] == "score 10 is at or above the threshold 9: no tag, not written into the CRM"


def test_feature_toggle_through_settings(client, auth, mango_post):
    client.put("/api/v1/settings", json={"enabled": False}, headers=auth)
    mango_post("events/dtmf", dtmf("c8", "1"))
    call = client.get("/api/v1/calls/c8", headers=auth).json
    assert call["customer_score"] == 1 and call["decision"]["tag"] is None


def test_healthz(client):
    assert client.get("/healthz").json == {"status": "ok", "components": {
        "database": "ok", "inbox": "ok", "pbx": "ok", "crm": "none"}}


def test_status_needs_a_token_and_gives_the_details(client, auth, mango_post):
    assert client.get("/api/v1/status").status_code == 401
    body = client.get("/api/v1/status", headers=auth).json
    assert body["status"] == "ok" and body["details"]["inbox"] == {
        "state": "ok", "pending": 0, "oldest_pending_seconds": None}


def test_a_lagging_inbox_makes_the_connector_degraded(client, auth, mango_post, db):
    from datetime import datetime, timedelta, timezone

    from sqlalchemy import update

    from connector.core.models import InboundEvent

    client.post("/mango/events/summary", data=mango_post.form(summary()))  # stored; no worker runs
    assert client.get("/healthz").json["components"]["inbox"] == "ok"
    with db.transaction() as s:
        s.execute(update(InboundEvent).values(received_at=datetime.now(timezone.utc) - timedelta(minutes=2)))
    assert client.get("/healthz").json == {"status": "degraded", "components": {
        "database": "ok", "inbox": "lagging", "pbx": "ok", "crm": "none"}}
    details = client.get("/api/v1/status", headers=auth).json["details"]["inbox"]
    assert details["pending"] == 1 and details["oldest_pending_seconds"] >= 120


def test_healthz_is_503_without_text_when_the_database_is_down(app, client, monkeypatch):
    from sqlalchemy.exc import OperationalError

    def down(*args, **kwargs):
        raise OperationalError("connect", {}, ConnectionRefusedError("could not connect to 10.0.0.5:5432"))

    for kind in ("transaction", "reading"):  # healthz only reads
        monkeypatch.setattr(app.extensions["connector"].db, kind, down)
    response = client.get("/healthz")
    assert response.status_code == 503 and response.json == {"error": "database unavailable"}


def test_metrics_count_callbacks_and_show_the_queues(client, mango_post):
    def sample(text: str, name: str) -> float:
        from prometheus_client.parser import text_string_to_metric_families

        return sum(s.value for family in text_string_to_metric_families(text) for s in family.samples
                   if s.name == name.split("{")[0] and all(f'{k}="{v}"' in name for k, v in s.labels.items()))

    before = client.get("/metrics").get_data(as_text=True)
    client.post("/mango/events/summary", data=mango_post.form(summary("m-1")))
    client.post("/mango/events/summary", data=mango_post.form(summary("m-1")))
    client.post("/mango/events/summary", data={**mango_post.form(summary("m-2")), "sign": "0" * 64})
    response = client.get("/metrics")
    assert response.status_code == 200 and response.mimetype == "text/plain"
    after = response.get_data(as_text=True)
    for name, grew in (('connector_callbacks_total{endpoint="mango",outcome="accepted"}', 1),
                       ('connector_callbacks_total{endpoint="mango",outcome="duplicate"}', 1),
                       ('connector_callbacks_total{endpoint="mango",outcome="rejected_403"}', 1)):
        assert sample(after, name) - sample(before, name) == grew, name
    assert "connector_inbox_pending 1.0" in after
    assert "79001234567" not in after  # no personal data in labels
