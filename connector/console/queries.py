"""The query parameters of the call list and the reports: one definition, read by the API, the console
pages, their exports and the OpenAPI document alike."""
from __future__ import annotations

from marshmallow import RAISE, Schema, ValidationError, fields, validate

from connector.core.calls import CURSOR_PATTERN, Cursor, Sort
from connector.core.follow_ups import FollowUpFilter
from connector.core.models import DeliveryStatus
from connector.core.validation import AwareUtcDateTime, storable_text, valid_line


class CursorField(fields.String):
    """`after`: a Cursor (connector.core.calls), or 400 for text that is none."""

    def _deserialize(self, value, attr, data, **kwargs):
        try:
            return Cursor.decode(super()._deserialize(value, attr, data, **kwargs))
        except ValueError as exc:
            raise ValidationError(str(exc)) from None



class CallQuerySchema(Schema):
    class Meta:
        unknown = RAISE

    score_lte = fields.Integer(validate=validate.Range(-1000, 1000))
    score_gte = fields.Integer(validate=validate.Range(-1000, 1000))
    operator = fields.String(validate=[validate.Length(max=32), storable_text])
    line = fields.String(validate=valid_line)
    date_from = AwareUtcDateTime(clamp=True)
    date_to = AwareUtcDateTime(clamp=True)
    tagged = fields.Boolean()
    crm_status = fields.String(validate=validate.OneOf(list(DeliveryStatus)))
    supervisor_rated = fields.Boolean()
    follow_up = fields.Enum(FollowUpFilter, by_value=True, metadata={
        "description": "the call's follow-up after a low score: open, overdue (open past its due time) or recovered"})
    sort = fields.Enum(Sort, by_value=True, load_default=Sort.NEWEST)
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=1_000_000))
    after = CursorField(metadata={"pattern": CURSOR_PATTERN, "description": (
        "a position, as `_links.next` hands it out: just after that call, under any sort; past the data, an "
        "empty page")})
    per_page = fields.Integer(load_default=20, validate=validate.Range(min=1, max=1_000_000))


class ReportQuerySchema(Schema):
    class Meta:
        unknown = RAISE

    date_from = AwareUtcDateTime(clamp=True)
    date_to = AwareUtcDateTime(clamp=True)
    line = fields.String(validate=valid_line)


CALL_QUERY_SCHEMA = CallQuerySchema()
REPORT_QUERY_SCHEMA = ReportQuerySchema()
