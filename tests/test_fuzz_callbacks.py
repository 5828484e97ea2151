"""Whatever a signed sender posts, the answer is a clear 2xx or 4xx, never a 500.

Each example is stored, so it is sent to every database (`every_database`): drawn once, posted to each."""
import json

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from tests.conftest import sign_score


scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=False),
                    st.text(max_size=40))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                      max_leaves=8)
known_keys = st.sampled_from(["entry_id", "call_id", "seq", "call_direction", "from", "to", "line_number",
                              "create_time", "talk_time", "end_time", "entry_result", "disconnect_reason",
                              "recording_id", "recording_state", "completion_code", "dtmf", "location",
                              "timestamp", "call_state", "command_id", "result", "reason"])
documents = st.dictionaries(st.one_of(known_keys, st.text(max_size=8)), values, max_size=12)
kinds = st.sampled_from(["events/call", "events/summary", "events/recording", "events/dtmf", "events/sms",
                         "result/sms", "result/callback"])

def fuzz(examples: int):
    # Each example runs against the test's own databases; examples share them, which a fuzz test may.
    return settings(max_examples=examples, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture
def posters(every_database):
    """Signed callbacks to each database's app, applied by its inbox as the worker would."""
    return [(target.name, target.mango_post()) for target in every_database]


@pytest.fixture
def score_posters(every_database):
    def poster(client):
        def post(payload: dict):
            body = json.dumps(payload)
            return client.post("/api/v1/scores", data=body, headers=sign_score(body))
        return post

    return [(target.name, poster(target.client)) for target in every_database]


@fuzz(200)
@given(kind=kinds, document=documents)
def test_signed_garbage_never_gets_a_500(posters, kind, document):
    for where, mango_post in posters:
        response = mango_post(kind, json.dumps(document))
        assert response.status_code in (200, 400), (where, response.status_code, response.get_data(as_text=True))
        if response.status_code != 200:
            assert set(response.json) == {"error"} and "\n" not in response.json["error"], where


@fuzz(100)
@given(kind=kinds, raw=st.text(max_size=200))
def test_signed_non_json_never_gets_a_500(posters, kind, raw):
    for where, mango_post in posters:
        assert mango_post(kind, raw).status_code in (200, 400), where


def _valid(kind: str) -> dict:
    from tests.conftest import dtmf, recording, summary

    return {"events/summary": summary(), "events/recording": recording(), "events/dtmf": dtmf(),
            "events/call": {"entry_id": "call-1", "call_id": "leg", "seq": 1, "call_state": "Connected",
                            "to": {"extension": "101"}}}[kind]


@fuzz(300)
@given(kind=st.sampled_from(["events/call", "events/summary", "events/recording", "events/dtmf"]),
       changes=st.dictionaries(known_keys, values, min_size=1, max_size=3), entry=st.text(min_size=1, max_size=130))
def test_valid_events_with_wild_fields_never_get_a_500(posters, kind, changes, entry):
    document = {**_valid(kind), "entry_id": entry, **changes}
    for where, mango_post in posters:
        response = mango_post(kind, json.dumps(document))
        assert response.status_code in (200, 400), (where, response.status_code, response.get_data(as_text=True))


@fuzz(150)
@given(payload=st.dictionaries(st.sampled_from(["call_id", "score", "source", "rated_at", "comment", "operator",
                                                "phone"]), values, max_size=7))
def test_signed_score_api_garbage_never_gets_a_500(score_posters, payload):
    for where, post_score in score_posters:
        response = post_score(payload)
        assert response.status_code in (200, 400, 422), (where, response.status_code, response.get_data(as_text=True))
