"""MANGO OFFICE VPBX: signing, verification and event parsing.

Every request either way is a form POST with `vpbx_api_key`, `sign` and `json`,
where sign = sha256(key + json + salt) in lowercase hex (not an HMAC). The json
is hashed exactly as received, never re-serialised.
"""
from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime, timezone

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate, validates_schema

from connector.inbound.pbx import (CallState, CallSummary, Digits, InboundMessage, PayloadRejected, Recording,
                                   SignatureRejected, SmsReport, dedupe_key)
from connector.core.quick_load import QuickField, QuickLoader, Unsure
from connector.core.validation import INT32_MAX, StrictInteger, first_error, parse_json, storable_text, valid_line

DIRECTIONS = {0: "internal", 1: "inbound", 2: "outbound"}


def sign(api_key: str, json_text: str, salt: str) -> str:
    return hashlib.sha256((api_key + json_text + salt).encode("utf-8")).hexdigest()


def signed_form(api_key: str, salt: str, payload: dict | str) -> dict[str, str]:
    """The form fields of a signed request (commands to the PBX, and `connector simulate`)."""
    json_text = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    return {"vpbx_api_key": api_key, "sign": sign(api_key, json_text, salt), "json": json_text}


def verify(form: dict[str, str], api_key: str, salt: str) -> str:
    """Check key then sign in constant time; return the raw json text."""
    for name in ("vpbx_api_key", "sign", "json"):
        if not form.get(name):
            raise PayloadRejected(f"missing form field: {name}")
    if not api_key or not salt:
        raise SignatureRejected("PBX credentials are not configured (MANGO_API_KEY, MANGO_API_SALT)")
    if not hmac.compare_digest(form["vpbx_api_key"].encode(), api_key.encode()):
        raise SignatureRejected("unknown vpbx_api_key")
    expected = sign(api_key, form["json"], salt)
    if not hmac.compare_digest(form["sign"].strip().lower().encode(), expected.encode()):
        raise SignatureRejected("sign does not match")
    return form["json"]


class _Text(QuickField, fields.String):
    """PBX identifiers arrive as strings or numbers; keep them as strings that can be stored as sent."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        text = super()._deserialize(value, attr, data, **kwargs)
        storable_text(text)
        return text

    def quick(self, value):
        if type(value) is int:
            value = str(value)
        elif type(value) is not str:  # a float, a list...: the schema decides
            raise Unsure
        if not storable_text.quick_check(value):
            raise Unsure
        return value


class _Lenient(Schema):
    class Meta:
        unknown = EXCLUDE  # newer PBX versions add keys


class _Line(_Text):
    """A line's name as the PBX sends it: none (also empty or only spaces: no line) or a valid line name."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str) and not value.strip():
            return None
        return super()._deserialize(value, attr, data, **kwargs)

    def quick(self, value):
        if type(value) is str and not value.strip():
            return None
        return super().quick(value)


def _line():
    return _Line(load_default=None, allow_none=True, validate=valid_line)


class _Party(_Lenient):
    extension = _Text(load_default=None, allow_none=True, validate=validate.Length(max=32))
    number = _Text(load_default=None, allow_none=True, validate=validate.Length(max=32))
    line_number = _line()


_entry_id = _Text(required=True, validate=validate.Length(min=1, max=128))


def _int(required: bool = False, *, high: int = INT32_MAX):
    """A non-negative integer, as sent (never coerced from "7" or 1.5), that fits its column (int4)."""
    if required:
        return StrictInteger(required=True, validate=validate.Range(0, high))
    return StrictInteger(load_default=None, allow_none=True, validate=validate.Range(0, high))


def _unix_time():
    return _int(high=253_402_300_799)  # up to 9999-12-31, the last second datetime holds


class CallEventSchema(_Lenient):
    entry_id = _entry_id
    call_id = _Text(load_default=None, allow_none=True, validate=validate.Length(max=128))
    seq = _int(required=True)
    call_state = _Text(required=True, validate=validate.Length(max=32))
    to = fields.Nested(_Party, load_default=dict)


class SummarySchema(_Lenient):
    entry_id = _entry_id
    call_direction = StrictInteger(required=True, validate=validate.OneOf(list(DIRECTIONS)))
    from_ = fields.Nested(_Party, data_key="from", load_default=dict)
    to = fields.Nested(_Party, load_default=dict)
    line_number = _line()
    create_time = _unix_time()
    forward_time = _unix_time()
    talk_time = _unix_time()
    end_time = _unix_time()
    entry_result = _int()
    disconnect_reason = _int()

    @validates_schema
    def _talk_fits(self, data, **kwargs):
        talk, end = data.get("talk_time"), data.get("end_time")
        if talk and end and end - talk > INT32_MAX:
            raise ValidationError("the talk time (end_time - talk_time) is out of range", "end_time")


class RecordingSchema(_Lenient):
    entry_id = _entry_id
    recording_id = _Text(required=True, validate=validate.Length(min=1, max=128))
    recording_state = _Text(required=True, validate=validate.Length(max=32))
    seq = _int()
    completion_code = _int()
    recipient = _Text(load_default=None, allow_none=True, validate=validate.Length(max=32))


class RecordAddedSchema(_Lenient):
    entry_id = _entry_id
    recording_id = _Text(required=True, validate=validate.Length(min=1, max=128))


# A recording sent only by mail never reaches the cloud, so it can never be played through the API.
CLOUD_RECIPIENTS = (None, "Cloud", "CloudAndMail")


class DtmfSchema(_Lenient):
    entry_id = _entry_id
    call_id = _Text(load_default=None, allow_none=True, validate=validate.Length(max=128))
    seq = _int()
    dtmf = _Text(required=True, validate=validate.Length(max=64))
    location = _Text(load_default=None, allow_none=True, validate=validate.Length(max=64))
    timestamp = _unix_time()


class AnySchema(_Lenient):
    entry_id = _Text(load_default=None, allow_none=True, validate=validate.Length(max=128))


class SmsSchema(AnySchema):
    """`result/sms` (`command_id`, `result`) and `events/sms` (`command_id`, `reason`; the PDF's example shows
    `result` too) [PDF v1.9 §3.1.3, §3.2.4]. Both optional: a report of a command that is not ours, or of a
    shape nobody documented, is kept and acknowledged, and applies to nothing."""

    command_id = _Text(load_default=None, allow_none=True, validate=validate.Length(max=128))
    result = StrictInteger(load_default=None, allow_none=True, validate=validate.Range(0, INT32_MAX))
    reason = StrictInteger(load_default=None, allow_none=True, validate=validate.Range(0, INT32_MAX))


# Built once (building a schema per request costs a tenth of a callback's CPU), each with its quick path:
# a callback is validated when it comes and again when it is applied.
CALL_EVENT, SUMMARY, RECORDING = (QuickLoader(s) for s in (CallEventSchema(), SummarySchema(), RecordingSchema()))
RECORD_ADDED, DTMF, ANY_EVENT, SMS = (QuickLoader(s) for s in (RecordAddedSchema(), DtmfSchema(), AnySchema(),
                                                                SmsSchema()))
SMS_KINDS = {"result/sms": False, "events/sms": True}  # kind -> whether it is the carrier's delivery report


def _time(unix: int | None) -> datetime | None:
    return datetime.fromtimestamp(unix, timezone.utc) if unix else None


def _load(loader: QuickLoader, document: dict) -> dict:
    try:
        return loader.load(document)
    except ValidationError as exc:
        raise PayloadRejected(f"field json: {first_error(exc.messages)}") from None


def _summary(d: dict) -> CallSummary:
    direction = DIRECTIONS[d["call_direction"]]
    caller, callee = d["from_"], d["to"]
    operator, customer = (caller, callee) if direction == "outbound" else (callee, caller)
    if direction == "internal":
        operator, customer = caller, callee
    talk_started, ended = d["talk_time"], d["end_time"]
    talk_seconds = max(0, ended - talk_started) if talk_started and ended else 0
    return CallSummary(
        entry_id=d["entry_id"], direction=direction,
        operator_extension=operator.get("extension"), customer_phone=customer.get("number"),
        line_number=d["line_number"] or callee.get("line_number"),
        created_at=_time(d["create_time"]), forwarded_at=_time(d["forward_time"]),
        talk_started_at=_time(talk_started), ended_at=_time(ended), talk_seconds=talk_seconds,
        entry_result=d["entry_result"], disconnect_reason=d["disconnect_reason"],
    )


def parse(kind: str, json_text: str) -> InboundMessage:
    """Parse a verified callback posted to `<base>/<kind>`, e.g. kind `events/summary`."""
    try:
        document = parse_json(json_text)
    except ValueError as exc:
        raise PayloadRejected(f"field json: not valid JSON ({exc})") from None
    if not isinstance(document, dict):
        raise PayloadRejected("field json: expected a JSON object")

    if kind == "events/call":
        d = _load(CALL_EVENT, document)
        event = CallState(d["entry_id"], d["seq"], d["call_state"], d["to"].get("line_number"))
        key = dedupe_key(kind, d["entry_id"], d["call_id"], d["seq"])
    elif kind == "events/summary":
        d = _load(SUMMARY, document)
        event = _summary(d)
        key = dedupe_key(kind, d["entry_id"])  # sent once per call
    elif kind == "events/recording":
        d = _load(RECORDING, document)
        playable = (d["recording_state"] == "Completed" and d["completion_code"] in (None, 1000)
                    and d["recipient"] in CLOUD_RECIPIENTS)
        event = Recording(d["entry_id"], d["recording_id"], playable)
        # One recording_id goes through Started -> Completed; each state is one event.
        key = dedupe_key(kind, d["recording_id"], d["recording_state"], d["seq"])
    elif kind == "events/record/added":
        # The file is in the PBX's cloud storage and ready for download through the API.
        d = _load(RECORD_ADDED, document)
        event = Recording(d["entry_id"], d["recording_id"], True, stored=True)
        key = dedupe_key(kind, d["recording_id"])
    elif kind == "events/dtmf":
        d = _load(DTMF, document)
        at = _time(d["timestamp"]) or datetime.now(timezone.utc)
        event = Digits(d["entry_id"], d["dtmf"], d["location"], at)
        key = dedupe_key(kind, d["entry_id"], d["call_id"], d["seq"], d["dtmf"])
    elif kind in SMS_KINDS:
        d = _load(SMS, document)
        delivery = SMS_KINDS[kind]
        code = d["reason"] if delivery and d["reason"] is not None else d["result"]
        event = SmsReport(d["command_id"], code, delivery) if d["command_id"] and code is not None else None
        # Kept by kind and body, as below: a repeated report is a duplicate, the two kinds are two facts.
        key = dedupe_key(kind, json_text)
    else:  # other events/* and result/*: verified, stored, acknowledged
        d = _load(ANY_EVENT, document)
        event = None
        # No business key is known: the kind and the exact body. `result/sms` and `events/sms` may carry the
        # same body ({"command_id", "result"/"reason": 1000}) and are two facts, not one.
        key = dedupe_key(kind, json_text)
    return InboundMessage(kind, key, d.get("entry_id"), json_text, event)
