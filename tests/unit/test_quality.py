"""The pure parts of quality-control polling: reading MANGO's answer, the schedule, the mean."""
from datetime import datetime, timedelta, timezone

import pytest

from connector.inbound.mango.api import parse_quality
from connector.inbound.pbx import Mark
from connector.inbound.quality import CUSTOMER_POLL_EVERY, SUPERVISOR_RECHECKS, next_poll_at, rounded_mean

END = datetime(2026, 11, 23, 10, 0, tzinfo=timezone.utc)
WAIT = timedelta(seconds=180)


@pytest.mark.parametrize("raw, customer, unanswered", [
    ("7", "7", False), (7, "7", False), ("10", "10", False), (-1, None, True), ("-1", None, True),
    (None, None, False), ("", None, False), ({"x": 1}, None, False), ("abc", "abc", False),
])
def test_mark_client_is_read_defensively(raw, customer, unanswered):
    report = parse_quality({"mark_client": raw})
    assert (report.customer_raw, report.survey_unanswered) == (customer, unanswered)


def test_mark_controller_as_object_or_one_element_list():
    answer = {"3092": {"mark": "4", "comment": "ok"}, "17": {"mark": 6}, "bad": "x"}
    expected = (Mark("17", 6, None), Mark("3092", 4, "ok"), Mark("bad", None, None))
    assert parse_quality({"mark_controller": answer}).marks == expected
    assert parse_quality({"mark_controller": [answer]}).marks == expected
    assert parse_quality({"mark_controller": "nonsense"}).marks == ()
    assert parse_quality(None).marks == () and parse_quality([]).customer_raw is None


def test_polls_every_20_s_within_the_wait_never_past_it():
    assert next_poll_at(ended_at=END, now=END + timedelta(seconds=10), survey_wait=WAIT, settled=False) == \
        END + timedelta(seconds=10) + CUSTOMER_POLL_EVERY
    assert next_poll_at(ended_at=END, now=END + timedelta(seconds=170), survey_wait=WAIT, settled=False) == END + WAIT


@pytest.mark.parametrize("after, expected", [
    (timedelta(seconds=30), SUPERVISOR_RECHECKS[0]), (timedelta(hours=1), SUPERVISOR_RECHECKS[1]),
    (timedelta(hours=7), SUPERVISOR_RECHECKS[2]), (timedelta(hours=30), SUPERVISOR_RECHECKS[3]),
])
def test_then_rechecks_at_1_6_24_72_hours(after, expected):
    assert next_poll_at(ended_at=END, now=END + after, survey_wait=WAIT, settled=True) == END + expected


def test_nothing_after_the_last_recheck():
    assert next_poll_at(ended_at=END, now=END + timedelta(hours=72), survey_wait=WAIT, settled=True) is None


def test_an_unsettled_survey_past_the_wait_moves_to_the_rechecks():
    assert next_poll_at(ended_at=END, now=END + WAIT, survey_wait=WAIT, settled=False) == END + SUPERVISOR_RECHECKS[0]


@pytest.mark.parametrize("marks, mean", [([4, 5], 5), ([4, 4, 5], 4), ([1, 2], 2), ([7], 7), ([], None),
                                         ([2, 3], 3), ([0, 0, 1], 0)])
def test_rounded_mean_rounds_half_up(marks, mean):
    assert rounded_mean(marks) == mean


def test_text_from_the_pbx_is_made_storable():
    report = parse_quality({"mark_client": "3\ud800", "mark_controller": {
        "1\ud800": {"mark": 2, "comment": "a\x00\udfffb" + "x" * 3000}}})
    assert report.customer_raw == "3?"  # then refused by the policy, with the reason
    [mark] = report.marks
    assert mark.question_id == "1?" and mark.comment.startswith("a?b") and len(mark.comment) == 2000
    mark.comment.encode("utf-8")
