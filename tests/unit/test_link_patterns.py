"""The rating link's patterns in the OpenAPI document admit exactly what the API admits: the SMS template (by
`template_syntax_problem`) and a do-not-contact number (by `contacts.normalised`, for what the API takes)."""
import pytest
from hypothesis import given, settings, strategies as st

from connector.inbound.link.contacts import NUMBER_PATTERN, normalised
from connector.inbound.link.settings import TEMPLATE_PATTERN, template_syntax_problem
from tests.unit.test_patterns import admits, texts

templates = st.lists(st.sampled_from(["{link}", "{link:}", "{operator}", "{date}", "{{", "}}", "{", "}", "{link!r}",
                                      "{link.x}", "{link[0]}", "{0}", "{name}", "x", " ", "\x1f", "я"]),
                     max_size=6).map("".join)
numbers = st.lists(st.sampled_from(["+", "7", "8", "9", "0", "1", "5", " ", "-", "٣"]), max_size=13).map("".join)


@pytest.mark.parametrize("pattern, strings, problem", [
    (TEMPLATE_PATTERN, texts | templates, template_syntax_problem),
    # The API takes a number without separators: what the pattern admits is a number the list can keep.
    (NUMBER_PATTERN, texts | numbers, lambda text: None if normalised(text) and " " not in text and "-" not in text
     else "no"),
])
def test_a_pattern_admits_what_the_api_admits(pattern, strings, problem):
    check = admits(pattern)

    @settings(max_examples=300, derandomize=True)
    @given(strings)
    def agree(text):
        assert check(text) == (problem(text) is None), text

    agree()


@pytest.mark.parametrize("text, admitted", [
    ("Оцените нас: {link}", True), ("{date} {operator} {link}", True), ("{{{link}}}", True), ("{link:}", True),
    ("{{link}}", False), ("Оцените нас", False), ("{link.upper}", False), ("{link!r}", False), ("{link[0]}", False),
    ("{link:>300}", False), ("{name} {link}", False), ("x\x1f{link}", False), ("{link", False),
])
def test_template_examples(text, admitted):
    assert admits(TEMPLATE_PATTERN)(text) is admitted and (template_syntax_problem(text) is None) is admitted
