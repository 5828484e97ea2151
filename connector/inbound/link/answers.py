"""The rating page's reads and writes: find a link's request by its token, note the first time it is opened,
and take the customer's answer as a customer score of origin `link`, through the same policy and targets as
any other score.

A link works from the moment its SMS left (a request still scheduled, skipped or queued is no link: not found)
until `expires_at`. Once rated the page shows the rating; with the policy's `lock_score` it cannot change, and
without it the customer may change it until the link expires (the newest score wins, as the policy says).
"""
from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from connector.core.models import Call, RatingRequest, RequestStatus, ScoreOrigin
from connector.core.policy import Policy, ScoreStatus, decide
from connector.core.runtime_settings import current_policies
from connector.core.time_zone import zone_in_force
from connector.inbound.ingest import IngestContext, add_customer_score, call_for_update, refresh_crm
from connector.inbound.link import contacts, settings as link_settings
from connector.inbound.link.contacts import ContactSource
from connector.inbound.link.rules import answers, score_of, token_hash
from connector.inbound.link.settings import TOKEN_LENGTH, RatingScale

TOKEN = re.compile(rf"^[A-Za-z0-9_-]{{{TOKEN_LENGTH}}}$")
NOT_SENT_YET = (RequestStatus.SCHEDULED, RequestStatus.SKIPPED, RequestStatus.QUEUED)
COMMENT_MAX = 500  # characters of the page's comment


def well_formed(token: str) -> bool:
    """Exactly TOKEN_LENGTH base64url characters: anything else is refused before the database is asked."""
    return bool(TOKEN.match(token))


def find(session: Session, token: str) -> RatingRequest | None:
    """The request this link's token names, or None: a malformed token, an unknown one, or a request whose
    SMS has not left yet (nobody can hold its link, so it reads as unknown)."""
    if not well_formed(token):
        return None
    request = session.scalars(select(RatingRequest).where(RatingRequest.token_hash == token_hash(token))).first()
    if request is None or request.status in NOT_SENT_YET:
        return None
    return request


def expired(request: RatingRequest, now: datetime) -> bool:
    return now >= request.expires_at


def open_page(session: Session, request: RatingRequest, now: datetime) -> bool:
    """Note the first time the page is opened (the requests' funnel counts it); False when it was before.
    One conditional UPDATE, so two first opens at once stamp it once."""
    if request.opened_at is not None:
        return False
    stamped = session.execute(update(RatingRequest)
                              .where(RatingRequest.id == request.id, RatingRequest.opened_at.is_(None))
                              .values(opened_at=now)).rowcount
    return stamped == 1


@dataclass(frozen=True)
class RatingPage:
    """What the page shows: the company, the call's local date, the scale, and the rating given (if any).
    Nothing else of the call: not the number, not the operator."""

    company: str  # empty: the page says "our company" in its language
    call_date: date | None  # in the account's time zone
    scale: RatingScale
    offered: tuple[int, ...]  # the answers, worst first
    rating: int | None  # as given on the page's scale
    comment: str | None
    expired: bool
    locked: bool  # the policy's lock: a rating given cannot change
    do_not_contact: bool  # the number is on the do-not-contact list

    @property
    def rated(self) -> bool:
        return self.rating is not None

    @property
    def can_change(self) -> bool:
        return not self.expired and (not self.rated or not self.locked)


def page_for(session: Session, initial_policy: Policy, request: RatingRequest, default_zone: str,
             now: datetime) -> RatingPage:
    call = session.get(Call, request.call_row)
    settings = link_settings.read(session)[0].for_line(request.line_number)
    policy = current_policies(session, initial_policy).for_line(call.line_number)
    scale = RatingScale(request.scale or settings.scale)
    moment = call.ended_at or call.created_at
    zone = zone_in_force(session, default_zone).zone
    listed = contacts.is_listed(session, request.number)
    return RatingPage(company=settings.company, call_date=moment.astimezone(zone).date() if moment else None,
                      scale=scale, offered=answers(scale, policy), rating=request.rating, comment=request.comment,
                      expired=expired(request, now), locked=policy.lock_score, do_not_contact=listed)


class Rated(enum.StrEnum):
    """What became of an answer posted on the page."""

    RATED = "rated"  # the first rating: a customer score went in, and to the targets as the policy says
    CHANGED = "changed"  # a different rating replaced the one given (no lock)
    UNCHANGED = "unchanged"  # the rating (and comment) given already: nothing new
    LOCKED = "locked"  # a different rating with the lock on: nothing changed
    EXPIRED = "expired"  # the link, or the policy's rating window, has closed: nothing changed
    NOT_OFFERED = "not_offered"  # an answer the page's scale does not offer, or none at all: nothing written
    OPTED_OUT = "opted_out"  # no answer, only the wish not to be contacted: the number listed, nothing rated


@dataclass(frozen=True)
class RateOutcome:
    result: Rated
    rating: int | None  # the rating in force on the page's scale after it (None: none given)
    do_not_contact: bool = False  # the number is now on the do-not-contact list


def rate(session: Session, ctx: IngestContext, request: RatingRequest, answer: int | None, comment: str | None,
         do_not_contact: bool, now: datetime) -> RateOutcome:
    """Take the customer's answer (validated as a form by the face: an integer or None, a storable comment of at
    most COMMENT_MAX characters). The call's row is locked first, as ingest does, so two answers at once are
    taken one after the other. A wish not to be contacted is kept whenever the link works, even when the rating
    itself cannot change, and even with no answer at all (OPTED_OUT: nothing is rated, the comment is not
    kept, since a comment belongs to a rating): it is the customer's to make. No answer and no such wish is
    NOT_OFFERED."""
    call = call_for_update(session, session.get(Call, request.call_row).entry_id)
    request = session.scalars(select(RatingRequest).where(RatingRequest.id == request.id).with_for_update()
                              .execution_options(populate_existing=True)).one()
    if expired(request, now):
        return RateOutcome(Rated.EXPIRED, request.rating)
    if answer is None:
        if not do_not_contact:
            return RateOutcome(Rated.NOT_OFFERED, request.rating)
        return RateOutcome(Rated.OPTED_OUT, request.rating, _keep_do_not_contact(session, request.number))
    settings = link_settings.read(session)[0].for_line(request.line_number)
    policies = current_policies(session, ctx.initial_policy)
    policy = policies.for_line(call.line_number)
    try:
        score = score_of(RatingScale(request.scale or settings.scale), answer, policy)
    except ValueError:
        return RateOutcome(Rated.NOT_OFFERED, request.rating)
    comment = comment or None
    if request.rated_at is not None and (request.rating, request.comment) == (answer, comment):
        result = Rated.UNCHANGED
    elif request.rated_at is not None and policy.lock_score:
        result = Rated.LOCKED
    elif decide(policy, score, previous=call.customer_score, rated_at=now,
                call_ended_at=call.ended_at).status == ScoreStatus.REFUSED:
        return RateOutcome(Rated.EXPIRED, request.rating)  # past the policy's rating window: keep nothing
    else:
        result = Rated.CHANGED if request.rated_at is not None else Rated.RATED
        add_customer_score(session, call, policy, score, origin=ScoreOrigin.LINK, rated_at=now, comment=comment,
                           follow_up_hours=ctx.follow_up_hours)
        refresh_crm(session, ctx, call, policies)
        request.rating, request.comment, request.rated_at = answer, comment, now
    listed = _keep_do_not_contact(session, request.number) if do_not_contact else False
    return RateOutcome(result, request.rating, listed)


def _keep_do_not_contact(session: Session, number: str) -> bool:
    """Put the number on the do-not-contact list (audited as the customer's wish); one already there (an
    admin's, say) is left as it is. False only for a number the list cannot hold."""
    try:
        contacts.add(session, number, ContactSource.CUSTOMER, None)
    except ValueError:
        return False
    return True
