"""The filters of the call list, its exports and the reports, read from the query as people type them (a day
is the account's day), and a filter that cannot be read, refused as a page that leads back to the form."""
from __future__ import annotations

from datetime import date, datetime

from flask import g, request, url_for
from flask_babel import gettext as _
from marshmallow import ValidationError
from werkzeug.exceptions import BadRequest

from connector.console.queries import CALL_QUERY_SCHEMA, REPORT_QUERY_SCHEMA
from connector.console.reports import ReportFilter
from connector.core.calls import CallFilter, Cursor, Sort
from webui import time_zone
from webui.common import PAGE_ARGS, bp, error_page
from webui.problems import filter_problem


class FilterRefused(Exception):
    """A filter of the list or the reports that cannot be read: `field` is its query parameter."""

    def __init__(self, field: str, query: dict):
        super().__init__(field)
        self.field, self.query = field, query

    @property
    def message(self) -> str:
        return filter_problem(self.field)


@bp.errorhandler(FilterRefused)
def _filter_refused(exc: FilterRefused):
    """An export (or another page without the filter form) refused for its filters: the way back is the
    list or the reports with the same filters, where the form says which one is wrong."""
    reports = request.endpoint in ("console.reports", "console.export_report_xlsx")
    back = url_for(".reports" if reports else ".calls", **exc.query)
    return error_page(BadRequest(), detail=exc.message, back=back,
                      back_label=_("К отчётам") if reports else _("К списку звонков"))


def _query() -> dict:
    """The filters as the page's link holds them: no empty ones, no page arguments (`lang`)."""
    return {k: v for k, v in request.args.items() if v != "" and k not in PAGE_ARGS}


def _refused_field(exc: ValidationError) -> str:
    return str(next(iter(exc.messages))) if isinstance(exc.messages, dict) and exc.messages else ""


def _local_days(raw: dict) -> dict:
    """The filters with each date the form's date fields give (2026-11-20) made that day's midnight in
    the account's time zone, offset included: the query schema, shared with the API, reads a moment without an
    offset as UTC, and a person means their own day."""
    zone = time_zone.zone_in_force().zone
    local = dict(raw)
    for key in ("date_from", "date_to"):
        try:
            day = date.fromisoformat(raw[key]) if len(raw.get(key, "")) == 10 else None
        except ValueError:
            continue  # the schema says what is wrong with it
        if day is not None:
            local[key] = datetime.combine(day, datetime.min.time(), zone).isoformat()
    return local


def call_filter() -> tuple[CallFilter, Sort, dict, Cursor | None]:
    """The list's filters (raises FilterRefused)."""
    raw = _query()
    try:
        args = CALL_QUERY_SCHEMA.load(_local_days(raw))
        sort = args.pop("sort")
        after = args.pop("after", None)
    except ValidationError as exc:
        raise FilterRefused(_refused_field(exc), raw) from None
    args.pop("page", None)
    args.pop("per_page", None)
    return CallFilter(**args, visible_extensions=g.principal.visible_extensions), sort, raw, after


def report_filter() -> tuple[ReportFilter, dict]:
    """The reports' filters (raises FilterRefused)."""
    raw = _query()
    try:
        args = REPORT_QUERY_SCHEMA.load(_local_days(raw))
    except ValidationError as exc:
        raise FilterRefused(_refused_field(exc), raw) from None
    return ReportFilter(**args, visible_extensions=g.principal.visible_extensions,
                        zone=time_zone.zone_in_force().name), raw
