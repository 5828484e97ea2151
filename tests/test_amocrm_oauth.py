"""OAuth against the fake amoCRM: code exchange, one refresh on 401, rotation, serialised refresh."""
import logging
import threading

from sqlalchemy import select

from connector.core.accounts import pause_state
from connector.core.models import Account
from connector.delivery.oauth import OAuthTokens
from tests.conftest import dtmf, summary
from tests.delivery_helpers import connector_with_fake_amo
from tests.fakes.amocrm import FakeAmo

PHONE = "79001234567"


def oauth_settings(fake: FakeAmo, code: str) -> dict:
    return {"AMOCRM_CLIENT_ID": fake.client_id, "AMOCRM_CLIENT_SECRET": fake.client_secret,
            "AMOCRM_REDIRECT_URI": fake.redirect_uri, "AMOCRM_AUTH_CODE": code}


def deliver_one(h, entry_id="call-1"):
    h.post("events/summary", summary(entry_id))
    h.post("events/dtmf", dtmf(entry_id, "2"))
    h.drain(make_due=True)


def test_code_is_exchanged_and_tokens_are_stored_encrypted(db_url):
    fake = FakeAmo()
    code = fake.new_auth_code()
    with connector_with_fake_amo(db_url, fake, **oauth_settings(fake, code)) as h:
        fake.add_contact(PHONE)
        deliver_one(h)
        assert h.call("call-1")["crm"]["status"] == "delivered"
        [access] = fake.access_tokens
        [refresh] = fake.refresh_tokens
        with h.db.transaction() as s:
            row = s.scalars(select(Account)).one()
            stored = f"{row.access_token_enc} {row.refresh_token_enc}"
        assert access not in stored and refresh not in stored and row.access_token_enc


def test_expired_token_is_refreshed_once_and_the_old_refresh_token_is_spent(db_url, caplog):
    caplog.set_level(logging.DEBUG)
    fake = FakeAmo()
    with connector_with_fake_amo(db_url, fake, **oauth_settings(fake, fake.new_auth_code())) as h:
        fake.add_contact(PHONE)
        deliver_one(h, "call-1")
        [first_refresh_token] = fake.refresh_tokens
        fake.expire_access_tokens()
        deliver_one(h, "call-2")
        assert fake.refreshes == 1 and h.call("call-2")["crm"]["status"] == "delivered"
        assert fake.refresh_tokens[first_refresh_token] is False  # rotated away
        statuses = [s for _, m, p, s in fake.requests if p == "/api/v4/calls"]
        assert statuses == [200, 401, 200]
        secrets = list(fake.access_tokens) + list(fake.refresh_tokens) + [fake.client_secret]
        assert "access token refreshed" in caplog.text
        assert not any(secret in caplog.text for secret in secrets)


def test_concurrent_refreshes_make_one_refresh(db_url):
    """Two workers hit 401 at once; amoCRM would lock us out on a second refresh of the same token."""
    fake = FakeAmo()
    with connector_with_fake_amo(db_url, fake, **oauth_settings(fake, fake.new_auth_code())) as h:
        client = {"client_id": fake.client_id, "client_secret": fake.client_secret,
                  "redirect_uri": fake.redirect_uri}
        tokens = [OAuthTokens(h.db, "amocrm", token_url=h.amo_url + "/oauth2/access_token", client=client,
                              secret_key="test-secret-key", vendor="amoCRM", auth_code_setting="AMOCRM_AUTH_CODE")
                  for _ in range(4)]
        old = tokens[0].access_token()
        results, barrier = [], threading.Barrier(len(tokens))

        def refresh(source):
            barrier.wait()
            results.append(source.refresh(old))

        threads = [threading.Thread(target=refresh, args=(t,)) for t in tokens]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert fake.refreshes == 1
        assert len(set(results)) == 1 and results[0] != old and fake.access_tokens[results[0]]


def test_a_spent_code_pauses_the_account_with_the_reason(db_url):
    fake = FakeAmo()
    with connector_with_fake_amo(db_url, fake, **oauth_settings(fake, "already-used")) as h:
        paused, reason, _ = pause_state(h.db, "amocrm")
        assert paused and "authorization_code" in reason
        status = h.status()
        assert status["status"] == "degraded" and "AMOCRM_AUTH_CODE" in status["crm"]["reason"]


def test_token_endpoint_down_at_start_is_retried_by_the_first_delivery(db_url):
    fake = FakeAmo()
    fake.inject(503, path="/oauth2/access_token")
    with connector_with_fake_amo(db_url, fake, **oauth_settings(fake, fake.new_auth_code())) as h:
        assert pause_state(h.db, "amocrm")[0] is False  # a transient failure pauses nothing
        fake.add_contact(PHONE)
        deliver_one(h)
        assert h.call("call-1")["crm"]["status"] == "delivered" and len(fake.access_tokens) == 1
