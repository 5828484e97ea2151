"""Recordings copied ahead for a target that downloads them (Bitrix24 fetches the file inside its own
attachRecord request): each file leaves the PBX once, at the PBX's pace; the portal's download is served
from the copy; the copy goes once nothing waits for it; a file the PBX lacks is never asked for again."""
from dataclasses import replace
from datetime import timedelta

from sqlalchemy import func, select

from connector.core.links import recording_link
from connector.core.metrics import RECORDING_COPIES
from connector.core.models import Call, RecordingCopy
from connector.inbound.mango.settings import NAME as PBX, settings_of as pbx_settings
from connector.inbound.recordings import SETTLING
from connector.wiring import build_recording_copier
from tests.conftest import MANGO_KEY, MANGO_SALT
from tests.delivery_helpers import connector_with_fake_amo
from tests.fakes.mango import FakeMango
from tests.test_bitrix24_target import PHONE, bitrix24
from tests.test_recording_links import record_added


def copier_of(p, **overrides):
    config = replace(p.app.extensions["connector"].config, **overrides)
    return build_recording_copier(config, p.db, [p.worker])


def copies(p) -> int:
    with p.db.transaction() as s:
        return s.scalar(select(func.count()).select_from(RecordingCopy))


def fetches(pbx) -> int:
    return len(pbx.commands("queries/recording/post"))


def test_each_file_leaves_the_pbx_once_and_the_portal_downloads_the_copy(db_url):
    pbx = FakeMango(MANGO_KEY, MANGO_SALT, recordings={"rec-call-1", "rec-call-2"})
    with bitrix24(db_url, pbx=pbx) as p:
        p.fake.add_contact(PHONE)
        p.scored_call("call-1")
        p.scored_call("call-2")
        copier = copier_of(p)
        assert copier.run_once() == 2 and copies(p) == 2 and fetches(pbx) == 2
        assert copier.run_once() == 0 and fetches(pbx) == 2  # copied once, never again
        p.drain()
        attached = [c for c in p.fake.calls.values() if c.get("record_attaches")]
        assert len(attached) == 2 and all(c["record_bytes"] == len(b"ID3fake-mp3") for c in attached)
        assert fetches(pbx) == 2  # the portal's downloads were served from the copies
        copier.run_once()
        assert copies(p) == 0  # delivered: nothing waits for them any more


def test_the_player_serves_a_copy_with_ranges_and_falls_back_to_the_pbx_after_it_goes(db_url):
    pbx = FakeMango(MANGO_KEY, MANGO_SALT, recordings={"rec-call-1"})
    with bitrix24(db_url, pbx=pbx) as p:
        p.scored_call("call-1")
        copier_of(p).run_once()
        config = p.app.extensions["connector"].config
        link = recording_link(config.PUBLIC_BASE_URL, config.SECRET_KEY, "call-1").removeprefix(p.url)
        whole = p.client.get(link)
        assert whole.status_code == 200 and whole.data == b"ID3fake-mp3" and whole.mimetype == "audio/mpeg"
        part = p.client.get(link, headers={"Range": "bytes=0-2"})
        assert part.status_code == 206 and part.data == b"ID3"  # a player seeks
        assert fetches(pbx) == 1
        with p.db.transaction() as s:
            s.execute(RecordingCopy.__table__.delete())
        assert p.client.get(link).status_code == 302 and fetches(pbx) == 2


def test_a_file_the_pbx_lacks_is_not_copied_and_not_asked_for_again(db_url):
    pbx = FakeMango(MANGO_KEY, MANGO_SALT, recordings=set())
    with bitrix24(db_url, pbx=pbx) as p:
        p.scored_call("call-1")
        copier = copier_of(p)
        before = RECORDING_COPIES.labels("missing")._value.get()
        assert copier.run_once() == 0 and fetches(pbx) == 1
        assert RECORDING_COPIES.labels("missing")._value.get() == before + 1
        with p.db.transaction() as s:
            call = s.scalars(select(Call).where(Call.entry_id == "call-1")).one()
            assert call.recording_unavailable_until is not None and call.recording_copy_tried_at is not None
            call.recording_unavailable_until -= timedelta(hours=1)  # long after: still tried only once
        assert copier.run_once() == 0 and fetches(pbx) == 1 and pbx.blocks == 0


def test_a_just_stored_file_is_copied_only_once_it_has_settled(db_url):
    """Right after record/added a fetch may still miss, and that miss would count towards MANGO's block:
    a copy is an optimisation and never risks it."""
    pbx = FakeMango(MANGO_KEY, MANGO_SALT, recordings={"rec-call-1"})
    with bitrix24(db_url, pbx=pbx) as p:
        p.scored_call("call-1")
        record_added(p.post, "call-1", "rec-call-1")
        copier = copier_of(p)
        assert copier.run_once() == 0 and fetches(pbx) == 0
        with p.db.transaction() as s:
            call = s.scalars(select(Call).where(Call.entry_id == "call-1")).one()
            call.recording_stored_at -= SETTLING
        assert copier.run_once() == 1 and fetches(pbx) == 1


def test_copies_stop_at_their_size_limit_and_the_rest_go_through_the_pbx_link(db_url):
    pbx = FakeMango(MANGO_KEY, MANGO_SALT, recordings={"rec-call-1", "rec-call-2"})
    with bitrix24(db_url, pbx=pbx) as p:
        p.fake.add_contact(PHONE)
        p.scored_call("call-1")
        copier = copier_of(p)
        copier.max_bytes = len(b"ID3fake-mp3")  # room for one file
        assert copier.run_once() == 1
        p.scored_call("call-2")
        before = RECORDING_COPIES.labels("over_limit")._value.get()
        assert copier.run_once() == 0 and copies(p) == 1
        assert RECORDING_COPIES.labels("over_limit")._value.get() == before + 1
        p.drain()
        assert sum(c.get("record_attaches", 0) for c in p.fake.calls.values()) == 2  # one through the PBX link


def test_no_copier_without_a_target_that_downloads_or_with_copies_off(db_url):
    with bitrix24(db_url) as p:
        assert copier_of(p) is not None
        assert copier_of(p, RECORDING_COPIES_MB=0) is None
    with connector_with_fake_amo(db_url) as h:  # amoCRM's notes carry the link; it never downloads
        config = h.app.extensions["connector"].config
        config = config.with_section(PBX, replace(pbx_settings(config), api_key=MANGO_KEY, api_salt=MANGO_SALT))
        assert build_recording_copier(config, h.db, [h.worker]) is None
