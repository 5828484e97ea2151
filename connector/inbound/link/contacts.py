"""The do-not-contact list: numbers no rating request goes to. An admin adds and removes them (the console, the
settings API); a customer adds their own on the rating page. Every change is audited like a setting
(`settings_audit`, scope `do_not_contact`). Numbers are kept as the PBX writes them: 7 and ten digits."""
from __future__ import annotations

import enum
import re

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from connector.core.models import DoNotContact, SettingsAudit

SCOPE = "do_not_contact"
CUSTOMER_ACTOR = "rating_page"  # the audit's actor when a customer asked on the rating page (they have no login)
# A number as the API takes it: digits with an optional "+", Russian (+7 or 8 and ten digits).
NUMBER_PATTERN = r"^(\+7|7|8)[0-9]{10}$"
# What people put between digits: "+7 (916) 123-45-67", "8.916.123.45.67".
_WRITTEN = re.compile(r"(\+7|7|8)[0-9]{10}")
_SEPARATORS = str.maketrans("", "", " -().\u00a0")


class ContactSource(enum.StrEnum):
    """Who put a number on the list (`do_not_contact.source`)."""

    ADMIN = "admin"  # an admin, in the console or through the API
    CUSTOMER = "customer"  # the customer, with "do not contact me again" on the rating page


def normalised(number: object) -> str | None:
    """A Russian number as the list keeps it (7 and ten digits) from the ways people write one: "+7 916 123-45-67",
    "8 (916) 123 45 67", "79161234567". None for anything else: the channel sends only to Russian numbers."""
    if not isinstance(number, str) or len(number) > 32:
        return None
    written = number.strip().translate(_SEPARATORS)
    if not _WRITTEN.fullmatch(written):
        return None
    return "7" + written.lstrip("+")[1:]


def is_listed(session: Session, number: str | None) -> bool:
    """Whether a number, written any way `normalised` reads, is on the list (a number it cannot read is not)."""
    key = normalised(number)
    return key is not None and session.get(DoNotContact, key) is not None


def listed(session: Session, limit: int | None = None) -> list[DoNotContact]:
    """The list, the newest first (`limit`: that many of them)."""
    query = select(DoNotContact).order_by(DoNotContact.added_at.desc(), DoNotContact.number)
    return list(session.scalars(query.limit(limit) if limit else query))


def count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(DoNotContact)) or 0


def add(session: Session, number: str, source: ContactSource | str, actor: str | None) -> bool:
    """Put a number on the list; False when it was already there (nothing changes, no second row). Raises
    ValueError when `number` is not a Russian number. `actor`: the admin's login (None for a customer)."""
    key = normalised(number)
    if key is None:
        raise ValueError("not a Russian phone number: +7 or 8 and ten digits")
    source = ContactSource(source)
    if session.get(DoNotContact, key) is not None:
        return False
    try:
        with session.begin_nested():  # a concurrent add of the same number wins; ours is then the repeat
            session.add(DoNotContact(number=key, source=source.value, actor=actor))
    except IntegrityError:
        return False
    session.add(SettingsAudit(scope=SCOPE, actor=actor or CUSTOMER_ACTOR, before={},
                              after={"number": key, "source": source.value}))
    return True


def remove(session: Session, number: str, actor: str) -> bool:
    """Take a number off the list (audited); False when it was not on it (or is no number)."""
    key = normalised(number)
    row = session.get(DoNotContact, key, with_for_update=True) if key else None
    if row is None:
        return False
    session.add(SettingsAudit(scope=SCOPE, actor=actor, before={"number": row.number, "source": row.source},
                              after={}))
    session.delete(row)
    return True
