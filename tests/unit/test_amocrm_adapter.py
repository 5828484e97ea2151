"""The amoCRM adapter alone, with `responses`: request shapes and the error split."""
import json

import pytest
import requests
import responses
from responses import matchers
from responses.registries import OrderedRegistry

from connector.delivery.contract import (AccountBlocked, CallItem, Dead, Done, NoteItem, PermanentError, RateLimited, SendAgain,
                                         TagItem, TransientError, Unmatched)
from connector.delivery.targets.amocrm.client import AmoCrm, StaticToken

BASE = "https://example.amocrm.ru"


class CountingTokens:
    def __init__(self):
        self.refreshed = []

    def access_token(self):
        return "old"

    def refresh(self, rejected):
        self.refreshed.append(rejected)
        return "new"


def adapter(tokens=None):
    return AmoCrm(BASE, tokens or StaticToken("tok"), wait_turn=lambda: None)


def call_item(entry_id="e1", score_text="Оценка качества: 3"):
    return CallItem(entry_id=entry_id, direction="inbound", phone="+79001234567", duration=60,
                    started_at=1_763_800_000, score_text=score_text, recording_link="https://c/rec",
                    responsible_user_id=5551, answered=True)


@responses.activate
def test_calls_are_sent_as_one_batch_and_unmatched_items_are_reported():
    responses.post(f"{BASE}/api/v4/calls", match=[
        matchers.header_matcher({"Authorization": "Bearer tok"}),
        matchers.json_params_matcher([
            {"request_id": "0", "uniq": "e1", "direction": "inbound", "duration": 60,
             "source": "post-call QA connector", "phone": "+79001234567", "call_status": 4,
             "created_at": 1_763_800_000, "call_result": "Оценка качества: 3", "link": "https://c/rec",
             "responsible_user_id": 5551, "call_responsible": 5551},
            {"request_id": "1", "uniq": "e2", "direction": "inbound", "duration": 60,
             "source": "post-call QA connector", "phone": "+79001234567", "call_status": 4,
             "created_at": 1_763_800_000, "link": "https://c/rec",
             "responsible_user_id": 5551, "call_responsible": 5551},
        ])],
        # A 200 may carry a top-level `errors` list beside `_embedded.calls`.
        json={"_embedded": {"calls": [{"id": 1, "entity_id": 10, "entity_type": "contacts", "request_id": "0"}]},
              "errors": [{"request_id": "1", "title": "Entity not found"}]})
    first, second = adapter().log_calls([call_item(), call_item("e2", None)])
    assert (type(first), first.entity_type, first.entity_id) == (Done, "contacts", 10)
    assert second == Unmatched("Entity not found")


ENTITY_NOT_FOUND = {"_total_items": 0, "errors": [{"title": "Entity not found"}]}


@responses.activate
def test_a_single_call_answered_entity_not_found_is_unmatched():
    responses.post(f"{BASE}/api/v4/calls", status=400, json=ENTITY_NOT_FOUND)
    [result] = adapter().log_calls([call_item()])
    assert isinstance(result, Unmatched) and "Entity not found" in result.reason


@responses.activate(registry=OrderedRegistry)
def test_a_batch_answered_entity_not_found_is_looked_up_then_sent_one_by_one():
    responses.post(f"{BASE}/api/v4/calls", status=400, json=ENTITY_NOT_FOUND)
    # The look-up finds e1 already logged (amoCRM added the known call and still answered 400).
    responses.get(f"{BASE}/api/v4/leads/notes", status=204)
    responses.get(f"{BASE}/api/v4/contacts/notes", json={"_embedded": {"notes": [
        {"id": 5, "entity_id": 10, "note_type": "call_in", "params": {"uniq": "e1"}}]}})
    responses.get(f"{BASE}/api/v4/companies/notes", status=204)
    responses.get(f"{BASE}/api/v4/customers/notes", status=402, json={"title": "Payment Required"})
    responses.post(f"{BASE}/api/v4/calls", status=400, json=ENTITY_NOT_FOUND)  # e2 alone
    responses.post(f"{BASE}/api/v4/calls", json={"_embedded": {"calls": [
        {"id": 7, "entity_id": 11, "entity_type": "lead", "request_id": "0"}]}})
    first, second, third = adapter().log_calls([call_item("e1"), call_item("e2"), call_item("e3")])
    singles = [json.loads(c.request.body) for c in responses.calls if c.request.method == "POST"][1:]
    assert [[call["uniq"] for call in body] for body in singles] == [["e2"], ["e3"]]
    assert (type(first), first.entity_type, first.entity_id) == (Done, "contacts", 10)
    assert isinstance(second, Unmatched), second
    assert (type(third), third.entity_type, third.entity_id) == (Done, "leads", 11)  # "lead" normalised


@pytest.mark.parametrize("singular, plural", [("contact", "contacts"), ("lead", "leads"),
                                              ("company", "companies"), ("customer", "customers"),
                                              ("contacts", "contacts")])
def test_entity_types_are_normalised_to_the_plural(singular, plural):
    from connector.delivery.targets.amocrm.client import plural as normalise

    assert normalise(singular) == plural


@responses.activate
def test_tags_on_a_singular_entity_type_go_to_the_plural_path():
    responses.patch(f"{BASE}/api/v4/contacts", json={})
    [result] = adapter().update_tags([TagItem("contact", 7, add=("Оценка 2",))])
    assert isinstance(result, Done) and result.entity_type == "contacts"


@responses.activate
def test_a_section_the_account_does_not_use_does_not_block_the_look_up():
    for section in ("leads", "contacts", "companies"):
        responses.get(f"{BASE}/api/v4/{section}/notes", status=204)
    responses.get(f"{BASE}/api/v4/customers/notes", status=403, json={"title": "Forbidden"})
    assert adapter().find_logged_calls(["e1"], 0) == {}


@responses.activate
def test_a_look_up_refused_everywhere_is_a_blocked_account():
    for section in ("leads", "contacts", "companies", "customers"):
        responses.get(f"{BASE}/api/v4/{section}/notes", status=403, json={"title": "Forbidden"})
    with pytest.raises(AccountBlocked):
        adapter().find_logged_calls(["e1"], 0)


@responses.activate
def test_a_403_quotes_the_vendor_code_and_survives_an_html_body():
    responses.post(f"{BASE}/api/v4/calls", status=403, json={"title": "Forbidden", "error_code": 113,
                                                             "detail": "IP is not allowed"})
    with pytest.raises(AccountBlocked, match=r"code 113.*IP is not allowed") as err:
        adapter().log_calls([call_item()])
    assert err.value.status == 403 and err.value.body["error_code"] == 113
    responses.replace(responses.POST, f"{BASE}/api/v4/calls", status=403, content_type="text/html",
                      body="<html><head><title>403 Forbidden</title></head><body>nginx</body></html>")
    with pytest.raises(AccountBlocked, match="403 Forbidden nginx"):
        adapter().log_calls([call_item()])


@responses.activate
def test_call_status_is_talked_only_for_a_conversation():
    responses.post(f"{BASE}/api/v4/calls", json={"_embedded": {"calls": []}})
    item = CallItem(entry_id="e1", direction="inbound", phone="+79001234567", duration=0, started_at=None,
                    score_text=None, recording_link=None, responsible_user_id=None, answered=False)
    adapter().log_calls([item])
    assert json.loads(responses.calls[0].request.body)[0]["call_status"] == 6


@responses.activate
def test_tags_change_only_the_named_tags():
    responses.patch(f"{BASE}/api/v4/leads", match=[matchers.json_params_matcher([
        {"id": 7, "tags_to_add": [{"name": "Оценка 2"}], "tags_to_delete": [{"name": "Оценка 5"}],
         "custom_fields_values": [{"field_id": 99, "values": [{"value": 2}]}]}])], json={})
    [result] = adapter().update_tags([TagItem("leads", 7, add=("Оценка 2",), remove=("Оценка 5",),
                                              score_field=(99, 2))])
    assert isinstance(result, Done)
    assert "_embedded" not in responses.calls[0].request.body.decode()


@responses.activate
def test_notes_go_one_request_per_entity_type():
    responses.post(f"{BASE}/api/v4/contacts/notes", json={"_embedded": {"notes": [{"id": 1, "request_id": "0"}]}})
    responses.post(f"{BASE}/api/v4/leads/notes", json={"_embedded": {"notes": [{"id": 2, "request_id": "0"}]}})
    results = adapter().add_notes([NoteItem("contacts", 1, "a"), NoteItem("leads", 2, "b")])
    assert [type(r) for r in results] == [Done, Done] and len(responses.calls) == 2


@responses.activate
def test_rate_limit_is_transient_with_retry_after_and_surely_not_applied():
    responses.post(f"{BASE}/api/v4/calls", status=429, headers={"Retry-After": "3"})
    with pytest.raises(TransientError) as err:
        adapter().log_calls([call_item()])
    assert err.value.retry_after == 3.0 and err.value.maybe_applied is False


@responses.activate
def test_a_429_naming_no_wait_holds_back_one_second():
    responses.post(f"{BASE}/api/v4/calls", status=429, json={"title": "Too Many Requests", "status": 429})
    with pytest.raises(RateLimited) as err:
        adapter().log_calls([call_item()])
    assert err.value.retry_after == 1.0 and err.value.maybe_applied is False and err.value.status == 429


@pytest.mark.parametrize("status", [500, 502, 503, 504])
@responses.activate
def test_server_errors_are_transient_and_maybe_applied(status):
    responses.post(f"{BASE}/api/v4/calls", status=status)
    with pytest.raises(TransientError) as err:
        adapter().log_calls([call_item()])
    assert err.value.maybe_applied is True


@responses.activate
def test_connection_failures_are_transient():
    responses.post(f"{BASE}/api/v4/calls", body=requests.ConnectTimeout("slow"))
    with pytest.raises(TransientError, match="ConnectTimeout"):
        adapter().log_calls([call_item()])


@pytest.mark.parametrize("status", [402, 403])
@responses.activate
def test_payment_and_block_stop_the_account(status):
    responses.post(f"{BASE}/api/v4/calls", status=status, json={"title": "Forbidden"})
    with pytest.raises(AccountBlocked, match=str(status)):
        adapter().log_calls([call_item()])


@responses.activate
def test_validation_error_fails_only_the_named_item():
    responses.post(f"{BASE}/api/v4/calls", status=400, json={
        "validation-errors": [{"request_id": "1", "errors": [
            {"code": "NotSupportedChoice", "path": "direction", "detail": "bad direction"}]}],
        "title": "Bad Request", "status": 400, "detail": "Request validation failed"})
    good, bad = adapter().log_calls([call_item(), call_item("e2")])
    assert bad == Dead("direction: bad direction")
    assert isinstance(good, SendAgain)


@responses.activate
def test_a_400_without_item_detail_is_permanent_with_the_detail():
    responses.post(f"{BASE}/api/v4/calls", status=400, json={"title": "Bad Request", "detail": "broken"})
    with pytest.raises(PermanentError, match="broken"):
        adapter().log_calls([call_item()])


@responses.activate(registry=OrderedRegistry)
def test_a_batch_400_naming_no_item_kills_only_the_guilty_one():
    responses.post(f"{BASE}/api/v4/contacts/notes", status=400, json={"title": "Bad Request", "detail": "broken"})
    responses.get(f"{BASE}/api/v4/contacts/1/notes", status=204)  # neither note landed
    responses.get(f"{BASE}/api/v4/contacts/2/notes", status=204)
    responses.post(f"{BASE}/api/v4/contacts/notes", json={"_embedded": {"notes": [{"id": 9, "request_id": "0"}]}})
    responses.post(f"{BASE}/api/v4/contacts/notes", status=400, json={"title": "Bad Request", "detail": "broken"})
    good, bad = adapter().add_notes([NoteItem("contacts", 1, "a"), NoteItem("contacts", 2, "b")])
    assert isinstance(good, Done) and isinstance(bad, Dead) and "broken" in bad.reason


@responses.activate(registry=OrderedRegistry)
def test_401_refreshes_once_then_succeeds():
    responses.post(f"{BASE}/api/v4/calls", status=401, match=[matchers.header_matcher({"Authorization": "Bearer old"})])
    responses.post(f"{BASE}/api/v4/calls", match=[matchers.header_matcher({"Authorization": "Bearer new"})],
                   json={"_embedded": {"calls": [{"entity_id": 1, "entity_type": "contacts", "request_id": "0"}]}})
    tokens = CountingTokens()
    [result] = adapter(tokens).log_calls([call_item()])
    assert isinstance(result, Done) and tokens.refreshed == ["old"]


@responses.activate(registry=OrderedRegistry)
def test_a_second_401_after_refresh_stops_the_account():
    responses.post(f"{BASE}/api/v4/calls", status=401)
    responses.post(f"{BASE}/api/v4/calls", status=401)
    tokens = CountingTokens()
    with pytest.raises(AccountBlocked):
        adapter(tokens).log_calls([call_item()])
    assert tokens.refreshed == ["old"]


def test_long_lived_token_cannot_be_refreshed():
    with pytest.raises(AccountBlocked, match="long-lived"):
        StaticToken("t").refresh("t")


@responses.activate
def test_no_match_for_a_phone_is_204():
    responses.get(f"{BASE}/api/v4/contacts", status=204, match=[matchers.query_param_matcher(
        {"query": "79001234567", "limit": "1"})])
    assert adapter().find_entity_by_phone("+7 (900) 123-45-67") is None


@responses.activate
def test_tags_in_place_reads_the_entities_once_per_type():
    responses.get(f"{BASE}/api/v4/contacts", match=[matchers.query_param_matcher(
        {"filter[id][]": ["1", "2"], "limit": "250"})], json={"_embedded": {"contacts": [
            {"id": 1, "_embedded": {"tags": [{"name": "Оценка 3"}, {"name": "VIP"}]}},
            {"id": 2, "_embedded": {"tags": [{"name": "Оценка 5"}]},
             "custom_fields_values": [{"field_id": 9, "values": [{"value": 5}]}]}]}})
    responses.get(f"{BASE}/api/v4/leads", status=204)
    items = [TagItem("contacts", 1, add=("Оценка 3",)),  # in place
             TagItem("contact", 2, add=("Оценка 2",), remove=("Оценка 5",)),  # not yet
             TagItem("contacts", 2, add=("Оценка 5",), score_field=(9, 5)),  # in place, field too
             TagItem("leads", 7, add=("Оценка 1",))]  # the lead is gone: not in place
    assert adapter().tags_in_place(items) == [True, False, True, False]
    assert len(responses.calls) == 2
