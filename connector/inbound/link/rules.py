"""The rating link's rules as pure functions: which calls qualify, when a request may be sent, the link's
token, and how the page's answer becomes a score on the connector's scale."""
from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from connector.core.models import RequestReason, SurveyState
from connector.core.policy import Policy
from connector.inbound.link.settings import TOKEN_LENGTH, LinkSettings, RatingScale

EXTERNAL = ("inbound", "outbound")


@dataclass(frozen=True)
class CallFacts:
    """What the rules read of a call."""

    direction: str | None
    talk_seconds: int | None
    customer_phone: str | None
    survey: str | None
    customer_score: int | None
    ended_at: datetime | None


def mobile_number(phone: str | None) -> str | None:
    """The number in the PBX's format (7 and ten digits) when it is a Russian mobile one (7 9xx...), else None.
    Other countries' numbers are not sent to: their formats and prices differ, and the PBX bills the SMS."""
    digits = "".join(ch for ch in phone or "" if ch.isdigit())
    if len(digits) == 11 and digits[0] in "78" and digits[1] == "9":
        return "7" + digits[1:]
    return None


def qualifies(call: CallFacts, settings: LinkSettings) -> bool:
    """An answered external call with a mobile number whose customer gave no score (or, with `also_scored`,
    any), once it ended. The survey settled (no answer, not offered) or never existed: an unanswered survey
    and a call on a line without one read alike."""
    if call.direction not in EXTERNAL or not call.talk_seconds or call.ended_at is None:
        return False
    if mobile_number(call.customer_phone) is None:
        return False
    if call.customer_score is not None or call.survey == SurveyState.ANSWERED:
        return settings.also_scored
    return True


def send_time(earliest: datetime, zone: ZoneInfo, settings: LinkSettings) -> datetime:
    """The first moment at or after `earliest` inside the sending hours, local to the account's zone: a
    request due at night waits for the morning."""
    local = earliest.astimezone(zone)
    opens = datetime.combine(local.date(), time(settings.send_from_hour), zone)
    if local < opens:
        return opens
    if settings.send_until_hour == 24 or local.hour < settings.send_until_hour:
        return earliest
    tomorrow = local.date() + timedelta(days=1)
    return datetime.combine(tomorrow, time(settings.send_from_hour), zone)


def expires_at(sent_at: datetime, ended_at: datetime, settings: LinkSettings, policy: Policy) -> datetime:
    """The link works `valid_days` after it is sent, and never past the rating window (the policy refuses a
    score after it anyway)."""
    until = sent_at + timedelta(days=settings.valid_days)
    if policy.rating_window_days:
        until = min(until, ended_at + timedelta(days=policy.rating_window_days))
    return until


def token_for(secret_key: str, request_id: int) -> str:
    """The link's token: 128 bits of an HMAC of the request's id, so a resend carries the same link and
    nothing secret is stored; base64url, TOKEN_LENGTH characters (every character costs in an SMS)."""
    digest = hmac.new(secret_key.encode(), f"rating-link:{request_id}".encode(), hashlib.sha256).digest()
    token = base64.urlsafe_b64encode(digest[:16]).decode().rstrip("=")
    assert len(token) == TOKEN_LENGTH
    return token


def token_hash(token: str) -> str:
    """What the database keeps of a token: its SHA-256, looked up by equality (a unique index)."""
    return hashlib.sha256(token.encode()).hexdigest()


def answers(scale: RatingScale, policy: Policy) -> tuple[int, ...]:
    """The values the page offers, worst first."""
    if scale == RatingScale.GOOD_BAD:
        return (0, 1)
    if scale == RatingScale.FIVE:
        return (1, 2, 3, 4, 5)
    return tuple(range(policy.scale_min, policy.scale_max + 1))


def score_of(scale: RatingScale, answer: int, policy: Policy) -> int:
    """The page's answer on the connector's scale: good/bad -> the maximum/minimum; 1..5 spread evenly over
    scale_min..scale_max and rounded half up (1..10: 1, 3, 6, 8, 10); the survey's scale as given. Raises
    ValueError for an answer the page does not offer."""
    if answer not in answers(scale, policy):
        raise ValueError(f"not an answer of the {scale.value} scale: {answer!r}")
    low, high = policy.scale_min, policy.scale_max
    if scale == RatingScale.GOOD_BAD:
        return high if answer else low
    if scale == RatingScale.FIVE:
        return int(low + (answer - 1) * (high - low) / 4 + 0.5)
    return answer


def failure_reason(code: int, *, carrier: bool = False) -> RequestReason:
    """A PBX result or a carrier's reason code that is not success, as a reason (PDF v1.9: result codes s.243;
    `result/sms`, `events/sms` §3.1.3). `carrier`: the code is a delivery report's reason."""
    if 2000 <= code < 3000:
        return RequestReason.BILLING
    if 3000 <= code < 4000:
        return RequestReason.REFUSED
    if code in (4391, 4392, 4393):
        return RequestReason.CARRIER_REFUSED
    if code in (4300, 4301):
        return RequestReason.NOT_DELIVERED if carrier else RequestReason.NOT_SENT
    return RequestReason.PBX_ERROR
