"""The patterns the OpenAPI document states admit exactly what the API admits: each, read by Python and by
an ECMA-262 engine (as JSON Schema tools read it), agrees with the function the API checks with."""
import re

import jsonschema_rs
import pytest
from hypothesis import given, settings, strategies as st

from connector.core.calls import CURSOR_PATTERN, Cursor
from connector.core.policy import TEMPLATE_PATTERN, template_syntax_problem
from connector.core.validation import (LINE_MAX, LINE_PATH_PATTERN, LINE_PATTERN, LINES_PATTERN, TEXT_PATTERN,
                                  line_problem, text_problem)

# Characters at the edges of the rules (controls, white space, braces, digits), and any others.
EDGES = "\x00\x08\t\n\x0b\x0c\r\x1f \x7f\x85\x9f\xa0\u1680\u2028\u3000\ufeff{}score:_-/0123456789"
texts = st.text(st.sampled_from(EDGES) | st.characters(exclude_categories=["Cs"]), max_size=40)
templates = st.lists(st.sampled_from(["{score}", "{score:}", "{{", "}}", "{", "}", "{score!r}", "{0}", "x", " ",
                                      "\x1f", "é"]), max_size=6).map("".join)
cursors = st.lists(st.sampled_from(["-", "_", "0", "1", "9", "12345", "999999999", "9999999999", "x", " "]),
                   max_size=8).map("".join)


def admits(pattern: str, max_length: int | None = None):
    """Whether `pattern` (and maxLength) admit a string, by Python and by the ECMA engine, which must agree."""
    python = re.compile(pattern.removeprefix("^").removesuffix("$"))
    schema = {"type": "string", "pattern": pattern}
    if max_length is not None:
        schema["maxLength"] = max_length
    ecma = jsonschema_rs.validator_for(schema)

    def check(text: str) -> bool:
        by_python = python.fullmatch(text) is not None and (max_length is None or len(text) <= max_length)
        assert ecma.is_valid(text) == by_python, text
        return by_python

    return check


def cursor_problem(text: str) -> str | None:
    try:
        Cursor.decode(text)
    except ValueError as exc:
        return str(exc)
    return None


RULES = [
    (TEXT_PATTERN, None, texts, text_problem),
    (LINES_PATTERN, None, texts, lambda text: text_problem(text, multiline=True)),
    (LINE_PATTERN, LINE_MAX, texts, line_problem),
    (LINE_PATH_PATTERN, LINE_MAX, texts, lambda text: line_problem(text) or ("/" in text and "slash") or None),
    (TEMPLATE_PATTERN, None, texts | templates, template_syntax_problem),
    (CURSOR_PATTERN, None, texts | cursors, cursor_problem),
]


@pytest.mark.parametrize("pattern, max_length, strings, problem", RULES)
def test_a_pattern_admits_what_the_api_admits(pattern, max_length, strings, problem):
    check = admits(pattern, max_length)

    @settings(max_examples=300, derandomize=True)
    @given(strings)
    def agree(text):
        assert check(text) == (problem(text) is None), text

    agree()


@pytest.mark.parametrize("text, admitted", [
    ("Оценка {score}", True), ("{{{score}}}", True), ("{score:}", True), ("{{score}}", False), ("{score", False),
    ("{score!r}", False), ("{0}{score}", False), ("x\x1f{score}", False),
])
def test_template_examples(text, admitted):
    assert admits(TEMPLATE_PATTERN)(text) is admitted and (template_syntax_problem(text) is None) is admitted


@pytest.mark.parametrize("text, admitted", [
    ("1763800000000000_42", True), ("7_1763800000000000_42", True), ("-5_-1_0", True), ("1_2_3_4", False),
    ("1_1\n", False), ("9999999999_1_1", False), ("1_9999999999999999999", False), ("", False),
])
def test_cursor_examples(text, admitted):
    assert admits(CURSOR_PATTERN)(text) is admitted and (cursor_problem(text) is None) is admitted


def test_a_cursor_the_api_hands_out_is_read_back_as_it_was():
    from datetime import datetime, timezone

    for moment in (datetime(2026, 11, 22, 10, 0, 0, 123456, timezone.utc), datetime(1, 1, 1, tzinfo=timezone.utc),
                   datetime(9999, 12, 31, 23, 59, 59, 999999, timezone.utc)):
        for score in (None, 0, 99):
            cursor = Cursor(moment, 10**18 - 1, score)  # ids far beyond any table (18 digits)
            assert re.fullmatch(CURSOR_PATTERN[1:-1], cursor.encode()) and Cursor.decode(cursor.encode()) == cursor
