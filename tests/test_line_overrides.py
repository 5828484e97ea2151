"""Per-line settings: a PBX line may switch the feature off or have its own threshold; a call is decided by
its line's policy, even when its score came before the line was known."""
import pytest

from tests.conftest import dtmf, summary

SALES, SUPPORT = "74950000001", "74950000002"


def test_a_score_that_came_before_its_line_is_decided_again_by_that_line(client, auth, mango_post):
    assert client.put(f"/api/v1/settings/lines/{SALES}", json={"max_threshold": 5}, headers=auth).status_code == 200
    mango_post("events/dtmf", dtmf("c1", "6"))  # the line is not known yet: the global threshold 9 tags it
    assert client.get("/api/v1/calls/c1", headers=auth).json["decision"]["tag"] == "Оценка 6"
    mango_post("events/summary", summary("c1", line=SALES))
    call = client.get("/api/v1/calls/c1", headers=auth).json
    assert call["decision"]["tag"] is None and call["decision"]["record"] is True
    assert "threshold 5 of this line" in call["decision"]["reason"]
    assert call["scores"][0]["tag"] is None and call["customer_score"] == 6


def test_a_known_line_decides_at_once_and_other_lines_keep_the_global_policy(client, auth, mango_post):
    client.put(f"/api/v1/settings/lines/{SALES}", json={"max_threshold": 5}, headers=auth)
    for entry_id, line in [("c1", SALES), ("c2", SUPPORT)]:
        mango_post("events/summary", summary(entry_id, line=line))
        mango_post("events/dtmf", dtmf(entry_id, "4"))
        mango_post("events/dtmf", dtmf(entry_id + "x", "6"))
        mango_post("events/summary", summary(entry_id + "x", line=line))
    tags = {c["call_id"]: c["decision"]["tag"] for c in client.get("/api/v1/calls", headers=auth).json["items"]}
    assert tags == {"c1": "Оценка 4", "c1x": None, "c2": "Оценка 4", "c2x": "Оценка 6"}


def test_a_line_with_the_feature_off_stores_its_scores_and_sends_nothing(client, auth, mango_post):
    client.put(f"/api/v1/settings/lines/{SUPPORT}", json={"enabled": False}, headers=auth)
    mango_post("events/dtmf", dtmf("c1", "2"))
    mango_post("events/summary", summary("c1", line=SUPPORT))
    call = client.get("/api/v1/calls/c1", headers=auth).json
    assert call["customer_score"] == 2 and call["decision"] == {
        "record": False, "tag": None, "reason": "feature off on this line: score stored, nothing sent",
        "at_or_above_threshold": False, "high_scores": None}


def test_a_line_overrides_the_rule_for_high_scores_even_when_the_score_came_first(client, auth, mango_post):
    assert client.put(f"/api/v1/settings/lines/{SALES}", json={"high_scores": "record"},
                      headers=auth).json == {"line_number": SALES, "high_scores": "record"}
    mango_post("events/dtmf", dtmf("c1", "9"))  # the line is not known yet: the global rule
    assert client.get("/api/v1/calls/c1", headers=auth).json["decision"]["high_scores"] == "default"
    mango_post("events/summary", summary("c1", line=SALES))
    mango_post("events/summary", summary("c2", line=SUPPORT))
    mango_post("events/dtmf", dtmf("c2", "9"))
    decisions = {c["call_id"]: c["decision"] for c in client.get("/api/v1/calls", headers=auth).json["items"]}
    assert {k: (d["at_or_above_threshold"], d["high_scores"], d["tag"]) for k, d in decisions.items()} == \
        {"c1": (True, "record", None), "c2": (True, "default", None)}
    assert decisions["c1"]["reason"] == "score 9 is at or above the threshold 9 of this line: record only"
    call = client.get("/api/v1/calls/c1", headers=auth).json
    assert call["scores"][0]["reason"] == decisions["c1"]["reason"]


def test_overrides_are_read_changed_removed_and_audited(client, auth):
    assert client.get(f"/api/v1/settings/lines/{SALES}", headers=auth).status_code == 404
    put = client.put(f"/api/v1/settings/lines/{SALES}", json={"enabled": False, "max_threshold": 4}, headers=auth)
    assert put.json == {"line_number": SALES, "enabled": False, "max_threshold": 4}
    assert client.get("/api/v1/settings/lines", headers=auth).json["items"] == [put.json]
    assert client.delete(f"/api/v1/settings/lines/{SALES}", headers=auth).status_code == 204
    assert client.delete(f"/api/v1/settings/lines/{SALES}", headers=auth).status_code == 404
    assert client.get(f"/api/v1/settings/lines/{SALES}", headers=auth).status_code == 404
    audit = client.get("/api/v1/settings/audit", headers=auth).json["items"]
    assert [(a["before"], a["after"]) for a in audit] == [({"enabled": False, "max_threshold": 4}, {}),
                                                         ({}, {"enabled": False, "max_threshold": 4})]


@pytest.mark.parametrize("body, needle", [
    ({"max_threshold": 101}, "max_threshold: must lie within"),
    ({"tag_template": "x {score}"}, "tag_template: a line may override only enabled, max_threshold, high_scores"),
    ({"high_scores": "skip"}, "high_scores: must be one of default, ignore, record"),
    ({"enabled": "yes"}, "enabled: expected bool"),
    ({}, "expected an object"),
    ([1], "expected an object"),
])
def test_a_bad_override_is_refused_and_changes_nothing(client, auth, body, needle):
    response = client.put(f"/api/v1/settings/lines/{SALES}", json=body, headers=auth)
    assert response.status_code == 422 and needle in response.json["error"]
    assert client.get("/api/v1/settings/lines", headers=auth).json["items"] == []
    assert client.get("/api/v1/settings/audit", headers=auth).json["items"] == []


def test_a_threshold_outside_the_scale_in_force_is_a_409_conflict(client, auth):
    # 42 is a threshold some scale allows (0 to 100), just not the 1..10 one in force: the document cannot say
    # which, so it is a conflict with the settings, not a malformed request.
    response = client.put(f"/api/v1/settings/lines/{SALES}", json={"max_threshold": 42}, headers=auth)
    assert response.status_code == 409 and response.json == {"error": "max_threshold: must lie within [1, 11], got 42"}
    assert client.get("/api/v1/settings/lines", headers=auth).json["items"] == []
    assert client.put("/api/v1/settings", json={"scale_max": 50}, headers=auth).status_code == 200
    assert client.put(f"/api/v1/settings/lines/{SALES}", json={"max_threshold": 42}, headers=auth).status_code == 200
