"""The callbacks' own form reader (web/mango.py `urlencoded_fields`) reads what the framework's parser
reads, or leaves the body to it: compared on generated bodies rich in what makes urlencoding hard."""
import io
import json
from urllib.parse import urlencode

from hypothesis import given, settings, strategies as st
from werkzeug.formparser import FormDataParser

from connector.inbound.mango.callbacks import signed_form
from web.mango import urlencoded_fields


def framework_reads(body: bytes) -> dict:
    """What the web framework's form parser makes of the body: the first value of each field."""
    _, form, _ = FormDataParser().parse(io.BytesIO(body), "application/x-www-form-urlencoded", len(body), {})
    return {name: form.get(name) for name in form}


# Percent signs with and without hex digits, plus signs, separators, backslashes followed by what Python's
# escapes would read (x, u, N, n, 0), characters past ASCII, escaped bytes that are or are not UTF-8.
pieces = st.sampled_from(list("%+&=\\xuUNn0a9fFG{}\"' ;") + ["%25", "%5C", "%C3%A9", "%E2%80", "%FF", "%0A", "é",
                                                             "\u0400", "%2"])
hard = st.lists(pieces, max_size=30).map("".join)


@settings(max_examples=1500, deadline=None)
@given(body=st.one_of(hard.map(str.encode), st.binary(max_size=60)))
def test_what_it_reads_the_framework_reads_alike(body):
    fields = urlencoded_fields(body)
    if fields is not None:
        assert fields == framework_reads(body), body


@settings(max_examples=300, deadline=None)
@given(document=st.dictionaries(st.text(max_size=10), st.one_of(st.text(max_size=30), st.integers()), max_size=5))
def test_a_signed_callback_is_read_by_the_quick_reader(document):
    """What MANGO posts (urlencoded JSON, any Unicode escaped as UTF-8) never needs the framework's parser."""
    form = signed_form("key", "salt", json.dumps(document, ensure_ascii=False))
    body = urlencode(form).encode()
    assert urlencoded_fields(body) == framework_reads(body) == form


def test_the_first_of_repeated_fields_counts_and_blank_ones_are_kept():
    assert urlencoded_fields(b"json=a&json=b&sign=&flag&&x=1+2%2B3") == {"json": "a", "sign": "", "flag": "",
                                                                        "x": "1 2+3"}


def test_what_it_cannot_be_sure_of_is_left_to_the_framework():
    assert urlencoded_fields("json=é".encode()) is None  # past ASCII
    assert urlencoded_fields(b"json=%4") is None  # a broken escape
    assert urlencoded_fields(b"json=%FF") is None  # not UTF-8
