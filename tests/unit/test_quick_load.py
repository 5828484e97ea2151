"""The quick path loads exactly what the schema loads, and never lets through what the schema refuses
(connector/core/quick_load.py): every PBX callback schema, on generated documents near valid ones."""
import json

import pytest
from hypothesis import given, settings, strategies as st
from marshmallow import EXCLUDE, Schema, ValidationError, fields, post_load, validate, validates_schema

from connector.core.quick_load import QuickLoader, Unsure
from connector.core.validation import StrictInteger
from connector.inbound.mango import callbacks

LOADERS = {"events/call": callbacks.CALL_EVENT, "events/summary": callbacks.SUMMARY,
           "events/recording": callbacks.RECORDING, "events/record/added": callbacks.RECORD_ADDED,
           "events/dtmf": callbacks.DTMF, "events/other": callbacks.ANY_EVENT, "result/sms": callbacks.SMS}

# What each schema reads, and values near their edges: blank and padded text, control characters, lone
# surrogates, lengths at and past each limit, integers at and past each range, numbers as text, floats
# (integral too), booleans, nulls, lists and objects where text or a number belongs.
KEYS = ["entry_id", "call_id", "seq", "call_state", "to", "from", "call_direction", "line_number", "create_time",
        "forward_time", "talk_time", "end_time", "entry_result", "disconnect_reason", "recording_id",
        "recording_state", "completion_code", "recipient", "dtmf", "location", "timestamp", "command_id",
        "result", "reason", "extension", "number", "other"]
texts = st.one_of(st.text(max_size=6), st.sampled_from(["", " ", "\u00a0", "a\x00b", "a\x01", "\x7f", "\x9f",
                                                         "\ud800", "Connected", "74950000000", " 7495 "]),
                  st.integers(0, 140).map(lambda n: "x" * n))
numbers = st.one_of(st.integers(-3, 3), st.sampled_from([2**31 - 1, 2**31, 2**53, 253_402_300_799,
                                                         253_402_300_800, -2**31, 10**30]),
                    st.floats(allow_nan=False), st.just(7.0), st.booleans())
scalars = st.one_of(st.none(), texts, numbers)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=2), st.dictionaries(st.sampled_from(KEYS), inner, max_size=4)), max_leaves=6)


def valid(kind: str) -> dict:
    return {"events/call": {"entry_id": "E1", "call_id": "c1", "seq": 1, "call_state": "Appeared",
                            "to": {"extension": "101", "line_number": "7495"}},
            "events/summary": {"entry_id": "E1", "call_direction": 1, "from": {"number": "79001234567"},
                               "to": {"extension": "101"}, "line_number": "7495", "create_time": 1700000000,
                               "talk_time": 1700000010, "end_time": 1700000070, "entry_result": 1},
            "events/recording": {"entry_id": "E1", "recording_id": "r1", "recording_state": "Completed",
                                 "completion_code": 1000, "recipient": "Cloud"},
            "events/record/added": {"entry_id": "E1", "recording_id": "r1"},
            "events/dtmf": {"entry_id": "E1", "call_id": "c1", "seq": 3, "dtmf": "5", "location": "ivr.5",
                            "timestamp": 1700000071},
            "events/other": {"entry_id": "E2"}, "result/sms": {"command_id": "x1", "result": 1000}}[kind]


def schema_says(loader: QuickLoader, document) -> dict | str:
    try:
        return loader.schema.load(document)
    except ValidationError as exc:
        return f"refused: {exc.messages}"


def quick_says(loader: QuickLoader, document) -> dict | None:
    try:
        return loader._quick(document)
    except Unsure:
        return None


@settings(max_examples=1500, deadline=None)
@given(kind=st.sampled_from(sorted(LOADERS)), changes=st.dictionaries(st.sampled_from(KEYS), values, max_size=4),
       dropped=st.lists(st.sampled_from(KEYS), max_size=2))
def test_what_the_quick_path_loads_the_schema_loads_alike(kind, changes, dropped):
    document = {**valid(kind), **changes}
    for key in dropped:
        document.pop(key, None)
    loader = LOADERS[kind]
    quick = quick_says(loader, document)
    expected = schema_says(loader, document)
    if quick is not None:
        assert quick == expected, (kind, document)
    if isinstance(expected, dict):
        assert loader.load(document) == expected
    else:
        with pytest.raises(ValidationError):
            loader.load(document)


@pytest.mark.parametrize("kind", sorted(LOADERS))
def test_the_pbx_usual_callbacks_take_the_quick_path(kind):
    """What MANGO sends day to day never pays for the schema's machinery (the reason the quick path exists)."""
    document = json.loads(json.dumps(valid(kind)))
    assert LOADERS[kind].vouches(document)
    assert LOADERS[kind].load(document) == LOADERS[kind].schema.load(document)


@pytest.mark.parametrize("document, words", [
    ({"entry_id": "E1", "seq": True, "call_state": "x"}, "seq: Not a valid integer."),
    ({"entry_id": "", "seq": 1, "call_state": "x"}, "entry_id: Length must be between 1 and 128."),
    ({"entry_id": "E1", "seq": 1, "call_state": "x", "to": None}, "to: Field may not be null."),
    ({"entry_id": "E1", "seq": 1, "call_state": "a\x02"}, "call_state: must not contain control characters (U+0002)"),
])
def test_a_refused_document_is_worded_by_the_schema(document, words):
    with pytest.raises(ValidationError) as refused:
        callbacks.CALL_EVENT.load(document)
    from connector.core.validation import first_error

    assert first_error(refused.value.messages) == words


def test_a_rule_it_cannot_check_quickly_is_refused_at_import():
    """A new field, validator or hook the quick path does not know must not be skipped silently."""
    class Lenient(Schema):
        class Meta:
            unknown = EXCLUDE

    class WithPlainString(Lenient):
        name = fields.String()

    class WithRegexp(Lenient):
        seq = StrictInteger(validate=validate.Regexp("x"))

    class WithPostLoad(Lenient):
        seq = StrictInteger()

        @post_load
        def change(self, data, **kwargs):
            return data

    class Strict(Schema):
        seq = StrictInteger()

    for schema in (WithPlainString, WithRegexp, WithPostLoad, Strict):
        with pytest.raises(TypeError):
            QuickLoader(schema())
    QuickLoader(type("Plain", (Lenient,), {"seq": StrictInteger()})())  # what it knows compiles


def test_the_schemas_own_checks_run_on_the_quick_path():
    class Ordered(Schema):
        class Meta:
            unknown = EXCLUDE

        low = StrictInteger(required=True)
        high = StrictInteger(required=True)

        @validates_schema
        def _ordered(self, data, **kwargs):
            if data["low"] > data["high"]:
                raise ValidationError("low above high", "low")

    loader = QuickLoader(Ordered())
    assert loader.vouches({"low": 1, "high": 2})
    assert not loader.vouches({"low": 3, "high": 2})
    with pytest.raises(ValidationError):
        loader.load({"low": 3, "high": 2})
