"""The alerts' rules (issue #20): what calls for a person, who hears of it, by which channel, and when."""
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from connector.core.alerting import (Channel, ChannelState, Person, QuietHours, Route, Thresholds, Trigger,
                                     held_by_cap, open_channels, recipients, triggers)

MOSCOW = ZoneInfo("Europe/Moscow")
NOW = datetime(2026, 11, 27, 9, 0, tzinfo=timezone.utc)  # 12:00 in Moscow


def test_a_tagged_score_a_low_supervisor_score_and_a_divergence_each_call_for_a_person():
    both = Thresholds(supervisor_below=6, divergence=5)
    assert triggers(customer_tagged=True, customer_score=2, supervisor_score=8, thresholds=both) == (
        Trigger.LOW_SCORE, Trigger.DIVERGENCE)
    assert triggers(customer_tagged=False, customer_score=10, supervisor_score=4, thresholds=both) == (
        Trigger.SUPERVISOR_LOW, Trigger.DIVERGENCE)
    assert triggers(customer_tagged=False, customer_score=9, supervisor_score=8, thresholds=both) == ()
    assert triggers(customer_tagged=False, customer_score=None, supervisor_score=3, thresholds=Thresholds()) == ()


def test_routes_pick_the_supervisors_of_the_line_and_group_and_never_an_operator():
    people = {1: Person(1, "supervisor"), 2: Person(2, "supervisor"), 3: Person(3, "admin"), 4: Person(4, "operator")}
    routes = [Route(1, line="74950000001"), Route(2, group="sales"), Route(3), Route(4)]
    assert recipients(routes, people, "74950000001", ("support",)) == (1, 3)
    assert recipients(routes, people, "74950000002", ("sales",)) == (2, 3)
    assert recipients(routes, people, None, ()) == (3,)
    assert recipients([Route(9)], people, None, ()) == ()  # a route of a user since deleted


def test_a_muted_or_refused_channel_is_passed_over_until_it_opens_again():
    person = Person(1, "supervisor", {Channel.EMAIL: ChannelState(),
                                      Channel.TELEGRAM: ChannelState(muted_until=NOW + timedelta(hours=1))})
    assert open_channels(person, NOW) == (Channel.EMAIL,)
    assert open_channels(person, NOW + timedelta(hours=1)) == (Channel.EMAIL, Channel.TELEGRAM)
    blocked = Person(1, "supervisor", {Channel.TELEGRAM: ChannelState(refused="the chat blocked the bot")})
    assert open_channels(blocked, NOW) == ()


def test_quiet_hours_over_midnight_hold_alerts_until_the_morning_in_the_account_zone():
    night = QuietHours(22, 8)
    late = datetime(2026, 11, 27, 20, 30, tzinfo=timezone.utc)  # 23:30 in Moscow
    assert night.holds(late, MOSCOW) and not night.holds(NOW, MOSCOW)
    assert night.ends(late, MOSCOW) == datetime(2026, 11, 28, 8, 0, tzinfo=MOSCOW)
    early = datetime(2026, 11, 27, 2, 0, tzinfo=timezone.utc)  # 05:00 in Moscow
    assert night.ends(early, MOSCOW) == datetime(2026, 11, 27, 8, 0, tzinfo=MOSCOW)
    assert QuietHours(13, 14).holds(datetime(2026, 11, 27, 10, 15, tzinfo=timezone.utc), MOSCOW)
    assert not QuietHours().holds(late, MOSCOW) and QuietHours().ends(late, MOSCOW) == late


def test_the_hourly_cap_sends_the_rest_to_the_digest():
    assert not held_by_cap(4, 5) and held_by_cap(5, 5) and not held_by_cap(500, 0)
