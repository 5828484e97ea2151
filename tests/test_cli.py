"""The operator's CLI: deliveries list, replay with progress, resume."""
import pytest
from click.testing import CliRunner

from commands.cli import cli
from connector.core.accounts import pause, pause_state
from tests.conftest import dtmf, summary
from tests.delivery_helpers import connector_with_fake_amo


@pytest.fixture
def dead_delivery(db_url, monkeypatch):
    with connector_with_fake_amo(db_url) as h:
        h.fake.add_contact("79001234567")
        h.post("events/summary", summary())
        h.post("events/dtmf", dtmf(digits="3"))
        h.fake.inject(400, path="/api/v4/calls")
        h.drain()
        for key, value in {"DATABASE_URL": db_url, "CRM": "amocrm", "AMOCRM_BASE_URL": h.amo_url,
                           "AMOCRM_LONG_LIVED_TOKEN": "x", "SECRET_KEY": "test-secret-key"}.items():
            monkeypatch.setenv(key, value)
        yield h


def run(*args):
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_list_shows_dead_jobs_with_the_error(dead_delivery):
    output = run("deliveries", "list", "--status", "dead")
    assert "dead" in output and "call-1:log_call" in output and "400" in output
    assert "no delivery jobs with status pending" in run("deliveries", "list", "--status", "pending")


def test_replay_requeues_and_the_worker_delivers(dead_delivery):
    h = dead_delivery
    output = run("deliveries", "replay", "--status", "dead", "--since", "2020-01-01")
    assert "replaying 1 dead job(s)" in output and "1 job(s) queued again" in output
    h.drain()
    assert h.call("call-1")["crm"]["status"] == "delivered"
    assert "0 job(s) queued again" in run("deliveries", "replay")


def test_resume_and_paused_state_are_shown(dead_delivery):
    pause(dead_delivery.db, "amocrm", "403 account blocked")
    assert "amocrm is PAUSED" in run("deliveries", "list")
    assert "amocrm resumed" in run("deliveries", "resume")
    assert pause_state(dead_delivery.db, "amocrm")[0] is False


def test_target_narrows_list_replay_and_resume(dead_delivery, monkeypatch):
    monkeypatch.setenv("CRM", "amocrm,webhook")
    monkeypatch.setenv("WEBHOOK_TARGET_URL", "https://bi.example/hook")
    monkeypatch.setenv("WEBHOOK_TARGET_SECRET", "whsec_" + "QUJD" * 8)
    assert "call-1:log_call" in run("deliveries", "list", "--target", "amocrm")
    assert "no delivery jobs" in run("deliveries", "list", "--target", "webhook")
    assert "0 job(s) queued again" in run("deliveries", "replay", "--target", "webhook")
    pause(dead_delivery.db, "amocrm", "403 account blocked")
    assert run("deliveries", "resume", "--target", "webhook") == "webhook was not paused\n"
    assert pause_state(dead_delivery.db, "amocrm")[0] is True
    assert "amocrm resumed" in run("deliveries", "resume")
    refused = CliRunner().invoke(cli, ["deliveries", "list", "--target", "bitrix24"])
    assert refused.exit_code == 2 and "'bitrix24' is not in CRM=amocrm,webhook" in refused.output


def test_the_same_commands_run_under_flask(dead_delivery):
    result = dead_delivery.app.test_cli_runner().invoke(args=["deliveries", "list", "--status", "dead"])
    assert result.exit_code == 0 and "call-1:log_call" in result.output


# --- first-run papercuts ------------------------------------------------------------------

def _tables(url: str) -> set:
    from sqlalchemy import create_engine, inspect

    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_downgrade_asks_for_a_revision_or_yes_before_dropping_everything(db_url, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("SECRET_KEY", "k")
    before = _tables(db_url)
    for args in (["db", "downgrade"], ["db", "downgrade", "base"]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2 and "--yes" in result.output
        assert _tables(db_url) == before
    assert CliRunner().invoke(cli, ["db", "downgrade", "0003"]).exit_code == 0
    assert "pbx_polls" not in _tables(db_url) and "calls" in _tables(db_url)
    assert CliRunner().invoke(cli, ["db", "downgrade", "--yes"]).exit_code == 0
    assert _tables(db_url) == set()
    assert CliRunner().invoke(cli, ["db", "upgrade"]).exit_code == 0 and _tables(db_url) == before


def test_simulate_says_in_one_line_when_nothing_listens(monkeypatch, tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # free once the block ends
    for key, value in {"PORT": str(port), "DATA_DIR": str(tmp_path), "MANGO_API_KEY": "k", "MANGO_API_SALT": "s",
                       "MANGO_SURVEY_LOCATION": "ivr.5", "SECRET_KEY": "k"}.items():
        monkeypatch.setenv(key, value)
    result = CliRunner().invoke(cli, ["simulate"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        f"Error: nothing listens at http://127.0.0.1:{port}: start the connector with `connector serve`, "
        "or pass --url")
