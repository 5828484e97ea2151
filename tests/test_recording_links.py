"""Signed recording links: the CRM keeps ours; each play gets a fresh single-use PBX link."""
import time
from datetime import datetime, timedelta, timezone

import pytest
import requests
from sqlalchemy import select

from app import create_app
from connector.core.links import link_is_valid, recording_link
from connector.core.models import Call
from connector.inbound.mango.models import mango_row
from tests.conftest import MANGO_KEY, MANGO_SALT, MangoPoster, make_config, recording
from tests.fakes.mango import FakeMango, create_fake_mango
from tests.fakes.server import serving


@pytest.fixture(params=[200, 400])
def pbx(request):
    """MANGO's HTTP status for an error answer is undocumented: the client reads `result` under both."""
    return FakeMango(MANGO_KEY, MANGO_SALT, recordings={"rec-1"}, error_status=request.param)


@pytest.fixture
def setup(db_url, pbx):
    with serving(create_fake_mango(pbx)) as pbx_url:
        config = make_config(db_url, MANGO_API_URL=pbx_url + "/vpbx/", PUBLIC_BASE_URL="https://qa.example")
        app = create_app(config)
        yield app.test_client(), MangoPoster(app.test_client()), config
        app.extensions["connector"].db.dispose()


def path_of(link: str) -> str:
    return link.removeprefix("https://qa.example")


def db_of(client):
    return client.application.extensions["connector"].db


def age_recording(client, entry_id: str, seconds: float) -> None:
    """As if record/added (and any "not yet" answer) came `seconds` earlier."""
    with db_of(client).transaction() as s:
        call = s.scalars(select(Call).where(Call.entry_id == entry_id)).one()
        call.recording_stored_at -= timedelta(seconds=seconds)
        if call.recording_unavailable_until:
            call.recording_unavailable_until -= timedelta(seconds=seconds)


def strike(client, pbx, seconds_ago: float = 0.0) -> None:
    """Another wrong request moments ago: the account's one tolerated error is spent (both sides know)."""
    pbx.wrong_at.append(pbx.now() - seconds_ago)
    with db_of(client).transaction() as s:
        mango_row(s, lock=True).strike_at = datetime.now(timezone.utc) - timedelta(seconds=seconds_ago)


def two_minutes_pass(client, pbx) -> None:
    pbx.advance(130)
    with db_of(client).transaction() as s:
        row = mango_row(s, lock=True)
        if row.strike_at:
            row.strike_at -= timedelta(seconds=130)


def test_a_valid_link_redirects_to_a_fresh_playable_pbx_link(setup):
    client, post, config = setup
    post("events/recording", recording("call-1", "rec-1"))
    link = recording_link(config.PUBLIC_BASE_URL, config.SECRET_KEY, "call-1")
    first = client.get(path_of(link))
    second = client.get(path_of(link))
    assert first.status_code == second.status_code == 302
    assert first.headers["Location"] != second.headers["Location"]  # single-use links are never reused
    audio = requests.get(first.headers["Location"], timeout=5)
    assert audio.status_code == 200 and audio.headers["Content-Type"] == "audio/mpeg"
    assert requests.get(first.headers["Location"], timeout=5).status_code == 404  # spent


def test_tampered_or_expired_links_are_403(setup):
    client, post, config = setup
    post("events/recording", recording("call-1", "rec-1"))
    link = recording_link(config.PUBLIC_BASE_URL, config.SECRET_KEY, "call-1")
    assert client.get(path_of(link)[:-2] + "00").status_code == 403
    assert client.get(path_of(link).replace("call-1", "call-2")).status_code == 403
    old = recording_link(config.PUBLIC_BASE_URL, config.SECRET_KEY, "call-1", now=time.time() - 10, ttl=5)
    response = client.get(path_of(old))
    assert response.status_code == 403 and "expired" in response.json["error"]
    assert client.get("/recordings/call-1").status_code == 403


def test_not_ready_recordings_are_404_with_a_clear_message(setup):
    client, post, config = setup
    post("events/recording", recording("call-2", "rec-2", state="Started", code=None))
    response = client.get(path_of(recording_link(config.PUBLIC_BASE_URL, config.SECRET_KEY, "call-2")))
    assert response.status_code == 404 and "not ready" in response.json["error"]
    post("events/recording", recording("call-3", "rec-unknown-to-pbx"))
    response = client.get(path_of(recording_link(config.PUBLIC_BASE_URL, config.SECRET_KEY, "call-3")))
    assert response.status_code == 404 and "3320" in response.json["error"]


def test_a_missing_recording_is_not_asked_for_again_within_the_block_window(setup, pbx):
    client, post, config = setup
    post("events/recording", recording("call-3", "rec-unknown-to-pbx"))
    link = path_of(recording_link(config.PUBLIC_BASE_URL, config.SECRET_KEY, "call-3"))
    for _ in range(5):  # a user pressing play again and again
        assert client.get(link).status_code == 404
    assert len(pbx.commands("queries/recording/post")) == 1 and pbx.blocks == 0
    post("events/record/added", {"entry_id": "call-3", "recording_id": "rec-1", "product_id": 1, "user_id": 2,
                                 "timestamp": 1_763_800_100})
    waiting = client.get(link)  # the file is in the cloud now, but the first fetch waits a little
    assert waiting.status_code == 503 and 1 <= int(waiting.headers["Retry-After"]) <= 45
    age_recording(client, "call-3", 50)
    # The first 3320 was moments ago: a fetch that may still answer 3320 waits out the 2 minutes.
    assert client.get(link).status_code == 503 and len(pbx.commands("queries/recording/post")) == 1
    two_minutes_pass(client, pbx)
    assert client.get(link).status_code == 302 and pbx.blocks == 0


def record_added(post, entry_id: str, recording_id: str) -> None:
    post("events/record/added", {"entry_id": entry_id, "recording_id": recording_id, "product_id": 1,
                                 "user_id": 2, "timestamp": 1_763_800_100})


def test_the_first_fetch_after_record_added_waits_and_never_spends_the_tolerated_error(setup, pbx):
    """Issue 15: right after record/added a fetch may still answer 3320, which counts toward the block."""
    client, post, config = setup
    pbx.store_recording("rec-7", ready_in=30)  # under load: fetchable only 30 s after record/added
    strike(client, pbx)  # the account's one tolerated wrong request was spent moments ago
    record_added(post, "call-7", "rec-7")
    link = path_of(recording_link(config.PUBLIC_BASE_URL, config.SECRET_KEY, "call-7"))
    first = client.get(link)
    assert first.status_code == 503 and 1 <= int(first.headers["Retry-After"]) <= 45
    assert pbx.commands("queries/recording/post") == []  # nothing asked yet
    age_recording(client, "call-7", 50)
    second = client.get(link)  # may still answer 3320, and a strike is in the window: not sent
    assert second.status_code == 503 and pbx.commands("queries/recording/post") == [] and pbx.blocks == 0
    two_minutes_pass(client, pbx)
    assert client.get(link).status_code == 302 and pbx.blocks == 0


def test_an_early_3320_after_record_added_is_not_yet_not_missing(setup, pbx):
    client, post, config = setup
    pbx.store_recording("rec-8", ready_in=1000)  # the PBX is slow today
    record_added(post, "call-8", "rec-8")
    link = path_of(recording_link(config.PUBLIC_BASE_URL, config.SECRET_KEY, "call-8"))
    age_recording(client, "call-8", 50)
    early = client.get(link)
    assert early.status_code == 503 and 100 <= int(early.headers["Retry-After"]) <= 130  # not 404
    assert [r[3] for r in pbx.commands("queries/recording/post")] == [3320]
    again = client.get(link)  # never asked again within 2 minutes
    assert again.status_code == 503 and len(pbx.commands("queries/recording/post")) == 1
    pbx.ready_at["rec-8"] = 0.0
    two_minutes_pass(client, pbx)
    age_recording(client, "call-8", 130)
    assert client.get(link).status_code == 302 and pbx.blocks == 0


def test_a_mail_only_recording_never_becomes_a_link(setup, pbx):
    client, post, config = setup
    post("events/recording", {**recording("call-4", "rec-4"), "recipient": "Mail"})
    response = client.get(path_of(recording_link(config.PUBLIC_BASE_URL, config.SECRET_KEY, "call-4")))
    assert response.status_code == 404 and "not ready" in response.json["error"]
    assert pbx.requests == []
    pbx.recordings.add("rec-5")
    post("events/recording", {**recording("call-5", "rec-5"), "recipient": "CloudAndMail"})
    assert client.get(path_of(recording_link(config.PUBLIC_BASE_URL, config.SECRET_KEY, "call-5"))).status_code == 302


def test_a_blocked_pbx_gives_503_with_retry_after_and_is_not_asked(setup, pbx):
    client, post, config = setup
    post("events/recording", recording("call-1", "rec-1"))
    pbx.blocked_until = pbx.now() + 120
    link = path_of(recording_link(config.PUBLIC_BASE_URL, config.SECRET_KEY, "call-1"))
    first = client.get(link)
    assert first.status_code == 503 and 100 <= int(first.headers["Retry-After"]) <= 130
    asked = len(pbx.requests)
    second = client.get(link)
    assert second.status_code == 503 and len(pbx.requests) == asked  # every process honours the block


def test_links_last_a_year_by_default():
    link = recording_link("https://qa.example", "k", "c", now=1000.0)
    exp = int(link.split("exp=")[1].split("&")[0])
    assert exp - 1000 == 365 * 24 * 3600
    sig = link.split("sig=")[1]
    assert link_is_valid("k", "c", str(exp), sig, now=1000.0)
    assert not link_is_valid("other-key", "c", str(exp), sig, now=1000.0)
