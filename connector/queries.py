"""The query parameters of the call list and the reports: one definition, read by the API, the console
pages, their exports and the OpenAPI document alike."""
from __future__ import annotations

from marshmallow import RAISE, Schema, fields, validate

from connector.calls import Sort
from connector.models import DeliveryStatus
from connector.validation import AwareUtcDateTime, storable_text, valid_line

class CallQuerySchema(Schema):
    class Meta:
        unknown = RAISE

    score_lte = fields.Integer(validate=validate.Range(-1000, 1000))
    score_gte = fields.Integer(validate=validate.Range(-1000, 1000))
    operator = fields.String(validate=[validate.Length(max=32), storable_text])
    line = fields.String(validate=valid_line)
    date_from = AwareUtcDateTime()
    date_to = AwareUtcDateTime()
    tagged = fields.Boolean()
    crm_status = fields.String(validate=validate.OneOf(list(DeliveryStatus)))
    supervisor_rated = fields.Boolean()
    sort = fields.Enum(Sort, by_value=True, load_default=Sort.NEWEST)
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=1_000_000))
    after = fields.String(validate=validate.Length(max=200))
    per_page = fields.Integer(load_default=20, validate=validate.Range(min=1, max=1_000_000))


class ReportQuerySchema(Schema):
    class Meta:
        unknown = RAISE

    date_from = AwareUtcDateTime()
    date_to = AwareUtcDateTime()
    line = fields.String(validate=valid_line)


CALL_QUERY_SCHEMA = CallQuerySchema()
REPORT_QUERY_SCHEMA = ReportQuerySchema()
