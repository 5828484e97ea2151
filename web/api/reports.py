"""The token API's reports: figures per operator and per line, with a totals row; the response rate per channel
and the rating requests' funnel."""
from __future__ import annotations

from flask import g, request
from marshmallow import ValidationError

from connector.console.queries import REPORT_QUERY_SCHEMA
from connector.console.reports import ReportFilter
from connector.core.validation import first_error
from web.api.common import bp, require_token, services
from web.errors import ApiError


def _report(part: str):
    """One part of `connector.console.reports.figures` for the query's filters (an operator: their own calls)."""
    try:
        args = REPORT_QUERY_SCHEMA.load(request.args.to_dict())
    except ValidationError as exc:
        raise ApiError(400, first_error(exc.messages)) from None
    flt = ReportFilter(**args, visible_extensions=g.principal.visible_extensions)
    return services().figures(flt, services().ingest.initial_policy, (part,))[part]  # connector.console.offload


@bp.get("/reports/operators")
@require_token()
def get_operators_report():
    """Per operator extension: answered, offered, rated, response rate, CSAT, NPS... with a totals row."""
    return _report("operators")


@bp.get("/reports/lines")
@require_token()
def get_lines_report():
    """The same per PBX line."""
    return _report("lines")


@bp.get("/reports/channels")
@require_token()
def get_channels_report():
    """Per channel a customer's score came through: the rateable calls it rated, and its response rate."""
    return _report("channels")


@bp.get("/reports/rating-requests")
@require_token()
def get_rating_requests_report():
    """The rating requests' funnel (due, sent, delivered, opened, rated), the skipped and failed by reason."""
    return _report("funnel")


@bp.get("/reports/follow-ups")
@require_token()
def get_follow_ups_report():
    """The follow-ups after low scores, per operator and per line: follow-up rate, median time to follow-up,
    overdue, recovery rate, each with its n."""
    return _report("follow_ups")
