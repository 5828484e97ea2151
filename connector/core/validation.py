"""Input rules shared by every face: one-line error text, JSON that cannot exhaust the stack,
strings and numbers that fit the database exactly as sent."""
from __future__ import annotations

import enum
import json
import numbers
import re
from datetime import datetime, timezone
from string import Formatter

from marshmallow import ValidationError, fields

from connector.core.quick_load import QuickField, Unsure

INT32_MAX = 2**31 - 1


def first_error(messages) -> str:
    """marshmallow's nested messages -> 'to.extension: Not a valid string.'"""
    path = []
    while isinstance(messages, dict):
        key, messages = next(iter(messages.items()))
        path.append(str(key))
    text = messages[0] if isinstance(messages, list) and messages else str(messages)
    return f"{'.'.join(path)}: {text}" if path else str(text)


def _json_number(text: str) -> int | float:
    """A JSON number with a fraction or an exponent: an integer when it is one (7.0, 1e3), as JSON Schema's
    `integer` reads it; floats past 2**53 stay floats (no exact integer there)."""
    value = float(text)
    return int(value) if value.is_integer() and abs(value) <= 2**53 else value


def parse_json(text: str, *, json_integers: bool = False) -> object:
    """json.loads that reports too-deep nesting as invalid JSON (ValueError), never RecursionError. With
    `json_integers` (the JSON API, which an OpenAPI document describes), 7.0 and 1e3 are the integers 7 and
    1000."""
    try:
        return json.loads(text, parse_float=_json_number if json_integers else None)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


# Characters no stored text may hold (Unicode's "Cc" controls: C0, DEL, C1). They never belong in a PBX
# identifier, a number, an extension or a comment, and a C0 control in a spreadsheet cell made the whole
# export fail. Multi-line text (comments) keeps tab, line feed and carriage return.
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
CONTROL_IN_LINES = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def text_problem(text: str, *, multiline: bool = False) -> str | None:
    """Why a string cannot be stored as it is, or None: one rule for every surface (the PBX's callbacks,
    the score API, reviews through the API and the console). PostgreSQL refuses NUL; UTF-8 (both
    databases) refuses lone surrogates such as "\\ud800", which JSON escapes can carry; control
    characters are refused everywhere, except tab and line breaks in `multiline` text."""
    if "\x00" in text:
        return "must not contain NUL characters"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "must be valid Unicode text (no lone surrogates)"
    control = (CONTROL_IN_LINES if multiline else CONTROL).search(text)
    if control:
        return f"must not contain control characters (U+{ord(control.group()):04X})"
    return None


LINE_MAX = 32  # calls.line_number


class TemplateFault(enum.Enum):
    """What is wrong with a `str.format` template a person wrote (a tag, a score text, an SMS)."""

    UNBALANCED = "unbalanced"  # a brace without its pair
    NOT_PLAIN = "not_plain"  # another placeholder, or `{x.y}`, `{x[0]}`, `{x!r}`, `{x:>300}`: they fail, reach
    # into objects or pad the text
    MISSING = "missing"  # the placeholder it must show is not there (`{{x}}` shows braces, not x)


def template_fault(template: str, allowed: tuple[str, ...], required: str) -> TemplateFault | None:
    """Whether a template uses only plain placeholders among `allowed`, `required` among them (its text is
    checked by `text_problem` first)."""
    try:
        parts = list(Formatter().parse(template))
    except ValueError:
        return TemplateFault.UNBALANCED
    placeholders = [(name, spec, conversion) for _, name, spec, conversion in parts if name is not None]
    if any(name not in allowed or spec or conversion for name, spec, conversion in placeholders):
        return TemplateFault.NOT_PLAIN
    if required not in {name for name, _, _ in placeholders}:
        return TemplateFault.MISSING
    return None


def line_problem(line: str) -> str | None:
    """Why a string is no PBX line name, or None: one rule wherever a line comes from or is named (the PBX's
    callbacks, list and report filters, the settings API, the console's line form), so any line a call
    carries can be filtered and configured, and no name can be configured that a call could never carry."""
    if not line.strip():
        return "a line number has 1 to 32 characters, not only spaces"
    if len(line) > LINE_MAX:
        return f"a line number has at most {LINE_MAX} characters"
    return text_problem(line)


# The same rules as JSON Schema patterns, for the OpenAPI document (ECMA-262 and Python read them alike;
# tests/unit/test_patterns.py checks that each admits exactly what its *_problem function admits). A pattern
# cannot name lone surrogates (JSON Schema tools refuse such a pattern): the document says it in words.
_CONTROL_CLASS = r"\x00-\x1f\x7f-\x9f"
_CONTROL_IN_LINES_CLASS = r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"
# The characters str.isspace() (and so str.strip()) counts as white space, less the controls above.
_SPACE_CLASS = r" \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
TEXT_PATTERN = rf"^[^{_CONTROL_CLASS}]*$"
LINES_PATTERN = rf"^[^{_CONTROL_IN_LINES_CLASS}]*$"


def _line_pattern(also_excluded: str = "") -> str:
    allowed = f"[^{_CONTROL_CLASS}{also_excluded}]"
    return rf"^{allowed}*[^{_CONTROL_CLASS}{also_excluded}{_SPACE_CLASS}]{allowed}*$"


LINE_PATTERN = _line_pattern()
LINE_PATH_PATTERN = _line_pattern("/")  # a line named in a URL's path: a `/` would end the segment


class Rule:
    """A marshmallow validator for one of the rules above, which also tells the OpenAPI document the JSON
    Schema keywords that state it (`schema`)."""

    def __init__(self, problem, schema: dict):
        self.problem, self.schema = problem, schema

    def __call__(self, value) -> None:
        problem = self.problem(value) if value is not None else None
        if problem:
            raise ValidationError(problem)

    def quick_check(self, value) -> bool:
        """The same rule for the quick path (connector.core.quick_load): True where it raises nothing."""
        return value is None or self.problem(value) is None


TEXT_DESCRIPTION = "Unicode text (no lone surrogates) without control characters"
# A line's name (None: no line).
valid_line = Rule(line_problem, {"minLength": 1, "maxLength": LINE_MAX, "pattern": LINE_PATTERN,
                                 "description": f"1 to {LINE_MAX} characters, not only white space; "
                                                + TEXT_DESCRIPTION})
# One line of text.
storable_text = Rule(text_problem, {"pattern": TEXT_PATTERN})
# Multi-line text (a comment): tab and line breaks allowed.
storable_lines = Rule(lambda text: text_problem(text, multiline=True), {"pattern": LINES_PATTERN})


class StrictInteger(QuickField, fields.Integer):
    """An integer as sent: 1.5, "7", 1e3 and true are refused, not coerced (the JSON API parses 7.0 and 1e3
    as the integers they are: parse_json's `json_integers`)."""

    def quick(self, value):
        if type(value) is not int:  # bool, float and the rest: the schema decides
            raise Unsure
        return value

    def _validated(self, value):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise self.make_error("invalid")
        return super()._validated(value)


class AwareUtcDateTime(fields.AwareDateTime):
    """An ISO 8601 date-time (UTC when no offset; RFC 3339's lower-case `t` and `z` too) that exists in UTC:
    0001-01-01T00:00:00+01:00 and 9999-12-31T23:59:59-01:00 parse, but fall outside the years a datetime
    holds in UTC. Those are refused, or with `clamp` (a filter's bound) taken as the earliest or latest
    moment there is, which selects exactly what they would."""

    def __init__(self, *, clamp: bool = False, **kwargs):
        super().__init__(default_timezone=timezone.utc, **kwargs)
        self.clamp = clamp

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str):
            value = value.replace("t", "T").replace("z", "Z")
        moment = super()._deserialize(value, attr, data, **kwargs)
        try:
            return moment.astimezone(timezone.utc)
        except OverflowError:
            if self.clamp:
                return (datetime.min if moment.year == 1 else datetime.max).replace(tzinfo=timezone.utc)
            raise ValidationError("date out of range in UTC") from None
