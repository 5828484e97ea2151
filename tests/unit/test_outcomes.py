"""The outcomes a target reports, as the DELIVERIES metric counts them (its labels must not change)."""
import pytest

from connector.delivery.contract import Dead, Done, RateLimited, SendAgain, Superseded, TransientError, Unmatched
from connector.delivery.outbox import outcome_label


@pytest.mark.parametrize("outcome, label", [
    (Done("contacts", 1, {"call_id": 2}), "done"),
    (Superseded("a newer job carries the change"), "done"),
    (SendAgain("another item of the batch was refused"), "retry"),
    (TransientError("timeout"), "retry"),
    (RateLimited("429", retry_after=1.0), "retry"),
    (Unmatched("no contact has this phone"), "unmatched"),
    (Dead("400"), "dead"),
])
def test_each_outcome_keeps_its_metric_label(outcome, label):
    assert outcome_label(outcome) == label


def test_anything_else_is_a_bug_not_a_silent_outcome():
    with pytest.raises(TypeError):
        outcome_label({"ok": True})
