"""The token API's reports: figures per operator and per line, with a totals row."""
from __future__ import annotations

from flask import g, request
from marshmallow import ValidationError

from connector.console.queries import REPORT_QUERY_SCHEMA
from connector.console.reports import By, ReportFilter
from connector.core.validation import first_error
from web.api.common import bp, require_token, services
from web.errors import ApiError


def _report(by: str):
    try:
        args = REPORT_QUERY_SCHEMA.load(request.args.to_dict())
    except ValidationError as exc:
        raise ApiError(400, first_error(exc.messages)) from None
    flt = ReportFilter(**args, visible_extensions=g.principal.visible_extensions)
    part = {By.OPERATOR: "operators", By.LINE: "lines"}[by]
    return services().figures(flt, services().ingest.initial_policy, (part,))[part]  # connector.console.offload


@bp.get("/reports/operators")
@require_token()
def get_operators_report():
    """Per operator extension: answered, offered, rated, response rate, CSAT, NPS... with a totals row."""
    return _report(By.OPERATOR)


@bp.get("/reports/lines")
@require_token()
def get_lines_report():
    """The same per PBX line."""
    return _report(By.LINE)
