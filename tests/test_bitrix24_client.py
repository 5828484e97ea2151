"""The Bitrix24 REST client against a fake portal over real HTTP: OAuth code exchange and single-use
refresh tokens (serialised across workers), the `auth` parameter, batch semantics, the leaky bucket,
the method time budget, the 30-minute register dedupe, and a removed application."""
import threading
import time

import pytest

from connector.core.accounts import account_row
from connector.delivery.contract import AccountBlocked, RateLimited
from connector.delivery.oauth import OAuthTokens
from connector.delivery.targets.bitrix24.client import Bitrix24Api, MethodHeld, command
from tests.fakes.bitrix24 import FakeBitrix24, create_fake_bitrix24
from tests.fakes.server import serving

REGISTER = "telephony.externalcall.register"


@pytest.fixture
def portal():
    fake = FakeBitrix24()
    with serving(create_fake_bitrix24(fake)) as url:
        yield fake, url


def api(db, fake, url, code=None) -> Bitrix24Api:
    tokens = OAuthTokens(db, "bitrix24", token_url=f"{url}/oauth/token/", secret_key="test-secret-key",
                         client={"client_id": fake.client_id, "client_secret": fake.client_secret},
                         auth_code=code or "", grant_in_query=True, vendor="Bitrix24",
                         auth_code_setting="BITRIX24_AUTH_CODE")
    return Bitrix24Api(url, tokens)


def registration(external_id="call-1", phone="+7 900 123-45-67", user=5551) -> dict:
    return {"USER_ID": user, "PHONE_NUMBER": phone, "TYPE": 2, "LINE_NUMBER": "74950000000",
            "EXTERNAL_CALL_ID": external_id, "CRM_CREATE": 0, "SHOW": 0, "ADD_TO_CHAT": 0}


def test_the_code_is_exchanged_once_and_tokens_are_stored_encrypted(db, portal):
    fake, url = portal
    client = api(db, fake, url, fake.new_auth_code())
    assert client.call("app.info")["CODE"] == fake.client_id
    with db.transaction() as s:
        row = account_row(s, "bitrix24")
        stored = (row.access_token_enc or "") + (row.refresh_token_enc or "")
    assert stored and not any(token in stored for token in [*fake.access_tokens, *fake.refresh_tokens])
    assert api(db, fake, url).call("app.info")  # another process reads the stored tokens


def test_an_expired_token_is_refreshed_once_across_workers(db, portal):
    fake, url = portal
    clients = [api(db, fake, url, fake.new_auth_code()) for _ in range(4)]
    clients[0].call("app.info")
    fake.expire_access_tokens()
    barrier, errors = threading.Barrier(len(clients)), []

    def call(client):
        barrier.wait()
        try:
            client.call("app.info")
        except Exception as exc:  # noqa: BLE001 - any failure is the test's finding
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and fake.refreshes == 1  # a second refresh would have used a spent token


def test_a_batch_gives_each_command_its_own_outcome_and_reads_earlier_results(db, portal):
    fake, url = portal
    fake.add_contact("79001234567")
    client = api(db, fake, url, fake.new_auth_code())
    answer = client.batch({
        "register": command(REGISTER, registration()),
        "finish": command("telephony.externalcall.finish",
                          {"CALL_ID": "$result[register][CALL_ID]", "USER_ID": 5551, "DURATION": 60, "VOTE": 2}),
        "bad": command(REGISTER, registration(user=999)),
    })
    assert answer.results["register"]["CRM_ENTITY_TYPE"] == "CONTACT"
    assert answer.results["finish"]["CALL_VOTE"] == 2
    assert answer.failures["bad"].code == "ERROR_CORE" and not answer.failures["bad"].transient
    [call] = fake.finished()
    assert call["finished"]["VOTE"] == "2"
    with pytest.raises(ValueError):
        client.batch({str(i): command("app.info", {}) for i in range(51)})


def test_register_within_30_minutes_returns_the_same_call(db, portal):
    fake, url = portal
    client = api(db, fake, url, fake.new_auth_code())
    first = client.call(REGISTER, registration())
    again = client.call(REGISTER, registration())
    other = client.call(REGISTER, registration(external_id="call-2"))
    assert first["CALL_ID"] == again["CALL_ID"] != other["CALL_ID"] and len(fake.calls) == 2


def test_a_full_bucket_is_rate_limited_and_a_spent_method_is_held(db, portal):
    fake, url = portal
    fake.bucket_size = 3
    client = api(db, fake, url, fake.new_auth_code())
    with pytest.raises(RateLimited) as limited:
        for _ in range(10):
            client.call("app.info")
    assert limited.value.status == 503 and limited.value.maybe_applied is False
    time.sleep(2.0)  # the bucket drains 2 per second
    fake.operation_limited["app.info"] = time.time() + 300
    with pytest.raises(MethodHeld) as held:
        client.call("app.info")
    # The error names no reset time, and no earlier answer did: the budget spans ten minutes.
    assert held.value.status == 429 and 595 < held.value.retry_after <= 600

    fake.operation_limited.clear()
    fake.budget_resets["app.info"] = time.time() + 240  # an answer says when the spent time resets
    client.call("app.info")
    fake.operation_limited["app.info"] = time.time() + 240
    with pytest.raises(MethodHeld) as held:
        client.call("app.info")
    assert 235 < held.value.retry_after <= 240  # held until then, not a minute and again


def test_a_removed_application_blocks_the_account(db, portal):
    fake, url = portal
    client = api(db, fake, url, fake.new_auth_code())
    client.call("app.info")
    fake.uninstalled = True
    with pytest.raises(AccountBlocked) as blocked:
        client.call("app.info")
    assert "BITRIX24_AUTH_CODE" in blocked.value.message


def test_the_fake_oauth_server_names_itself_and_refuses_a_refresh_token_it_did_not_issue(portal):
    """As another region's server would: a refresh token issued elsewhere is invalid_grant (docs
    settings/oauth/error-codes.md); each answer names this server's own server_endpoint (auto-renewal.md)."""
    import requests

    fake, url = portal
    keys = {"client_id": fake.client_id, "client_secret": fake.client_secret, "grant_type": "refresh_token"}
    foreign = requests.get(f"{url}/oauth/token/", params={**keys, "refresh_token": "issued-elsewhere"}, timeout=5)
    assert foreign.status_code == 400 and foreign.json()["error"] == "invalid_grant"
    issued = requests.get(f"{url}/oauth/token/", params={"client_id": fake.client_id, "client_secret":
                                                         fake.client_secret, "grant_type": "authorization_code",
                                                         "code": fake.new_auth_code()}, timeout=5).json()
    assert issued["server_endpoint"] == f"{url}/rest/"
    renewed = requests.get(f"{url}/oauth/token/", params={**keys, "refresh_token": issued["refresh_token"]}, timeout=5)
    assert renewed.status_code == 200 and renewed.json()["server_endpoint"] == f"{url}/rest/"
