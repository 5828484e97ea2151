"""Alembic: an empty database reaches head, and head goes down to base and back."""
from sqlalchemy import create_engine, inspect

from connector.core.db import downgrade, upgrade
from connector.core.models import Base


def tables(url):
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_empty_database_upgrades_to_head_matching_the_models(tmp_path):
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    upgrade(url)
    assert tables(url) == set(Base.metadata.tables)


def test_downgrade_to_base_and_back(db_url):
    downgrade(db_url, "base")
    assert tables(db_url) == set()
    upgrade(db_url)
    assert tables(db_url) == set(Base.metadata.tables)


def test_migrations_match_the_models(db_url):
    """Autogenerate finds nothing to add: the models and migrations agree."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()
    assert diff == []


def test_0010_marks_recorded_untagged_scores_as_recorded_high_scores(db_url):
    """Before the rule for high scores existed, a score at or above the threshold was written as text:
    its decision says `record`, so a pending delivery writes it as it would have been."""
    from datetime import datetime, timezone

    from sqlalchemy import select

    from connector.core.models import Call, Score

    downgrade(db_url, "0009")
    now = datetime.now(timezone.utc)
    engine = create_engine(db_url)
    try:
        with engine.begin() as conn:
            for entry_id, value, tag in [("high", 9, None), ("low", 3, "Оценка 3")]:
                call_id = conn.execute(Call.__table__.insert().values(
                    entry_id=entry_id, customer_score=value, decision_record=True, decision_tag=tag,
                    first_seen_at=now, listed_at=now, updated_at=now)).inserted_primary_key[0]
                conn.execute(Score.__table__.insert().values(
                    call_id=call_id, source="customer", origin="api", raw=str(value), value=value,
                    status="accepted", reason="-", record=True, tag=tag, rated_at=now, received_at=now))
        upgrade(db_url)
        with engine.connect() as conn:
            calls = dict(conn.execute(select(Call.entry_id, Call.decision_high_scores)).all())
            scores = dict(conn.execute(select(Score.value, Score.high_scores)).all())
    finally:
        engine.dispose()
    assert calls == {"high": "record", "low": None} and scores == {9: "record", 3: None}
