"""What only MANGO keeps about its account, beside the shared row (`connector.core.models.Account`, same name):
the guard every process obeys (`api.MangoGuard`) and the API key and salt an admin entered (`credentials`)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Float, String, Text
from sqlalchemy.orm import Mapped, Session, mapped_column

from connector.core.accounts import own_row
from connector.core.models import Base, UTCDateTime


class MangoAccount(Base):
    __tablename__ = "mango_accounts"

    account: Mapped[str] = mapped_column(String(16), primary_key=True)
    # Its API is blocked for every process until then (it answered 401).
    blocked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When it last answered a wrong request (3xxx); a second within 2 minutes blocks the account.
    strike_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # One request that may fail is in flight (unix time its lease ends), so two cannot strike at once.
    probe_until: Mapped[float] = mapped_column(Float, default=0.0)
    # The key and salt an admin entered in the console (encrypted with the accounts' token key); they win
    # over the environment's once saved.
    api_key_enc: Mapped[str | None] = mapped_column(Text)
    api_salt_enc: Mapped[str | None] = mapped_column(Text)
    credentials_saved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


ACCOUNT = "mango"  # the PBX account's name: its shared row (rate slot) and this one


def mango_row(session: Session, *, lock: bool = False) -> MangoAccount:
    return own_row(session, MangoAccount, ACCOUNT, lock=lock, probe_until=0.0)
