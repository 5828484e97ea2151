"""A quick path in front of a marshmallow schema: a document it can vouch for is loaded with plain Python;
anything else (an error, a type it does not handle) goes to the schema, which decides and words the error.

Why: the PBX's callbacks are validated twice, when they come and when they are applied, and marshmallow's
machinery costs ~0.1 ms a document, more than everything else a callback needs before its write. The schema
stays the one declaration of the rules: the quick path is compiled from its fields, and refuses to compile
(TypeError, at import) a field, validator or hook it does not know, so a new rule can never be skipped.
It vouches only for what it is sure of; `tests/unit/test_quick_load.py` checks on generated documents that
whatever it loads, the schema loads alike, and that a document the schema refuses never gets past it.
"""
from __future__ import annotations

from typing import Any, Callable

from marshmallow import EXCLUDE, Schema, ValidationError, fields, missing, validate


class Unsure(Exception):
    """The quick path cannot vouch for a value: the schema decides."""


class QuickField:
    """A field that can load a value without marshmallow: `quick` returns what its `_deserialize` would, or
    raises Unsure. Its validators and `allow_none`, `required` and `load_default` are applied around it."""

    def quick(self, value: Any) -> Any:
        raise NotImplementedError


Loader = Callable[[Any], Any]


class QuickLoader:
    """`load(document)`: what `schema.load(document)` returns, quickly when the quick path vouches for it."""

    def __init__(self, schema: Schema):
        self.schema = schema
        self._quick = _compile_schema(schema)

    def load(self, document: dict) -> dict:
        try:
            return self._quick(document)
        except Unsure:
            return self.schema.load(document)  # decides, and raises ValidationError with its words

    def vouches(self, document: dict) -> bool:
        """Whether the quick path loads `document` by itself (tests: the PBX's usual callbacks must)."""
        try:
            self._quick(document)
        except Unsure:
            return False
        return True


def _compile_schema(schema: Schema) -> Loader:
    if schema.unknown != EXCLUDE:
        raise TypeError(f"{type(schema).__name__}: only schemas that leave unknown keys out have a quick path")
    hooks = {tag: entries for tag, entries in schema._hooks.items() if entries}  # marshmallow's registry of hooks
    checks = []
    for tag, entries in hooks.items():
        if tag != "validates_schema":
            raise TypeError(f"{type(schema).__name__}: a {tag} hook has no quick path")
        for name, many, options in entries:
            if many or options.get("pass_original"):
                raise TypeError(f"{type(schema).__name__}.{name}: no quick path")
            checks.append(getattr(schema, name))
    plan = [(field.data_key or name, field.attribute or name, _compile_field(field))
            for name, field in schema.load_fields.items()]

    def load(document: Any) -> dict:
        if type(document) is not dict:
            raise Unsure
        data = {}
        for key, attribute, load_value in plan:
            value = load_value(document.get(key, missing))
            if value is not missing:
                data[attribute] = value
        for check in checks:  # the schema's own checks of the whole document, as it runs them
            try:
                check(data, many=False, partial=None)
            except ValidationError:
                raise Unsure from None
        return data

    return load


def _compile_field(field: fields.Field) -> Loader:
    name = type(field).__name__
    if field.pre_load or field.post_load:
        raise TypeError(f"{name}: a field with its own hooks has no quick path")
    if isinstance(field, fields.Nested):
        if field.many:
            raise TypeError(f"{name}: a nested list has no quick path")
        convert = _compile_schema(field.schema)
    elif isinstance(field, QuickField):
        convert = field.quick
    else:
        raise TypeError(f"{name} has no quick path: give it `quick` (QuickField)")
    validators = [_compile_validator(v) for v in field.validators]
    required, allow_none, default = field.required, field.allow_none, field.load_default

    def load(value: Any) -> Any:
        if value is missing:
            if required:
                raise Unsure
            return default() if callable(default) else default
        if value is None:
            if allow_none:
                return None
            raise Unsure
        output = convert(value)
        for valid in validators:
            if not valid(output):
                raise Unsure
        return output

    return load


def _compile_validator(validator) -> Callable[[Any], bool]:
    # Exact types: a subclass may add rules of its own.
    if type(validator) is validate.Length:
        low, high, equal = validator.min, validator.max, validator.equal

        def length(value: Any) -> bool:
            if not isinstance(value, str):
                return False
            size = len(value)
            if equal is not None:
                return size == equal
            return (low is None or size >= low) and (high is None or size <= high)

        return length
    if type(validator) is validate.Range:
        low, high = validator.min, validator.max
        low_in, high_in = validator.min_inclusive, validator.max_inclusive

        def within(value: Any) -> bool:
            if type(value) is not int:
                return False
            above = low is None or (value >= low if low_in else value > low)
            return above and (high is None or (value <= high if high_in else value < high))

        return within
    if type(validator) is validate.OneOf:
        choices = list(validator.choices)
        return lambda value: type(value) is int and value in choices
    check = getattr(validator, "quick_check", None)  # a rule of our own that says how to check it quickly
    if check is None:
        raise TypeError(f"{type(validator).__name__} has no quick path: give it `quick_check`")
    return check
