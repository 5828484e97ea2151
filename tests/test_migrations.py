"""Alembic: an empty database reaches head, and head goes down to base and back."""
from sqlalchemy import create_engine, inspect

from connector.core.db import downgrade, upgrade
import connector.registry  # noqa: F401  (each kit's own tables join the metadata)
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


def test_0019_moves_each_kits_account_state_into_its_own_table_and_back(db_url):
    """An installed Bitrix24 portal, a connected amoCRM and a blocked MANGO account stay so across the split of
    `crm_accounts` into the shared `accounts` and the kits' own tables, and across its downgrade."""
    from datetime import datetime

    from sqlalchemy import text

    def moment(value):  # SQLite hands raw SQL's datetimes back as text
        return datetime.fromisoformat(value) if isinstance(value, str) else value

    downgrade(db_url, "0018")
    until, saved = datetime(2026, 11, 27, 9, 30), datetime(2026, 11, 26, 8, 0)
    engine = create_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO crm_accounts (crm, paused, next_request_at, blocked_until, probe_until, api_key_enc, "
                "bind_failures, updated_at) VALUES ('mango', false, 1.5, :until, 0, 'sealed-key', 0, :saved)"),
                {"until": until, "saved": saved})
            conn.execute(text(
                "INSERT INTO crm_accounts (crm, paused, next_request_at, probe_until, endpoint_url, member_id, "
                "secret_enc, access_token_enc, bind_failures, bind_error, updated_at) VALUES ('bitrix24', true, 0, 0, "
                "'https://portal.example', 'm-1', 'sealed-app-token', 'sealed-access', 2, 'no answer', :saved)"),
                {"saved": saved})
            conn.execute(text(
                "INSERT INTO crm_accounts (crm, paused, next_request_at, probe_until, connection_enc, "
                "credentials_saved_at, bind_failures, updated_at) VALUES ('amocrm', false, 0, 0, 'sealed-connection', "
                ":saved, 0, :saved)"), {"saved": saved})
        upgrade(db_url)
        with engine.connect() as conn:
            shared = {row.name: row for row in conn.execute(text("SELECT * FROM accounts"))}
            mango = conn.execute(text("SELECT * FROM mango_accounts")).one()
            portal = conn.execute(text("SELECT * FROM bitrix24_portals")).one()
            amocrm = conn.execute(text("SELECT * FROM amocrm_connections")).one()
        assert set(shared) == {"mango", "bitrix24", "amocrm"} and shared["mango"].next_request_at == 1.5
        assert (shared["bitrix24"].endpoint_url, shared["bitrix24"].secret_enc, shared["bitrix24"].paused,
                shared["bitrix24"].access_token_enc) == ("https://portal.example", "sealed-app-token", True,
                                                         "sealed-access")
        assert (mango.account, moment(mango.blocked_until), mango.api_key_enc) == ("mango", until, "sealed-key")
        assert (portal.account, portal.member_id, portal.bind_failures, portal.bind_error) == (
            "bitrix24", "m-1", 2, "no answer")
        assert (amocrm.account, amocrm.connection_enc, moment(amocrm.saved_at)) == ("amocrm", "sealed-connection", saved)

        downgrade(db_url, "0018")
        with engine.connect() as conn:
            rows = {row.crm: row for row in conn.execute(text("SELECT * FROM crm_accounts"))}
        assert (moment(rows["mango"].blocked_until), rows["mango"].api_key_enc) == (until, "sealed-key")
        assert (rows["bitrix24"].member_id, rows["bitrix24"].bind_failures) == ("m-1", 2)
        assert (rows["amocrm"].connection_enc, moment(rows["amocrm"].credentials_saved_at)) == ("sealed-connection", saved)
        upgrade(db_url)
    finally:
        engine.dispose()
