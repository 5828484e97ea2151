"""The calls: the list with its filters, a call's page with the player and the reviews, and the list's
exports (CSV, XLSX)."""
from __future__ import annotations

from flask import Response, abort, g, redirect, render_template, request, url_for
from flask_babel import get_locale, gettext as _

from connector.console.exports import COLUMNS, FORMATS, Layout, Separator
from connector.console.reviews import add_review
from connector.core import follow_ups
from connector.core.calls import Sort, call_json, call_timeline, find_calls, get_visible_call, rating_request
from connector.core.links import recording_link
from connector.core.models import RequestStatus, Role
from connector.core.notifications import mark_read, unread_count
from connector.core.runtime_settings import current_policies, current_policy
from connector.inbound.link import settings as link_settings
from connector.inbound.link.rules import answers
from connector.inbound.link.settings import RatingScale
from connector.inbound.quality import marks_json
from webui import labels, time_zone
from webui.common import bp, crm_status_names, login_required, services
from webui.filters import FilterRefused, call_filter
from webui.forms import FollowUpCloseForm, MarkReadForm, ReviewForm

PLAYER_LINK_SECONDS = 3600


@bp.get("/calls")
@login_required()
def calls():
    try:
        flt, sort, raw, after = call_filter()
    except FilterRefused as refused:  # said on the filter form, which keeps what was typed
        flt, sort, raw, after = None, Sort.NEWEST, refused.query, None
        problem, bad_field = refused.message, refused.field
    else:
        problem = bad_field = None
    found, items = None, []
    with services().db.reading() as s:
        policy = current_policy(s, services().ingest.initial_policy)
        if flt is not None:
            found = find_calls(s, flt, per_page=25, after=after, sort=sort)
            items = [call_json(c) for c in found.calls]
    query = {k: v for k, v in raw.items() if k != "after"}
    next_link = url_for(".calls", after=found.next_cursor.encode(), **query) if found and found.next_cursor else None
    low_scores = url_for(".calls", score_lte=policy.max_threshold - 1)
    return render_template("calls.html", items=items, found=found, query=query, next_link=next_link,
                           low_scores=low_scores, policy=policy, sort=sort, problem=problem,
                           bad_field=bad_field), 400 if problem else 200


@bp.get("/calls/export.csv")
@login_required()
def export_csv():
    return _export("csv", "calls.csv")


@bp.get("/calls/export.xlsx")
@login_required()
def export_xlsx():
    return _export("xlsx", "calls.xlsx")


def direction_names() -> dict[str, str]:
    """A call's direction as the console names it, in the page's language (the call page, the exports)."""
    return {code: labels.direction_label(code) for code in labels.direction_label.words}


def survey_names() -> dict[str, str]:
    """A call's survey state as the console names it, in the page's language (the call page, the exports)."""
    return {str(state): labels.survey_label(state) for state in labels.survey_label.words}


# How a time is written in an export, by the page's language: (CSV's strftime format, XLSX's number format).
EXPORT_TIMES = {"ru": ("%d.%m.%Y %H:%M", "dd.mm.yyyy hh:mm"), "en": ("%Y-%m-%d %H:%M", "yyyy-mm-dd hh:mm")}
SEPARATORS = {"semicolon": Separator.SEMICOLON, "comma": Separator.COMMA}  # ?sep=; semicolon unless asked


def export_layout(separator: Separator = Separator.SEMICOLON) -> Layout:
    """An export as the person asking reads it: the columns named in the page's language (as the list names
    them where it shows them), times in the account's time zone, the direction, the survey and the CRM status as
    the console names them (plain strings: the layout goes to a child process, which has no request)."""
    headers = {"call_id": _("Звонок"), "started_at": _("Начало"), "direction": _("Направление"),
               "operator": _("Оператор"), "line_number": _("Линия"), "customer_phone": _("Клиент"),
               "talk_seconds": _("Разговор, с"), "survey": _("Опрос"), "customer_score": _("Оценка клиента"),
               "supervisor_score": _("Оценка супервизора"), "tag": _("Тег"), "reviews": _("Отзывы супервизоров"),
               "crm_status": _("Статус в CRM"), "crm_entity": _("Запись в CRM")}
    csv_time, xlsx_time = EXPORT_TIMES[str(get_locale())]
    return Layout(headers=tuple(headers[c] for c in COLUMNS), statuses=crm_status_names(),
                  directions=direction_names(), surveys=survey_names(),
                  zone=time_zone.zone_in_force().name, csv_time=csv_time, xlsx_time=xlsx_time,
                  separator=separator, bom=True, sheet=_("Звонки"))


def _export(fmt: str, filename: str) -> Response:
    """The filtered list as a file, streamed as it is read: built in a child process (connector.console.offload), one
    short read per page, every cell through connector.console.cells (no control characters, no formulas)."""
    flt, sort, _raw, _after = call_filter()  # the role's rule is in the filter: an operator's own calls
    separator = SEPARATORS.get(request.args.get("sep") or "semicolon")
    if separator is None:
        abort(400, description=_("Разделитель CSV: semicolon (точка с запятой) или comma (запятая)."))
    # Raises before answering if it cannot start.
    chunks = services().reads.export(fmt, flt, sort, export_layout(separator))
    return Response(chunks, mimetype=FORMATS[fmt],  # needs no request context: the work is the child's
                    headers={"Content-Disposition": f"attachment; filename={filename}"})


def _visible_call(s, call_id: str):
    call = get_visible_call(s, call_id, g.principal)
    if call is None:
        abort(404)
    return call


@bp.get("/calls/<path:call_id>")
@login_required()
def call_page(call_id: str):
    return _render_call(call_id, ReviewForm())


def _render_call(call_id: str, form: ReviewForm, error: str | None = None, status: int = 200, *,
                 close_form: FollowUpCloseForm | None = None, close_error: str | None = None):
    if request.method != "GET":  # a refused review: the page is the call's
        g.page_url = url_for(".call_page", call_id=call_id)
    config = services().config
    with services().db.reading() as s:
        call = _visible_call(s, call_id)
        data = call_json(call, with_history=True, marks=marks_json(s, call))
        for row, score in zip(call.scores, data["scores"]):  # what a decision's reason is read from
            score.update(record=row.record, high_scores=row.high_scores)
        timeline = call_timeline(s, call)
        policy = current_policy(s, services().ingest.initial_policy)
        unread_here = unread_count(s, g.principal, call=call)  # read by the page's button, never by opening it
        link_request = _link_request(s, rating_request(s, call), call)
    player = (recording_link("", config.SECRET_KEY, call_id, ttl=PLAYER_LINK_SECONDS)
              if data["recording_id"] else None)
    return render_template("call.html", call=data, player=player, form=form, error=error, policy=policy,
                           timeline=timeline, unread_here=unread_here, read_form=MarkReadForm(),
                           link_request=link_request, close_form=close_form or FollowUpCloseForm(),
                           close_error=close_error), status


def _link_request(session, row, call) -> dict | None:
    """The call's rating request by link as the page shows it: the number in full to whoever may see the call,
    operators included, as the card above shows the customer's (they call customers back); the answer as the
    rating page named it (on the scale set now: a scale changed since reads the old answer on the new one)."""
    if row is None:
        return None
    rating = None
    if row.rating is not None:
        scale = row.scale or link_settings.read(session)[0].scale  # the scale it was sent with
        policy = current_policies(session, services().ingest.initial_policy).for_line(call.line_number)
        rating = labels.link_answer(scale, row.rating, answers(RatingScale(scale), policy))
    # The link exists for the customer only once its SMS went: never for a request skipped, still scheduled or
    # waiting in the outbox; a failed one had it only if it got as far as the PBX.
    went = row.status in (RequestStatus.ACCEPTED, RequestStatus.SENT, RequestStatus.DELIVERED) or (
        row.status == RequestStatus.FAILED and (row.sent_at is not None or row.queued_at is not None))
    return {"status": row.status, "reason": row.reason, "detail": row.detail, "number": row.number, "went": went,
            "skipped": row.status == RequestStatus.SKIPPED,
            "due_at": row.due_at, "sent_at": row.sent_at, "delivered_at": row.delivered_at,
            "opened_at": row.opened_at, "rated_at": row.rated_at, "expires_at": row.expires_at,
            "rating": rating, "comment": row.comment}


@bp.post("/calls/<path:call_id>/read")
@login_required()
def read_call_notifications(call_id: str):
    if not MarkReadForm().validate_on_submit():
        abort(400)
    with services().db.transaction() as s:
        mark_read(s, g.principal, call=_visible_call(s, call_id))
    return redirect(url_for(".call_page", call_id=call_id))


@bp.post("/calls/<path:call_id>/follow-up")
@login_required(Role.ADMIN, Role.SUPERVISOR)
def close_follow_up(call_id: str):
    """A supervisor closes the call's follow-up (audited): how it ended and a note."""
    form = FollowUpCloseForm()
    if not form.validate_on_submit():
        problem = _("Форма устарела или подделана") if form.csrf_token.errors else \
            form.note.errors[0] if form.note.errors else _("Выберите итог из списка")
        return _render_call(call_id, ReviewForm(), close_form=form, close_error=problem, status=400)
    with services().db.transaction() as s:
        call = _visible_call(s, call_id)
        try:
            follow_ups.close(s, call, g.principal.username, form.outcome.data, form.note.data)
        except follow_ups.CloseRefused as refused:
            said = {follow_ups.CloseProblem.NO_FOLLOW_UP: _("У этого звонка нет обратной связи: низкой оценки не было"),
                    follow_ups.CloseProblem.ALREADY_CLOSED: _("Обратная связь уже закрыта"),
                    follow_ups.CloseProblem.OUTCOME: _("Выберите итог из списка")}
            problem = said.get(refused.problem, _("Заметка: до 500 символов, только текст"))
        else:
            problem = None
    if problem:
        return _render_call(call_id, ReviewForm(), close_form=form, close_error=problem, status=409)
    return redirect(url_for(".call_page", call_id=call_id))


@bp.post("/calls/<path:call_id>/reviews")
@login_required(Role.ADMIN, Role.SUPERVISOR)
def review(call_id: str):
    form = ReviewForm()
    if not form.validate_on_submit():
        problem = _("Форма устарела или подделана") if form.csrf_token.errors else \
            form.comment.errors[0] if form.comment.errors else _("Укажите оценку числом")
        return _render_call(call_id, form, problem, 400)
    with services().db.transaction() as s:
        call = _visible_call(s, call_id)
        try:
            add_review(s, services().ingest, call, g.principal, form.score.data,
                       (form.comment.data or "").strip() or None)
        except ValueError:  # checked before anything is written: only a score outside the scale
            policy = current_policy(s, services().ingest.initial_policy)
            error = _("Оценка: целое число от %(low)s до %(high)s", low=policy.scale_min, high=policy.scale_max)
        else:
            error = None
    if error:
        return _render_call(call_id, form, error, 422)
    return redirect(url_for(".call_page", call_id=call_id))
