"""Bitrix24 tokens are renewed at the OAuth server the portal named at install (`auth[server_endpoint]`,
docs api-reference/common/events/on-app-install.md), at `<its origin>/oauth/token/` (b24phpsdk
src/Core/ApiClient.php getNewAuthToken), and each refresh answer's `server_endpoint` keeps it current. A
server_endpoint the connector cannot trust (not https, no host name, credentials, a query) is not followed:
BITRIX24_OAUTH_URL renews. And the worker's registration of the ONAPPUNINSTALL handler: counted failures,
growing pauses, never a tight loop."""
import logging
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, urlsplit

import pytest
import responses

from connector.delivery.contract import AccountBlocked, TransientError
from connector.delivery.targets.bitrix24.install import (ACCOUNT, BIND_BACKOFF, Bitrix24Tokens, InstallStore, UninstallHandler,
                                            oauth_origin)
from connector.delivery.targets.bitrix24.models import portal_row

SECRET = "test-secret-key"
CONFIGURED = "https://oauth.bitrix24.tech/oauth/token/"  # connector/config.py's default BITRIX24_OAUTH_URL
CLIENT = {"client_id": "local.app", "client_secret": "app-secret-value"}


def install(db, server_endpoint, *, access="install-access", refresh="install-refresh"):
    form = {"event": "ONAPPINSTALL", "auth[access_token]": access, "auth[refresh_token]": refresh,
            "auth[expires_in]": "3600", "auth[domain]": "portal.bitrix24.com", "auth[member_id]": "m" * 32,
            "auth[application_token]": "a" * 32, "auth[client_endpoint]": "https://portal.bitrix24.com/rest/"}
    if server_endpoint is not None:
        form["auth[server_endpoint]"] = server_endpoint
    return InstallStore(db, SECRET).receive(form)


def tokens(db) -> Bitrix24Tokens:
    return Bitrix24Tokens(db, ACCOUNT, token_url=CONFIGURED, client=CLIENT, secret_key=SECRET, grant_in_query=True,
                          vendor="Bitrix24", auth_code_setting="BITRIX24_AUTH_CODE")


def answer(server_endpoint, n=1) -> dict:
    # docs settings/oauth/auto-renewal.md: the refresh answer, with its server's server_endpoint
    return {"access_token": f"new-access-{n}", "refresh_token": f"new-refresh-{n}", "expires_in": 3600,
            "domain": urlsplit(server_endpoint).hostname, "server_endpoint": server_endpoint,
            "client_endpoint": "https://portal.bitrix24.com/rest/", "member_id": "m" * 32, "status": "L"}


def oauth_server(db):
    with db.reading() as s:
        return portal_row(s).oauth_server


@responses.activate
def test_a_portal_on_the_international_cloud_is_renewed_at_oauth_bitrix_info(db):
    install(db, "https://oauth.bitrix.info/rest/")
    assert oauth_server(db) == "https://oauth.bitrix.info"
    west = responses.get("https://oauth.bitrix.info/oauth/token/", json=answer("https://oauth.bitrix.info/rest/"))

    assert tokens(db).refresh("install-access") == "new-access-1"

    [call] = responses.calls  # nothing went to BITRIX24_OAUTH_URL's server
    assert west.call_count == 1 and call.request.url.startswith("https://oauth.bitrix.info/oauth/token/?")
    assert parse_qs(urlsplit(call.request.url).query) == {
        "grant_type": ["refresh_token"], "client_id": ["local.app"], "client_secret": ["app-secret-value"],
        "refresh_token": ["install-refresh"]}


@responses.activate
def test_the_server_a_refresh_answer_names_is_kept_for_the_next_refresh(db):
    install(db, "https://oauth.bitrix.info/rest/")
    responses.get("https://oauth.bitrix.info/oauth/token/", json=answer("https://oauth.bitrix24.tech/rest/", 1))
    east = responses.get("https://oauth.bitrix24.tech/oauth/token/",
                         json=answer("https://oauth.bitrix24.tech/rest/", 2))
    renewing = tokens(db)
    renewing.refresh("install-access")
    assert oauth_server(db) == "https://oauth.bitrix24.tech"
    assert renewing.refresh("new-access-1") == "new-access-2" and east.call_count == 1
    assert parse_qs(urlsplit(east.calls[0].request.url).query)["refresh_token"] == ["new-refresh-1"]


@responses.activate
def test_an_untrusted_server_in_a_refresh_answer_keeps_the_known_one(db, caplog):
    install(db, "https://oauth.bitrix.info/rest/")
    responses.get("https://oauth.bitrix.info/oauth/token/", json=answer("http://oauth.evil.example/rest/"))
    tokens(db).refresh("install-access")
    assert oauth_server(db) == "https://oauth.bitrix.info"
    assert "not trusted (server_endpoint is not https)" in caplog.text


@pytest.mark.parametrize("server_endpoint, why", [
    ("http://oauth.bitrix.info/rest/", "not https"),
    ("/rest/", "not https"),  # a path only
    ("oauth.bitrix.info/rest/", "not https"),
    ("https://user:secret-pw@oauth.bitrix.info/rest/", "credentials"),
    ("https://oauth.bitrix.info/rest/?next=https://evil.example", "query"),
    ("https://oauth.bitrix.info:8443/rest/", "port"),
    ("https://127.0.0.1/rest/", "IP address"),
    ("https://localhost/rest/", "no host name"),
    ("https:///rest/", "no host name"),
    (None, "no server_endpoint"),
])
@responses.activate
def test_a_server_endpoint_that_cannot_be_trusted_is_not_followed(db, caplog, server_endpoint, why):
    caplog.set_level(logging.INFO)
    assert install(db, server_endpoint) == "installed"
    assert oauth_server(db) is None
    assert why in caplog.text and "BITRIX24_OAUTH_URL" in caplog.text
    assert "secret-pw" not in caplog.text and "install-refresh" not in caplog.text  # the value is never logged
    configured = responses.get(CONFIGURED, json=answer("https://oauth.bitrix24.tech/rest/"))
    tokens(db).refresh("install-access")
    assert configured.call_count == 1 and len(responses.calls) == 1
    assert oauth_server(db) == "https://oauth.bitrix24.tech"  # the configured server's answer names itself


@responses.activate
def test_a_refused_refresh_names_the_server_that_refused_it(db):
    install(db, "https://oauth.bitrix.info/rest/")
    responses.get("https://oauth.bitrix.info/oauth/token/", status=400,
                  json={"error": "invalid_grant", "error_description": "Invalid grant"})
    with pytest.raises(AccountBlocked, match="400 at oauth.bitrix.info"):
        tokens(db).refresh("install-access")


def test_origins():
    assert oauth_origin("https://oauth.bitrix.info/rest/") == ("https://oauth.bitrix.info", None)
    assert oauth_origin(" https://OAuth.Bitrix24.tech/rest/ ") == ("https://oauth.bitrix24.tech", None)
    assert oauth_origin("https://oauth.bitrix.info:443/rest/") == ("https://oauth.bitrix.info", None)


# --- the ONAPPUNINSTALL handler's registration ------------------------------------------------------

class Clock:
    def __init__(self):
        self.now = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)
        self.mono = 1000.0

    def advance(self, seconds: float):
        self.now += timedelta(seconds=seconds)
        self.mono += seconds


def binding(db):
    with db.reading() as s:
        row = portal_row(s)
        return row.events_bound_at, row.bind_failures, row.bind_error, row.bind_next_at


def test_a_failed_registration_is_counted_and_waits_longer_each_time(db, caplog):
    install(db, "https://oauth.bitrix.info/rest/")
    clock, calls, outcomes = Clock(), [], [TransientError("event.bind: no answer (ConnectTimeout)"),
                                           AccountBlocked("Bitrix24 refused the application (event.bind: 403)")]

    def call(method, params):
        calls.append((method, params))
        if outcomes:
            raise outcomes.pop(0)
        return True

    where = "https://connector.example/bitrix24/app/key"
    handler = UninstallHandler(db, where, call, clock=lambda: clock.now, monotonic=lambda: clock.mono)
    assert handler.run_due() is False
    assert calls == [("event.bind", {"event": "ONAPPUNINSTALL", "handler": where})]
    _bound, failures, error, next_at = binding(db)
    assert (failures, error) == (1, "event.bind: no answer (ConnectTimeout)")
    assert next_at == clock.now + timedelta(seconds=BIND_BACKOFF[0])
    assert "registering the ONAPPUNINSTALL handler failed (1 so far" in caplog.text

    for _ in range(55):  # the worker loops every second: nothing is sent before the pause is over
        clock.advance(1)
        handler.run_due()
    assert len(calls) == 1
    clock.advance(BIND_BACKOFF[0] - 55)
    assert handler.run_due() is False and len(calls) == 2
    assert binding(db)[1:3] == (2, "Bitrix24 refused the application (event.bind: 403)")
    clock.advance(BIND_BACKOFF[0] + 5)
    assert handler.run_due() is None and len(calls) == 2  # the second pause is longer
    clock.advance(BIND_BACKOFF[1])
    assert handler.run_due() is True and len(calls) == 3
    bound, failures, error, next_at = binding(db)
    assert bound == clock.now and error is None and next_at is None and failures == 2
    clock.advance(3600)
    assert handler.run_due() is None and len(calls) == 3  # bound: never again for this install


def test_a_handler_the_portal_already_has_counts_as_registered(db):
    install(db, "https://oauth.bitrix.info/rest/")

    def call(method, params):
        raise TransientError("event.bind: 400 ERROR_CORE Handler already binded")

    assert UninstallHandler(db, "https://connector.example/h", call).run_due() is True
    assert binding(db)[0] is not None


def test_nothing_is_registered_without_an_install(db):
    calls = []
    assert UninstallHandler(db, "https://connector.example/h", lambda *a: calls.append(a)).run_due() is None
    assert calls == []
