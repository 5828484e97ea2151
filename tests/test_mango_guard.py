"""MangoGuard: MANGO's block, strike window and rate, shared by every process through the database."""
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

from connector.core.db import Database
from connector.inbound.mango.api import MangoGuard
from connector.inbound.pbx import PbxCoolingDown, PbxUnavailable
from connector.inbound.mango.models import mango_row


@pytest.fixture
def guard(db_url):
    db = Database(db_url)
    yield MangoGuard(db, rate=1000)
    db.dispose()


def test_after_a_wrong_request_only_requests_expected_to_succeed_go(guard):
    guard.admit(probing=True)
    guard.settle(probing=True, wrong=True)
    with pytest.raises(PbxCoolingDown) as err:
        guard.admit(probing=True)
    assert timedelta(seconds=110) < err.value.retry_at - guard.state().strike_at <= timedelta(seconds=130)
    guard.admit(probing=False)  # a recording the PBX announced, a question id it sent


def test_one_request_that_may_fail_at_a_time_across_processes(guard, db_url):
    other_process = MangoGuard(Database(db_url), rate=1000)
    guard.admit(probing=True)
    with pytest.raises(PbxCoolingDown):
        other_process.admit(probing=True)
    guard.settle(probing=True)  # it succeeded
    other_process.admit(probing=True)
    other_process.db.dispose()


def test_concurrent_probes_admit_exactly_one(guard):
    def try_probe(_):
        try:
            guard.admit(probing=True)
            return True
        except PbxCoolingDown:
            return False

    with ThreadPoolExecutor(6) as pool:
        assert sum(pool.map(try_probe, range(6))) == 1


def test_a_block_stops_everything_until_it_ends(guard):
    guard.settle(probing=False, blocked=True)
    for probing in (True, False):
        with pytest.raises(PbxUnavailable, match="blocked"):
            guard.admit(probing=probing)
    with guard.db.transaction() as s:
        row = mango_row(s, lock=True)
        row.blocked_until -= timedelta(seconds=130)
    guard.admit(probing=True)
