"""Who a call's alert goes to, read from the database (issue #20): routes by line and operator group, only
supervisors and admins, and each person's channels (e-mail once they have an address, Telegram once linked;
muted, refused or off passed over)."""
from datetime import datetime, timedelta, timezone

from connector.core.alert_people import call_recipients, people
from connector.core.alerting import Channel, open_channels
from connector.core.models import AlertChannel, AlertRoute, Operator
from connector.core.users import add_user

NOW = datetime(2026, 11, 27, 9, 0, tzinfo=timezone.utc)


def test_a_calls_alert_goes_to_the_supervisors_of_its_line_and_its_operators_group(db):
    with db.transaction() as s:
        sam = add_user(s, "sam", "supervisor", "correct horse battery")
        sue = add_user(s, "sue", "supervisor", "correct horse battery")
        ann = add_user(s, "ann", "admin", "correct horse battery")
        olga = add_user(s, "olga", "operator", "correct horse battery", ["101"])
        gone = add_user(s, "gone", "supervisor", "correct horse battery")
        gone.disabled = True
        s.flush()
        s.add(Operator(extension="101", name="Ольга", groups=["7"]))
        s.add_all([AlertRoute(user_id=sam.id, line_number="74950000001"), AlertRoute(user_id=sue.id, operator_group="7"),
                   AlertRoute(user_id=ann.id), AlertRoute(user_id=olga.id), AlertRoute(user_id=gone.id)])
        ids = {u.username: u.id for u in (sam, sue, ann)}
    with db.reading() as s:
        assert call_recipients(s, "74950000001", "101") == tuple(sorted(ids.values()))
        assert call_recipients(s, "74950000002", "101") == tuple(sorted((ids["sue"], ids["ann"])))
        assert call_recipients(s, "74950000002", "102") == (ids["ann"],)  # an operator the directory does not know
        assert call_recipients(s, None, None) == (ids["ann"],)


def test_a_person_is_reached_on_the_channels_they_set_up_and_left_open(db):
    with db.transaction() as s:
        sam = add_user(s, "sam", "supervisor", "correct horse battery")
        sue = add_user(s, "sue", "supervisor", "correct horse battery")
        sam.email = "sam@example.ru"
        s.flush()
        s.add_all([AlertChannel(user_id=sam.id, channel="telegram", address="123456", enabled=True),
                   AlertChannel(user_id=sue.id, channel="telegram", address="654321", enabled=True,
                                refused="the chat blocked the bot"),
                   AlertChannel(user_id=sue.id, channel="email", enabled=True)])  # no address: nothing to reach
        ids = (sam.id, sue.id)
    with db.reading() as s:
        found = people(s)
    assert open_channels(found[ids[0]], NOW) == (Channel.EMAIL, Channel.TELEGRAM)
    assert open_channels(found[ids[1]], NOW) == ()
    with db.transaction() as s:
        s.get(AlertChannel, (ids[0], "telegram")).muted_until = NOW + timedelta(hours=1)
    with db.reading() as s:
        assert open_channels(people(s)[ids[0]], NOW) == (Channel.EMAIL,)
