"""The OpenAPI document lists every API route, and the API, fuzzed from it by schemathesis with every check
on, never answers a 5xx and answers as the document says: a request the document allows is accepted (or
answered 401/403/404/409 as the document says), one it forbids is refused."""
import shutil

import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig
from hypothesis import HealthCheck, settings
from sqlalchemy import create_engine, text

from app import create_app
from connector.core import throttle
from connector.core.models import Base
from tests.conftest import ADMIN_TOKEN, DATABASES, make_config
from web.openapi import build_spec

CLIENT = "127.0.0.1"


class _TestedApp:
    """The WSGI app the fuzzer sends to: `api_app` points it at the app of the database under test. Its
    requests come from CLIENT (schemathesis' WSGI transport leaves REMOTE_ADDR out, which a server never
    does), and it counts the throttle's answers, which would pass every check and test nothing."""

    app = None
    throttled = 0

    def __call__(self, environ, start_response):
        environ.setdefault("REMOTE_ADDR", CLIENT)

        def start(status, headers, *args):
            self.throttled += status.startswith("429")
            return start_response(status, headers, *args)

        return self.app(environ, start)


# Only the document is built at import (no app, no database). A lazy schema through
# `schemathesis.pytest.from_fixture` would be the usual way, but it fails under pytest 9 (it reads the removed
# `Node._nodeid`).
TESTED = _TestedApp()
# The token as schemathesis' own auth, as `[auth.openapi.token]` in its configuration file (not as a plain header):
# it then knows which header is the credential, and its cases that leave it out expect a 401.
schema = schemathesis.openapi.from_dict(build_spec(), config=SchemathesisConfig.from_dict(
    {"auth": {"openapi": {"token": {"bearer": ADMIN_TOKEN}}}}))
schema.app = TESTED


@pytest.fixture(scope="module", params=DATABASES)
def api_app(request, tmp_path_factory):
    """One app and database for the whole module (the fuzzer's requests build on each other's state)."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("openapi") / "connector.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        url = f"sqlite:///{path}"
    else:
        url = request.getfixturevalue("pg_migrated")
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {', '.join(t.name for t in Base.metadata.sorted_tables)} "
                              "RESTART IDENTITY CASCADE"))
        engine.dispose()
    app = create_app(make_config(url))
    TESTED.app = app
    with pytest.MonkeyPatch.context() as patch:
        # schemathesis' ignored_auth check sends a wrong token after a request that was let in, and the token
        # throttle counts it: after ten, every request from the fuzzer's one address would be answered 429. Here
        # every wrong token must reach the API's own answer (as in tests/test_fuzz_hostile.py), instead of an
        # admin's unlock of the address before each case (a write per case; the throttle has its own tests in
        # tests/test_sessions_and_logins.py).
        patch.setitem(throttle.RULES, "token", throttle.Rule(free=10**9, cap=0, lock_at=10**9, lock_seconds=0))
        yield app
    TESTED.app = None
    app.extensions["connector"].db.dispose()


def test_the_document_lists_every_api_route(api_app):
    document = api_app.test_client().get("/api/openapi.json").json
    documented = {path.replace("{call_id}", "<path:call_id>").replace("{line_number}", "<line_number>")
                  .replace("{number}", "<number>").replace("{route_id}", "<int:route_id>")
                  for path in document["paths"]}
    routes = {rule.rule for rule in api_app.url_map.iter_rules()
              if rule.rule.startswith("/api/v1/") or rule.rule in ("/healthz", "/metrics")}
    assert routes <= documented, routes - documented
    assert document["openapi"].startswith("3.")
    assert document == build_spec()  # what the fuzzer reads is what the API serves


@schema.parametrize()
@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
def test_the_api_never_answers_5xx_and_keeps_to_its_document(api_app, case):
    TESTED.throttled = 0
    case.call_and_validate()
    assert TESTED.throttled == 0, "the token throttle answered: the fuzzer's requests did not reach the API"

