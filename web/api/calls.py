"""The token API's calls: the list (a keyset cursor), one call with its history, its reviews."""
from __future__ import annotations

from flask import g, request, url_for
from marshmallow import RAISE, Schema, ValidationError, fields, validate

from connector.console.queries import CALL_QUERY_SCHEMA
from connector.console.reviews import add_review
from connector.core.calls import (CallFilter, call_id_problem, call_json, find_calls, get_visible_call, rating_request,
                                  rating_request_json)
from connector.core.models import Role
from connector.core.policy import SCORE_LIMIT
from connector.core.validation import StrictInteger, first_error, storable_lines
from connector.inbound.quality import marks_json
from web.api.common import bp, json_body, require_token, services
from web.errors import ApiError

MAX_PER_PAGE = 100


@bp.get("/calls")
@require_token()
def list_calls():
    try:
        args = CALL_QUERY_SCHEMA.load(request.args.to_dict())
        sort = args.pop("sort")
        after = args.pop("after", None)
    except ValidationError as exc:
        raise ApiError(400, first_error(exc.messages)) from None
    page, per_page = args.pop("page"), min(args.pop("per_page"), MAX_PER_PAGE)
    with services().db.reading() as session:
        found = find_calls(session, CallFilter(**args, visible_extensions=g.principal.visible_extensions),
                           per_page=per_page, page=page, after=after, sort=sort)
        items = [call_json(c) for c in found.calls]
    query = {k: v for k, v in request.args.items() if k not in ("page", "per_page", "after")}
    links = {"self": request.full_path.rstrip("?"), "first": url_for(".list_calls", per_page=per_page, **query)}
    if found.next_cursor is not None:
        links["next"] = url_for(".list_calls", per_page=per_page, after=found.next_cursor.encode(), **query)
    if after is None and page > 1:
        links["prev"] = url_for(".list_calls", page=page - 1, per_page=per_page, **query)
    meta = {"page": None if after else page, "per_page": per_page, "total": found.total,
            "total_capped": found.total_capped}
    return {"items": items, "_meta": meta, "_links": links}


@bp.get("/calls/<path:call_id>")
@require_token()
def show_call(call_id: str):
    with services().db.reading() as session:
        call = _visible_call(session, call_id)
        return {**call_json(call, with_history=True, marks=marks_json(session, call)),
                "rating_request": rating_request_json(rating_request(session, call))}


def _visible_call(session, call_id: str):
    call = get_visible_call(session, call_id, g.principal)
    if call is None:
        problem = call_id_problem(call_id)
        raise ApiError(404, f"unknown call: call_id {problem}" if problem else f"unknown call {call_id}")
    return call


class ReviewSchema(Schema):
    class Meta:
        unknown = RAISE

    score = StrictInteger(required=True, validate=validate.Range(0, SCORE_LIMIT - 1))  # any scale's range
    comment = fields.String(load_default=None, allow_none=True, validate=[validate.Length(max=2000), storable_lines])


REVIEW_SCHEMA = ReviewSchema()


@bp.get("/calls/<path:call_id>/reviews")
@require_token()
def get_reviews(call_id: str):
    with services().db.reading() as session:
        return {"items": call_json(_visible_call(session, call_id))["reviews"]}


@bp.post("/calls/<path:call_id>/reviews")
@require_token(Role.ADMIN, Role.SUPERVISOR)
def post_review(call_id: str):
    """A supervisor's rating and comment; the call's operator is notified."""
    try:
        review = REVIEW_SCHEMA.load(json_body())
    except ValidationError as exc:
        raise ApiError(422, first_error(exc.messages)) from None
    with services().db.transaction() as session:
        call = _visible_call(session, call_id)
        try:
            add_review(session, services().ingest, call, g.principal, review["score"], review["comment"])
        except ValueError as exc:  # outside the scale in force for the call's line
            raise ApiError(409, f"score: {exc}") from None
        session.flush()
        return call_json(call, with_history=True, marks=marks_json(session, call)), 201
