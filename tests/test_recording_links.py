"""Signed recording links: the CRM keeps ours; each play gets a fresh single-use PBX link."""
import time

import pytest
import requests

from app import create_app
from connector.links import link_is_valid, recording_link
from tests.conftest import MANGO_KEY, MANGO_SALT, MangoPoster, make_config, recording
from tests.fakes.mango import create_fake_mango
from tests.fakes.server import serving


@pytest.fixture
def setup(db_url):
    with serving(create_fake_mango(MANGO_KEY, MANGO_SALT, {"rec-1"})) as pbx_url:
        config = make_config(db_url, MANGO_API_URL=pbx_url + "/vpbx/", PUBLIC_BASE_URL="https://qa.example")
        app = create_app(config)
        yield app.test_client(), MangoPoster(app.test_client()), config
        app.extensions["connector"].db.dispose()


def path_of(link: str) -> str:
    return link.removeprefix("https://qa.example")


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
    assert response.status_code == 404 and "3300" in response.json["error"]


def test_links_last_a_year_by_default():
    link = recording_link("https://qa.example", "k", "c", now=1000.0)
    exp = int(link.split("exp=")[1].split("&")[0])
    assert exp - 1000 == 365 * 24 * 3600
    sig = link.split("sig=")[1]
    assert link_is_valid("k", "c", str(exp), sig, now=1000.0)
    assert not link_is_valid("other-key", "c", str(exp), sig, now=1000.0)
