"""The rating link's pure rules: who qualifies, when a request may go, the token, the page's scale, and the
settings' checks (the SMS length limit of MANGO's command: 268 Cyrillic / 612 Latin characters)."""
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from connector.core.models import RequestReason
from connector.core.policy import Policy, PolicyError
from connector.inbound.link.rules import (CallFacts, answers, expires_at, failure_reason, mobile_number, qualifies,
                                          score_of, send_time, token_for, token_hash)
from connector.inbound.link.settings import LinkSettings, RatingScale, sms_length_problem, validate, with_changes

MOSCOW = ZoneInfo("Europe/Moscow")
ENDED = datetime(2026, 11, 27, 10, 0, tzinfo=timezone.utc)


def call(**changes) -> CallFacts:
    facts = dict(direction="inbound", talk_seconds=95, customer_phone="79161234567", survey="no_answer",
                 customer_score=None, ended_at=ENDED)
    return CallFacts(**{**facts, **changes})


@pytest.mark.parametrize("phone, mobile", [("79161234567", "79161234567"), ("+7 (916) 123-45-67", "79161234567"),
                                           ("89161234567", "79161234567"), ("74951234567", None),
                                           ("9161234567", None), ("380501234567", None), (None, None), ("", None)])
def test_only_russian_mobile_numbers_get_an_sms(phone, mobile):
    assert mobile_number(phone) == mobile


def test_an_answered_external_call_without_a_score_qualifies_and_the_others_do_not():
    settings = LinkSettings(enabled=True)
    assert qualifies(call(), settings) and qualifies(call(survey=None), settings)
    assert qualifies(call(survey="not_offered", direction="outbound"), settings)
    for changes in ({"direction": "internal"}, {"talk_seconds": 0}, {"talk_seconds": None}, {"ended_at": None},
                    {"customer_phone": "74951234567"}, {"customer_score": 7}, {"survey": "answered"}):
        assert not qualifies(call(**changes), settings), changes


def test_a_second_opinion_also_asks_the_customers_who_rated():
    assert qualifies(call(customer_score=7, survey="answered"), LinkSettings(enabled=True, also_scored=True))


def test_a_request_due_at_night_waits_for_the_morning_in_the_account_zone():
    settings = LinkSettings(send_from_hour=9, send_until_hour=21)
    day = datetime(2026, 11, 27, 12, 0, tzinfo=MOSCOW)
    assert send_time(day, MOSCOW, settings) == day
    assert send_time(datetime(2026, 11, 27, 7, 30, tzinfo=MOSCOW), MOSCOW, settings) == datetime(2026, 11, 27, 9, 0,
                                                                                                  tzinfo=MOSCOW)
    assert send_time(datetime(2026, 11, 27, 21, 0, tzinfo=MOSCOW), MOSCOW, settings) == datetime(2026, 11, 28, 9, 0,
                                                                                                  tzinfo=MOSCOW)
    assert send_time(datetime(2026, 11, 27, 23, 59, tzinfo=MOSCOW), MOSCOW, LinkSettings(send_until_hour=24)) == \
        datetime(2026, 11, 27, 23, 59, tzinfo=MOSCOW)


def test_the_link_expires_with_its_days_and_never_after_the_rating_window():
    sent = ENDED + timedelta(hours=2)
    assert expires_at(sent, ENDED, LinkSettings(valid_days=7), Policy()) == sent + timedelta(days=7)
    assert expires_at(sent, ENDED, LinkSettings(valid_days=7), Policy(rating_window_days=3)) == ENDED + timedelta(days=3)


def test_the_token_is_short_unguessable_stable_and_stored_only_as_a_hash():
    token = token_for("secret", 41)
    assert len(token) == 22 and token == token_for("secret", 41)  # a resend carries the same link
    assert token != token_for("secret", 42) and token != token_for("other secret", 41)
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert token_hash(token) != token and len(token_hash(token)) == 64


def test_the_pages_answers_map_onto_the_connectors_scale():
    ten = Policy()
    assert [score_of(RatingScale.GOOD_BAD, a, ten) for a in answers(RatingScale.GOOD_BAD, ten)] == [1, 10]
    assert [score_of(RatingScale.FIVE, a, ten) for a in answers(RatingScale.FIVE, ten)] == [1, 3, 6, 8, 10]
    assert [score_of(RatingScale.FIVE, a, Policy(scale_min=1, scale_max=5, max_threshold=4))
            for a in range(1, 6)] == [1, 2, 3, 4, 5]
    assert answers(RatingScale.SURVEY, ten) == tuple(range(1, 11)) and score_of(RatingScale.SURVEY, 4, ten) == 4
    for scale, answer in ((RatingScale.GOOD_BAD, 2), (RatingScale.FIVE, 0), (RatingScale.SURVEY, 11)):
        with pytest.raises(ValueError):
            score_of(scale, answer, ten)


def test_the_pbx_codes_become_reasons_a_person_reads():
    assert failure_reason(2001) == RequestReason.BILLING and failure_reason(3100) == RequestReason.REFUSED
    assert failure_reason(4300) == RequestReason.NOT_SENT
    assert failure_reason(4300, carrier=True) == failure_reason(4301, carrier=True) == RequestReason.NOT_DELIVERED
    assert failure_reason(4392, carrier=True) == RequestReason.CARRIER_REFUSED
    assert failure_reason(5001) == RequestReason.PBX_ERROR


BASE = "https://qa.example.ru"


def test_a_template_is_checked_against_the_sms_limit_with_the_link_and_the_longest_name():
    assert sms_length_problem(LinkSettings().template, BASE) is None
    cyrillic = "Я" * (268 - len(BASE) - 3 - 22) + "{link}"
    assert sms_length_problem(cyrillic, BASE) is None
    assert "269" in sms_length_problem("Я" + cyrillic, BASE)
    latin = "a" * (612 - len(BASE) - 3 - 22) + "{link}"
    assert sms_length_problem(latin, BASE) is None and sms_length_problem("a" + latin, BASE)
    assert sms_length_problem("Оцените нас", BASE) == "the text must contain {link}"
    assert "placeholders" in sms_length_problem("{link} {name}", BASE)


@pytest.mark.parametrize("changes, field", [
    ({"delay_minutes": -1}, "delay_minutes"), ({"send_from_hour": 21, "send_until_hour": 9}, "send_until_hour"),
    ({"daily_cap": 0}, "daily_cap"), ({"scale": "stars"}, "scale"), ({"from_extension": "10a"}, "from_extension"),
    ({"sms_sender": "Очень длинное имя"}, "sms_sender"), ({"enabled": "yes"}, "enabled"),
    ({"lines": {"74951234567": {"enabled": "no"}}}, "lines"), ({"lines": {"line one": {"enabled": True}}}, "lines"),
    ({"company": "a\x00b"}, "company"), ({"template": "{link}" + "Я" * 300}, "template")])
def test_bad_settings_are_refused_naming_the_field(changes, field):
    with pytest.raises(PolicyError) as err:
        validate(with_changes(LinkSettings(), changes), BASE)
    assert err.value.field == field


def test_a_line_may_turn_the_channel_off_alone():
    settings = validate(LinkSettings(enabled=True, lines={"74951234567": {"enabled": False}}), BASE)
    assert settings.for_line("74951234567").enabled is False and settings.for_line("74950000000").enabled is True
