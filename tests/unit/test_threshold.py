from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, strategies as st

from connector.core.policy import (ACCEPTED, DUPLICATE, KEPT, REFUSED, HighScores, Policy, PolicyError, decide,
                                 decide_again, policy_from_config, policy_with_changes, validate_policy,
                                 writes_score)


@st.composite
def policies(draw):
    scale_min = draw(st.integers(0, 20))
    scale_max = draw(st.integers(scale_min + 1, 99))
    threshold = draw(st.integers(scale_min, scale_max + 1))
    return Policy(enabled=draw(st.booleans()), scale_min=scale_min, scale_max=scale_max,
                  max_threshold=threshold, lock_score=draw(st.booleans()),
                  high_scores=draw(st.sampled_from([h.value for h in HighScores])))


@given(policies(), st.data())
def test_a_valid_score_is_recorded_and_tagged_only_below_threshold(policy, data):
    policy = replace(policy, enabled=True)
    score = data.draw(st.integers(policy.scale_min, policy.scale_max))
    d = decide(policy, score)
    assert d.status == ACCEPTED and d.record and d.value == score
    if score < policy.max_threshold:
        assert d.tag == f"Оценка {score}"
    else:
        assert d.tag is None


@given(policies(), st.data())
def test_feature_off_stores_the_score_and_decides_nothing(policy, data):
    policy = replace(policy, enabled=False)
    score = data.draw(st.integers(policy.scale_min, policy.scale_max))
    d = decide(policy, score)
    assert (d.status, d.value, d.record, d.tag, d.tag_to_remove) == (ACCEPTED, score, False, None, None)


@given(policies(), st.integers(-1000, 1000))
def test_out_of_scale_is_refused_and_never_used(policy, score):
    d = decide(policy, score)
    if policy.scale_min <= score <= policy.scale_max:
        assert d.status == ACCEPTED
    else:
        assert d.status == REFUSED and not d.record and d.tag is None and "outside the scale" in d.reason


@given(st.text(max_size=4))
def test_unreadable_keypad_digits_are_refused(digits):
    d = decide(Policy(), digits)
    readable = digits.strip().isascii() and digits.strip().isdigit()
    if readable and 1 <= int(digits.strip()) <= 10:
        assert d.status == ACCEPTED and d.value == int(digits.strip())
    else:
        assert d.status == REFUSED and not d.record and d.tag is None
        assert d.value is None if not readable else "outside the scale" in d.reason


@given(policies(), st.data())
def test_lock_keeps_the_first_score_in_force(policy, data):
    policy = replace(policy, lock_score=True, enabled=True)
    first, second = (data.draw(st.integers(policy.scale_min, policy.scale_max)) for _ in range(2))
    d = decide(policy, second, previous=first)
    if first == second:
        assert d.status == DUPLICATE
    else:
        assert d.status == KEPT and not d.in_force and d.tag is None and str(first) in d.reason


@given(policies(), st.data())
def test_without_lock_the_newest_wins_and_the_old_tag_is_removed(policy, data):
    policy = replace(policy, lock_score=False, enabled=True)
    first = data.draw(st.integers(policy.scale_min, policy.scale_max))
    second = data.draw(st.integers(policy.scale_min, policy.scale_max).filter(lambda s: s != first))
    d = decide(policy, second, previous=first)
    assert d.in_force and d.value == second
    old_tag = policy.tag_for(first)
    expected_removal = old_tag if old_tag and old_tag != d.tag else None
    assert d.tag_to_remove == expected_removal
    if first < policy.max_threshold:
        assert d.tag_to_remove == f"Оценка {first}"


def test_threshold_boundary_default_policy():
    assert decide(Policy(), 8).tag == "Оценка 8"
    assert decide(Policy(), 9).tag is None
    assert decide(Policy(), 10).tag is None
    assert decide(Policy(), 1).tag == "Оценка 1"


def test_rating_window_refuses_late_scores():
    policy = Policy(rating_window_days=2)
    ended = datetime(2026, 11, 1, tzinfo=timezone.utc)
    assert decide(policy, 3, call_ended_at=ended, rated_at=ended + timedelta(days=2)).status == ACCEPTED
    late = decide(policy, 3, call_ended_at=ended, rated_at=ended + timedelta(days=2, seconds=1))
    assert late.status == REFUSED and "2 days" in late.reason
    # no window: any delay is fine
    assert decide(Policy(), 3, call_ended_at=ended, rated_at=ended + timedelta(days=400)).in_force


@given(policies())
def test_generated_policies_validate(policy):
    assert validate_policy(policy) is policy


@pytest.mark.parametrize("changes, field", [
    ({"max_threshold": 12}, "max_threshold"),
    ({"max_threshold": 0}, "max_threshold"),
    ({"scale_min": 5, "scale_max": 5}, "scale_max"),
    ({"scale_min": -1}, "scale_min"),
    ({"scale_max": 100}, "scale_max"),
    ({"tag_template": "low"}, "tag_template"),
    ({"tag_template": "{score} {x}"}, "tag_template"),
    ({"enabled": "yes"}, "enabled"),
    ({"max_threshold": True}, "max_threshold"),
    ({"rating_window_days": -1}, "rating_window_days"),
    ({"high_scores": "skip"}, "high_scores"),
    ({"high_scores": ""}, "high_scores"),
    ({"high_scores": None}, "high_scores"),
    ({"colour": "red"}, "colour"),
])
def test_bad_changes_name_the_field(changes, field):
    with pytest.raises(PolicyError) as err:
        policy_with_changes(Policy(), changes)
    assert err.value.field == field


def test_threshold_may_be_one_above_the_scale_to_tag_every_score():
    policy = policy_with_changes(Policy(), {"max_threshold": 11})
    assert decide(policy, 10).tag == "Оценка 10"


@given(policies(), st.data())
def test_a_recorded_score_at_or_above_the_threshold_carries_the_policys_rule_for_high_scores(policy, data):
    policy = replace(policy, enabled=True)
    score = data.draw(st.integers(policy.scale_min, policy.scale_max))
    for d in (decide(policy, score), decide_again(policy, score)):
        assert d.record and d.at_or_above_threshold == (score >= policy.max_threshold)
        assert d.high_scores == (policy.high_scores if score >= policy.max_threshold else None)


@given(policies(), st.data())
def test_a_score_that_is_not_recorded_carries_no_rule(policy, data):
    score = data.draw(st.integers(policy.scale_min, policy.scale_max))
    off = replace(policy, enabled=False)
    assert decide(off, score).high_scores is None and decide_again(off, score).high_scores is None
    assert decide(policy, policy.scale_max + 1).high_scores is None  # refused
    locked = replace(policy, enabled=True, lock_score=True)
    assert decide(locked, score, previous=score).high_scores is None  # duplicate
    other = policy.scale_min if score != policy.scale_min else policy.scale_max
    assert decide(locked, score, previous=other).high_scores is None  # kept, not in force


@pytest.mark.parametrize("rule, target_default, writes", [
    (None, HighScores.IGNORE, True),  # below the threshold: always written
    (None, HighScores.RECORD, True),
    ("ignore", HighScores.RECORD, False),  # the policy's rule wins over the target's default
    ("record", HighScores.IGNORE, True),
    ("default", HighScores.IGNORE, False),  # else the target's own default
    ("default", HighScores.RECORD, True),
])
def test_a_target_writes_a_high_score_by_the_rule_else_by_its_default(rule, target_default, writes):
    assert writes_score(rule, target_default) is writes


def test_mangos_defaults_score_9_of_threshold_9_untagged_and_left_to_each_target():
    d = decide(Policy(), 9)
    assert (d.tag, d.high_scores, d.at_or_above_threshold) == (None, "default", True)
    assert d.reason == "score 9 is at or above the threshold 9: no tag; each CRM writes it or not by its default"
    ignored = decide(Policy(high_scores="ignore"), 9)
    assert ignored.reason == "score 9 is at or above the threshold 9: no tag, not written into the CRM"
    assert decide(Policy(high_scores="record"), 10).reason == "score 10 is at or above the threshold 9: record only"
    low = decide(Policy(high_scores="ignore"), 8)
    assert (low.tag, low.high_scores, low.at_or_above_threshold) == ("Оценка 8", None, False)


def test_the_rule_for_high_scores_is_seeded_from_qa_high_scores():
    from connector.core.config import Config

    assert policy_from_config(Config.from_env({})).high_scores == "default"
    assert policy_from_config(Config.from_env({"QA_HIGH_SCORES": "record"})).high_scores == "record"
