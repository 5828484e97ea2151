"""The operator's CLI: deliveries list, replay with progress, resume."""
import pytest
from click.testing import CliRunner

from commands.cli import cli
from connector.crm.account import pause, pause_state
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


def test_the_same_commands_run_under_flask(dead_delivery):
    result = dead_delivery.app.test_cli_runner().invoke(args=["deliveries", "list", "--status", "dead"])
    assert result.exit_code == 0 and "call-1:log_call" in result.output
