"""The inbox: the webhook stores a callback in one write; the worker applies stored events in batches,
in order, exactly once."""
import pytest
from sqlalchemy import func, select

from connector.core.models import Call, InboundEvent, Score
from connector.core.runtime_settings import current_policy
from tests.conftest import counted_statements, dtmf, recording, summary


def post_only(client, mango_post, kind, payload):
    """What the PBX does: post, with no worker running."""
    return client.post(f"/mango/{kind}", data=mango_post.form(payload))


def pending(db) -> int:
    with db.transaction() as s:
        return s.scalar(select(func.count()).select_from(InboundEvent).where(InboundEvent.applied_at.is_(None)))


def test_a_callback_is_one_insert_and_is_applied_by_the_worker(client, mango_post, db, auth):
    with counted_statements(db) as statements:
        response = post_only(client, mango_post, "events/summary", summary())
    assert response.json == {"success": True}
    # One durable write: BEGIN IMMEDIATE (SQLite) and the INSERT ... ON CONFLICT DO NOTHING RETURNING.
    assert [s for s in statements if s != "BEGIN"] == ["INSERT"]
    assert client.get("/api/v1/calls/call-1", headers=auth).status_code == 404  # stored, not applied yet
    assert pending(db) == 1
    assert mango_post.apply() == 1
    assert client.get("/api/v1/calls/call-1", headers=auth).json["operator"] == "101" and pending(db) == 0


def test_a_duplicate_is_answered_from_the_same_insert(client, mango_post, db):
    post_only(client, mango_post, "events/summary", summary())
    with counted_statements(db) as statements:
        again = post_only(client, mango_post, "events/summary", summary())
    assert again.json == {"success": True, "duplicate": True}
    assert [s for s in statements if s != "BEGIN"] == ["INSERT"] and pending(db) == 1


def test_a_batch_costs_a_few_round_trips_not_a_few_per_event(client, mango_post, db):
    for n in range(40):
        entry = f"call-{n}"
        post_only(client, mango_post, "events/dtmf", dtmf(entry, str(1 + n % 9)))
        post_only(client, mango_post, "events/recording", recording(entry, f"rec-{n}"))
        post_only(client, mango_post, "events/summary", summary(entry))
    with db.transaction() as s:  # the settings as after the first batch ever (which seeds them)
        current_policy(s, client.application.extensions["connector"].ingest.initial_policy)
    with counted_statements(db, verbs=False) as statements:
        assert mango_post.apply() == 120
    # 120 events of 40 calls, 36 of them scored low (1 to 8: a follow-up each). PostgreSQL inserts the new scores,
    # CRM records and follow-ups in one statement each; SQLite, in process (no round trip), one per row, as it
    # cannot match RETURNING rows to a batch.
    new_rows = 0 if db.is_postgres else 2 * 40 + 36
    # Low scores notify the supervisors: they are looked up once per batch, not per score.
    batches = sum(1 for q in statements if "FROM inbound_events" in q and "ORDER BY inbound_events.id" in q)
    assert sum(1 for q in statements if "FROM users" in q) <= batches, [q[:80] for q in statements]
    # The policy in force, with every line's override: one read a batch.
    applying = sum(1 for q in statements if q.startswith("UPDATE inbound_events"))  # the batches that applied any
    assert sum(1 for q in statements if "FROM runtime_settings" in q) == applying, [q[:80] for q in statements]
    follow_ups = 2  # the batch's low scores' follow-ups: one look-up and one insert, whatever their number
    alerts = 1  # the alerts' routes, looked up once for a batch with low scores (none here: nothing more)
    assert len(statements) <= 25 + follow_ups + alerts + batches + new_rows, "\n".join(q[:150] for q in statements)
    with db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(Score)) == 40
        assert s.scalar(select(func.count()).select_from(Call).where(Call.recording_id.is_not(None))) == 40


def test_events_of_a_call_are_applied_in_the_order_they_came(client, mango_post, auth):
    # With the lock on, the first customer score stays in force: order decides.
    post_only(client, mango_post, "events/dtmf", dtmf(digits="2", seq=5))
    post_only(client, mango_post, "events/dtmf", dtmf(digits="9", seq=6))
    post_only(client, mango_post, "events/summary", summary())
    mango_post.apply()
    call = client.get("/api/v1/calls/call-1", headers=auth).json
    assert call["customer_score"] == 2
    assert [(s["value"], s["status"]) for s in call["scores"]] == [(2, "accepted"), (9, "kept")]


def test_a_crash_mid_batch_applies_nothing_and_the_batch_is_applied_once_later(client, mango_post, db,
                                                                            monkeypatch):
    import connector.inbound.inbox as inbox

    post_only(client, mango_post, "events/dtmf", dtmf(digits="3"))
    post_only(client, mango_post, "events/summary", summary())
    real = inbox.apply_messages

    def crash_after_applying(session, ctx, messages):
        real(session, ctx, messages)
        raise RuntimeError("killed mid-batch")

    monkeypatch.setattr(inbox, "apply_messages", crash_after_applying)
    with pytest.raises(RuntimeError):
        mango_post.inbox.run_once()
    monkeypatch.setattr(inbox, "apply_messages", real)
    with db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(Score)) == 0
    assert pending(db) == 2
    assert mango_post.apply() == 2 and mango_post.apply() == 0
    with db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(Score)) == 1


def test_an_event_the_database_refuses_is_set_aside_and_holds_no_one(client, mango_post, db, auth, monkeypatch):
    import connector.inbound.inbox as inbox
    from sqlalchemy.exc import DataError

    post_only(client, mango_post, "events/summary", summary("poison"))
    post_only(client, mango_post, "events/summary", summary("fine"))
    real = inbox.apply_messages

    def refuse_poison(session, ctx, messages):
        if any(m.entry_id == "poison" for m in messages):
            raise DataError("INSERT ...", {}, ValueError("value too long"))
        real(session, ctx, messages)

    monkeypatch.setattr(inbox, "apply_messages", refuse_poison)
    assert mango_post.apply() == 2
    assert client.get("/api/v1/calls/fine", headers=auth).status_code == 200
    with db.transaction() as s:
        poison = s.scalars(select(InboundEvent).where(InboundEvent.entry_id == "poison")).one()
        assert poison.applied_at is not None and "set aside" in poison.error
    assert pending(db) == 0


def test_an_event_no_longer_readable_is_kept_with_its_reason_and_the_rest_is_applied(client, mango_post, db, auth):
    """Verified and valid when it came, unreadable when applied (its source's parser is gone since): it is marked
    applied with the reason a person reads in the inbox, and the batch's other events are applied."""
    post_only(client, mango_post, "events/summary", summary("orphan"))
    post_only(client, mango_post, "events/summary", summary("fine"))
    with db.transaction() as s:
        s.execute(InboundEvent.__table__.update().where(InboundEvent.entry_id == "orphan").values(source="gone"))
    assert mango_post.apply() == 2
    assert client.get("/api/v1/calls/fine", headers=auth).status_code == 200
    assert client.get("/api/v1/calls/orphan", headers=auth).status_code == 404
    with db.transaction() as s:
        orphan = s.scalars(select(InboundEvent).where(InboundEvent.entry_id == "orphan")).one()
        assert orphan.applied_at is not None and orphan.error == "cannot be read: no parser for its source"
    assert pending(db) == 0


def test_with_many_workers_a_call_held_by_one_is_left_alone_by_the_other(db_url, client, mango_post, db):
    """PostgreSQL: two workers claim at once; the second skips the call whose older event the first holds."""
    from connector.inbound import inbox

    if not db.is_postgres:
        pytest.skip("SKIP LOCKED is the PostgreSQL path; SQLite has one writer at a time")
    post_only(client, mango_post, "events/dtmf", dtmf("x", "2", seq=1))
    post_only(client, mango_post, "events/summary", summary("y"))
    post_only(client, mango_post, "events/dtmf", dtmf("x", "9", seq=2))
    with db.transaction() as first:
        held = inbox.claim(first, limit=1, skip_locked=True)
        assert [e.entry_id for e in held] == ["x"]
        with db.transaction() as second:
            taken = inbox.claim(second, limit=10, skip_locked=True)
            assert [e.entry_id for e in taken] == ["y"]  # not x's later event


def test_concurrent_callbacks_share_commits_and_a_duplicate_is_told_apart(db, client, mango_post):
    from concurrent.futures import ThreadPoolExecutor

    forms = [mango_post.form(dtmf(f"g-{n}", "5")) for n in range(60)] + [mango_post.form(dtmf("g-0", "5"))] * 3
    with counted_statements(db) as statements, ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda form: client.application.test_client().post(
            "/mango/events/dtmf", data=form).json, forms))
    assert sum(1 for a in answers if a == {"success": True}) == 60
    assert sum(1 for a in answers if a.get("duplicate")) == 3
    assert statements.count("INSERT") < len(forms)  # several callbacks per commit
    assert pending(db) == 60


def test_a_database_error_reaches_every_waiting_request(app, client, mango_post, monkeypatch):
    from sqlalchemy.exc import OperationalError

    import connector.inbound.inbox as inbox

    def down(*args, **kwargs):
        raise OperationalError("INSERT", {}, ConnectionRefusedError("down"))

    monkeypatch.setattr(inbox, "receive_many", down)
    response = client.post("/mango/events/summary", data=mango_post.form(summary()))
    assert response.status_code == 503 and response.json == {"error": "database unavailable, retry later"}


def test_each_batch_applies_the_policy_in_force_after_every_change(client, mango_post, db, auth):
    """The policy is built once for the same stored values (every batch asks): a change, a change back and a line's
    own threshold are each in force for the next batch."""
    from connector.core.policy import Policy
    from connector.core.runtime_settings import update_line_override, update_policy

    def tag_of(entry: str, score: str, line: str = "74950000000") -> str | None:
        post_only(client, mango_post, "events/summary", summary(entry, line=line))
        post_only(client, mango_post, "events/dtmf", dtmf(entry, score))
        mango_post.apply()
        return client.get(f"/api/v1/calls/{entry}", headers=auth).json["decision"]["tag"]

    initial = Policy()
    assert tag_of("a", "8") == "Оценка 8"  # below the default threshold of 9
    with db.transaction() as s:
        update_policy(s, initial, {"max_threshold": 8}, "admin")
    assert tag_of("b", "8") is None
    with db.transaction() as s:
        update_policy(s, initial, {"max_threshold": 9}, "admin")
    assert tag_of("c", "8") == "Оценка 8"
    with db.transaction() as s:
        update_line_override(s, initial, "74951112233", {"max_threshold": 5}, "admin")
    assert tag_of("d", "8", line="74951112233") is None and tag_of("e", "8") == "Оценка 8"
