"""The rating link's settings: what an admin sets on the settings page (or the settings API), kept in the
runtime settings' `rating_link` scope, audited. Until an admin saves them the channel is off.

Pure checks first (`validate`, `sms_length_problem`), then the storage (`read`, `save`)."""
from __future__ import annotations

import enum
import re
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime, timezone

from sqlalchemy.orm import Session

from connector.core.policy import PolicyConflict, PolicyError
from connector.core.runtime_settings import scope_values, update_scope
from connector.core.validation import TemplateFault, template_fault, text_problem

SCOPE = "rating_link"
TOKEN_LENGTH = 22  # the link's token: 16 random-looking bytes, base64url without padding (128 bits)
LINK_PATH = "/r/"
# MANGO's SMS command: at most 268 Cyrillic (UCS-2) or 612 Latin (GSM 7-bit) characters, four segments
# (PDF v1.9 §3.2.4, "SMS").
LIMIT_CYRILLIC, LIMIT_LATIN = 268, 612
OPERATOR_SHOWN = 40  # {operator} is cut to this many characters, so a saved template always fits
DATE_SHOWN = len("27.11.2026")
PLACEHOLDERS = ("link", "operator", "date")
MISSING_LINK = "the text must contain {link}"
EXTENSION = re.compile(r"[0-9]{1,16}")  # ASCII digits: \d would admit other scripts' digits
LINE = re.compile(r"[0-9]{1,32}")  # a line the channel is set for: the PBX number in digits
# The template as the OpenAPI document states it: text without control characters where a brace is doubled or
# part of a plain placeholder, {link} among them. It admits exactly what `template_syntax_problem` admits.
_TEMPLATE_TEXT = r"(?:[^{}\x00-\x1f\x7f-\x9f]|\{\{|\}\}|\{(?:link|operator|date):?\})"
TEMPLATE_PATTERN = rf"^{_TEMPLATE_TEXT}*\{{link:?\}}{_TEMPLATE_TEXT}*$"
# MANGO: "only the account's default name, an industry name available to the account, or an approved unique
# name" (PDF §3.2.4): letters, digits, spaces and a few signs, at most 11 characters as carriers allow.
SENDER = re.compile(r"^[A-Za-z0-9 ._-]{1,11}$")


class RatingScale(enum.StrEnum):
    """What the page asks, and how an answer maps onto the connector's scale (`rules.score_of`)."""

    GOOD_BAD = "good_bad"  # good: the scale's maximum; bad: its minimum
    FIVE = "five"  # 1..5 spread evenly over the scale (1: its minimum, 5: its maximum), rounded
    SURVEY = "survey"  # the survey's own scale (scale_min..scale_max), as given


@dataclass(frozen=True)
class LinkSettings:
    enabled: bool = False
    delay_minutes: int = 120  # after the call ended
    send_from_hour: int = 9  # local hours (the account's time zone) a request may be sent in: [from, until)
    send_until_hour: int = 21
    also_scored: bool = False  # also calls that have a customer score (a second opinion)
    daily_cap: int = 1  # requests a day to one number
    valid_days: int = 7  # the link works this long after it is sent (and never past the rating window)
    scale: str = RatingScale.GOOD_BAD.value
    template: str = "Оцените, пожалуйста, разговор с нами {date}: {link}"
    from_extension: str = ""  # billed when the call's operator has no extension
    sms_sender: str = ""  # empty: the account's default sender name
    company: str = ""  # the name the page shows
    lines: dict = field(default_factory=dict)  # line number -> {"enabled": bool}

    @property
    def on_anywhere(self) -> bool:
        """On globally or on a line at least."""
        return self.enabled or any(line.get("enabled") for line in self.lines.values())

    def for_line(self, line: str | None) -> "LinkSettings":
        override = self.lines.get(line or "")
        return replace(self, **override) if override else self

    def as_dict(self) -> dict:
        return asdict(self)


RANGES = {"delay_minutes": (0, 7 * 24 * 60), "send_from_hour": (0, 23), "send_until_hour": (1, 24),
          "daily_cap": (1, 10), "valid_days": (1, 90)}
TEXTS = {"template": 612, "from_extension": 16, "sms_sender": 11, "company": 80}
_TYPES = {f.name: f.type for f in fields(LinkSettings)}


def sms_limit(text: str) -> int:
    """The SMS command's limit for this text: Latin-only text goes in 7-bit characters, anything else in UCS-2."""
    return LIMIT_LATIN if all(ord(ch) < 128 for ch in text) else LIMIT_CYRILLIC


def template_syntax_problem(template: str) -> str | None:
    """Why a template is unusable whatever the link, or None. Only plain placeholders: `{link.x}`, `{link[0]}`,
    `{link!r}` or `{link:>300}` would fail, reach into objects or pad the SMS, and `{{link}}` shows no link."""
    problem = text_problem(template)
    if problem:
        return problem
    named = ", ".join("{" + p + "}" for p in PLACEHOLDERS)
    return {TemplateFault.UNBALANCED: f"use only the placeholders {named} (unbalanced braces)",
            TemplateFault.NOT_PLAIN: f"use only the plain placeholders {named}",
            TemplateFault.MISSING: MISSING_LINK}.get(template_fault(template, PLACEHOLDERS, "link"))


def sms_length_problem(template: str, public_base_url: str) -> str | None:
    """Why the longest text this template can make does not fit one SMS command (None when it does): the link
    in full, the operator's name cut to OPERATOR_SHOWN, the date as DD.MM.YYYY."""
    problem = template_syntax_problem(template)
    if problem:
        return problem
    length, limit = longest_sms(template, public_base_url)
    if length > limit:
        return (f"the text can reach {length} characters with the link and the longest name and date; "
                f"an SMS takes at most {limit} ({'Latin' if limit == LIMIT_LATIN else 'with Cyrillic'})")
    return None


def longest_sms(template: str, public_base_url: str) -> tuple[int, int]:
    """(the longest text a well-formed template makes, the SMS command's limit for it): a page says both."""
    longest = template.format(link=public_base_url.rstrip("/") + LINK_PATH + "x" * TOKEN_LENGTH,
                              operator="Я" * OPERATOR_SHOWN if not template.isascii() else "W" * OPERATOR_SHOWN,
                              date="0" * DATE_SHOWN)
    return len(longest), sms_limit(longest)


def validate(settings: LinkSettings, public_base_url: str) -> LinkSettings:
    """The settings unchanged, or PolicyError naming the first field that is wrong."""
    for name, kind in _TYPES.items():
        value = getattr(settings, name)
        expected = {"bool": bool, "int": int, "str": str, "dict": dict}[str(kind)]
        if type(value) is not expected:
            raise PolicyError(name, f"expected {expected.__name__}, got {value!r}"[:200])
    for name, (low, high) in RANGES.items():
        if not low <= getattr(settings, name) <= high:
            raise PolicyError(name, f"must be {low} to {high}, got {getattr(settings, name)}")
    if settings.scale not in tuple(RatingScale):
        raise PolicyError("scale", f"must be one of {', '.join(RatingScale)}, got {settings.scale!r}"[:200])
    for name, longest in TEXTS.items():
        value = getattr(settings, name)
        if len(value) > longest or text_problem(value):
            raise PolicyError(name, f"at most {longest} characters, no control characters")
    if settings.from_extension and not EXTENSION.fullmatch(settings.from_extension):
        raise PolicyError("from_extension", "an employee's extension: digits only")
    if settings.sms_sender and not SENDER.fullmatch(settings.sms_sender):
        raise PolicyError("sms_sender", "a sender name the account has: Latin letters, digits, spaces, . _ -, "
                                        "at most 11")
    problem = template_syntax_problem(settings.template)
    if problem:
        raise PolicyError("template", problem)
    for line, override in settings.lines.items():
        if not (isinstance(line, str) and LINE.fullmatch(line)):
            raise PolicyError("lines", f"a line is the PBX number in digits, got {line!r}"[:200])
        if not (isinstance(override, dict) and set(override) == {"enabled"} and type(override["enabled"]) is bool):
            raise PolicyError("lines", 'a line may override only "enabled" (true or false)')
    # Values that are valid on their own but not together, or not with the link's address in force (409 in
    # the API, as the policy's conflicts).
    if settings.send_from_hour >= settings.send_until_hour:
        raise PolicyConflict("send_until_hour", "the sending hours must end after they begin")
    problem = sms_length_problem(settings.template, public_base_url)
    if problem:
        raise PolicyConflict("template", problem)
    return settings


def with_changes(settings: LinkSettings, changes: dict) -> LinkSettings:
    unknown = sorted(set(changes) - set(_TYPES))
    if unknown:
        raise PolicyError(unknown[0], "not a setting of the rating link")
    return replace(settings, **changes)


# --- storage ------------------------------------------------------------------------------------

def read(session: Session) -> tuple[LinkSettings, datetime | None]:
    """The settings in force and when an admin saved them (defaults, the channel off, until then)."""
    values, saved_at = scope_values(session, SCOPE)
    known = {k: v for k, v in values.items() if k in _TYPES}
    return LinkSettings(**known), saved_at


ON_SINCE = "on_since"  # kept beside the settings: when the channel last went from off to on (ISO, UTC)


def save(session: Session, changes: dict, public_base_url: str, actor: str, *,
         now: datetime | None = None) -> LinkSettings:
    """Validate the changes against the settings in force and store them, audited (PolicyError: nothing stored).
    Turning the channel on notes when: calls that ended before are never asked about (`on_since`)."""
    current, _ = read(session)
    settings = validate(with_changes(current, changes), public_base_url)
    stored = settings.as_dict()
    if settings.on_anywhere and not current.on_anywhere:
        stored[ON_SINCE] = (now or datetime.now(timezone.utc)).isoformat()
    update_scope(session, SCOPE, stored, actor)
    return settings


def on_since(session: Session) -> datetime | None:
    """When the channel was last turned on (None: never, or before this was kept)."""
    values, _ = scope_values(session, SCOPE)
    return datetime.fromisoformat(values[ON_SINCE]) if values.get(ON_SINCE) else None
