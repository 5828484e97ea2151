"""MANGO OFFICE as the registry knows it: its settings, its callbacks' parser, its command API and the key and
salt in force."""
from __future__ import annotations

from connector.core.db import Database
from connector.inbound.mango import callbacks
from connector.inbound.mango.api import MangoApi, MangoGuard, guard_state
from connector.inbound.mango.credentials import CredentialStore
from connector.inbound.mango.settings import NAME, PREFIX, MangoSettings, settings_of, validate
from connector.inbound.pbx import PbxKit


def build_credentials(config, db: Database) -> CredentialStore:
    """The PBX's key and salt in force: the console's once an admin saved them, else the environment's."""
    own = settings_of(config)
    return CredentialStore(db, own.api_key, own.api_salt, config.SECRET_KEY)


def build_commands(config, db: Database, *, session=None, credentials: CredentialStore | None = None) -> MangoApi:
    """The PBX's command API, shared by the recording player and the quality poller; it signs with the pair in
    force at each request."""
    own = settings_of(config)
    store = credentials or build_credentials(config, db)

    def pair() -> tuple[str, str]:
        current = store.current()
        return current.api_key, current.salt

    return MangoApi(own.api_url, own.api_key, own.api_salt, MangoGuard(db, own.rate_limit), session=session,
                    credentials=pair)


KIT = PbxKit(NAME, MangoSettings, PREFIX, validate, parse=callbacks.parse, build_credentials=build_credentials,
             build_commands=build_commands, guard_state=guard_state)
