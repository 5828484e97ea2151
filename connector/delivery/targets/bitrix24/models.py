"""What only Bitrix24 keeps about its account, beside the shared row (`connector.core.models.Account`, same
name, which holds the portal's address, the `application_token` as its secret and the OAuth tokens): the
portal's `member_id`, the OAuth server that issues its tokens, and the registration of the connector's
ONAPPUNINSTALL handler (`install`)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, Session, mapped_column

from connector.core.accounts import own_row
from connector.core.models import Base, UTCDateTime


class Bitrix24Portal(Base):
    __tablename__ = "bitrix24_portals"

    account: Mapped[str] = mapped_column(String(16), primary_key=True)
    member_id: Mapped[str | None] = mapped_column(String(64))
    # The origin of the OAuth server that issues the portal's tokens (the install's and each refresh's
    # `server_endpoint`); None: BITRIX24_OAUTH_URL.
    oauth_server: Mapped[str | None] = mapped_column(String(255))
    # `event.bind` of ONAPPUNINSTALL by the worker after the install: when it was, else its failures, the last
    # reason and when it is tried again.
    events_bound_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    bind_failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    bind_error: Mapped[str | None] = mapped_column(String(255))
    bind_next_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


ACCOUNT = "bitrix24"  # the account's name: its shared row (tokens, portal address, pause) and this one


def portal_row(session: Session, *, lock: bool = False) -> Bitrix24Portal:
    return own_row(session, Bitrix24Portal, ACCOUNT, lock=lock, bind_failures=0)
