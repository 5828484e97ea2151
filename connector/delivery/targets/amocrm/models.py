"""What only amoCRM keeps about its account, beside the shared row (`connector.core.models.Account`, same
name, which holds the OAuth tokens): the connection an admin made in the console and an authorization waiting
for amoCRM's redirect back (`connection`)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, Session, mapped_column

from connector.core.accounts import own_row
from connector.core.models import Base, UTCDateTime


class AmocrmConnection(Base):
    __tablename__ = "amocrm_connections"

    account: Mapped[str] = mapped_column(String(16), primary_key=True)
    # The connection (JSON, encrypted with the accounts' token key) and when it was saved.
    connection_enc: Mapped[str | None] = mapped_column(Text)
    saved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Its state's hash, the admin's session, an expiry and the keys entered (JSON, encrypted).
    pending_enc: Mapped[str | None] = mapped_column(Text)


def connection_row(session: Session, account: str, *, lock: bool = False) -> AmocrmConnection:
    return own_row(session, AmocrmConnection, account, lock=lock)
