"""The public rating page, `/r/<token>`: the link a rating request's SMS carries (issue #19). GET shows the page,
POST takes the answer (`connector.inbound.link.answers`).

No login, no cookie, no session: the token in the address is the only capability. A POST therefore carries no
CSRF token: a forged cross-site post could only do what the holder of the link can do, and the forger would
need the link, which is the secret itself; there is no ambient authority (no cookie) to ride on. The console's
CSRF protection is per form (Flask-WTF forms), not global, so nothing here needs exempting.

The page renders outside the console's template context on purpose: the console's context processor makes a
logout form whose CSRF token writes the session, and this page must set no cookie. The language follows the
browser (Accept-Language: English when it prefers English, else Russian), or `?lang=` when the person picks the
other one on the page; it is never remembered.

Answers are rate-limited per link and per client address (`connector.core.throttle`, buckets every process
shares): over the limit, 429 with Retry-After.
"""
from __future__ import annotations

import hashlib
import logging
import math
import re
from dataclasses import dataclass, replace
from datetime import datetime, timezone

from flask import Blueprint, Response, current_app, redirect, request, url_for
from flask_babel import force_locale, format_date, gettext as _, lazy_gettext as _l
from werkzeug.exceptions import HTTPException

from connector.core import throttle
from connector.core.validation import CONTROL_IN_LINES, text_problem
from connector.inbound.link import answers
from connector.inbound.link.answers import COMMENT_MAX, Rated, RatingPage
from connector.inbound.link.settings import RatingScale
from webui.common import LANGUAGES
from webui.labels import link_answer

log = logging.getLogger(__name__)

bp = Blueprint("rating", __name__, url_prefix="/r", template_folder="templates")

# A capability URL: never cached, never indexed, never framed (security.protect adds the rest).
PAGE_HEADERS = {"Cache-Control": "no-store", "X-Robots-Tag": "noindex, nofollow"}
ANSWER_DIGITS = 3  # the longest answer any scale offers (0..99)
# Unicode's bidirectional embeddings, overrides and isolates (LRE RLE PDF LRO RLO, LRI RLI FSI PDI): they reorder
# the text after them, so "RTL" can be shown as "LTR" on the thanks page and in the supervisor's view; no
# comment needs them. The marks (U+200E LRM, U+200F RLM, U+061C ALM) are let through: each is one invisible
# strong character that reorders nothing past the neutral characters beside it, so it can neither reverse nor
# hide words, and text pasted from Arabic or Hebrew legitimately carries them.
BIDI_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069]")


def _services():
    return current_app.extensions["connector"]


def _language() -> str:
    """`?lang=` when it names a language the page speaks, else the browser's preference, else Russian."""
    return _language_asked() or request.accept_languages.best_match(LANGUAGES, default=LANGUAGES[0])


def _render(template: str, status: int, language: str, headers: dict | None = None, **context) -> Response:
    """The template in `language`, without the console's context processors (see the module's docstring)."""
    with force_locale(language):
        body = current_app.jinja_env.get_template(template).render(lang=language, other=_other(language),
                                                                   **context)
    return Response(body, status, {**PAGE_HEADERS, **(headers or {})}, mimetype="text/html")


def _language_asked() -> str | None:
    """`?lang=` when the person picked a language on the page: kept on the form's address and the redirect."""
    wanted = request.args.get("lang")
    return wanted if wanted in LANGUAGES else None


def _other(language: str) -> str:
    return next(code for code in LANGUAGES if code != language)


PROBLEMS = {
    # status: (title, what happened and what to do), in the page's language when shown
    400: (_l("Запрос не понят"), _l("Откройте ссылку из сообщения ещё раз.")),
    404: (_l("Ссылка не найдена"),
          _l("Ссылка неверна или неполна. Проверьте, что она скопирована из сообщения целиком.")),
    405: (_l("Запрос не понят"), _l("Откройте ссылку из сообщения ещё раз.")),
    409: (_l("Оценка уже дана"), _l("Эту оценку изменить нельзя.")),
    410: (_l("Ссылка больше не действует"),
          _l("Время, когда можно было оценить этот разговор, прошло. Спасибо, что откликнулись.")),
    413: (_l("Слишком длинный текст"), _l("Сократите комментарий до 500 символов и отправьте снова.")),
    429: (_l("Слишком много попыток"), _l("Подождите немного и попробуйте снова.")),
}


def _problem(status: int, *, page: RatingPage | None = None, headers: dict | None = None,
             detail: str | None = None, not_contacted: bool = False) -> Response:
    """A refused request as a page a customer understands, with its status (never a 500 for their input)."""
    language = _language()
    title, general = PROBLEMS.get(status, PROBLEMS[400])
    with force_locale(language):
        title, text = str(title), detail or str(general)
        rating = link_answer(page.scale, page.rating, page.offered) if page and page.rated else None
    return _render("public/problem.html", status, language, headers, title=title, text=text, rating=rating,
                   not_contacted=not_contacted)


@bp.errorhandler(HTTPException)
def _http_problem(exc: HTTPException):
    return _problem(exc.code if exc.code in PROBLEMS else 400)


def _choices(page: RatingPage) -> list[tuple[int, str]]:
    """The answers as the page lists them: good before bad; numbers from the lowest."""
    if page.scale == RatingScale.GOOD_BAD:
        return [(1, _("Хорошо")), (0, _("Плохо"))]
    return [(value, str(value)) for value in page.offered]


def _show(page: RatingPage, status: int = 200, *, chosen: int | None = None, comment: str = "",
          problem: str | None = None, token: str, ticked: bool = False, opted_out: bool = False) -> Response:
    """The page: the form (again, with `problem`, the answer `chosen`, the `comment` and the tick kept after a
    refusal), the thanks once rated, or, `opted_out`, that no more messages will come and the form to rate."""
    language = _language()
    with force_locale(language):
        context = {
            "page": page,
            "company": page.company or _("Наша компания"),
            "call_date": format_date(page.call_date, "d MMMM y") if page.call_date else None,
            "choices": _choices(page),
            "hint": (None if page.scale == RatingScale.GOOD_BAD else
                     _("%(low)s — очень плохо, %(high)s — отлично", low=page.offered[0], high=page.offered[-1])),
            "rating": link_answer(page.scale, page.rating, page.offered) if page.rated else None,
            "chosen": page.rating if chosen is None else chosen,
            "comment": comment if problem or opted_out else (page.comment or ""),
            "ticked": ticked,
            "opted_out": opted_out,
            "problem": problem,
            "comment_max": COMMENT_MAX,
            "action": url_for("rating.answer", token=token, lang=_language_asked()),
        }
    return _render("public/rating.html", status, language, **context)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _open_link(session, token: str, now: datetime):
    """The request a link names and its page, or the page that refuses it (404 unknown, 410 expired)."""
    services = _services()
    found = answers.find(session, token)
    if found is None:
        return None, None, _problem(404)
    shown = answers.page_for(session, services.ingest.initial_policy, found, services.config.CONSOLE_TIMEZONE, now)
    return found, shown, (_problem(410, page=shown) if shown.expired else None)


@bp.get("/<token>")
def page(token: str):
    services, now = _services(), _now()
    with services.db.reading() as s:
        found, shown, refused = _open_link(s, token, now)
    if refused is not None:
        return refused
    if found.opened_at is None:
        with services.db.transaction() as s:
            answers.open_page(s, found, now)
    return _show(shown, token=token)


def _link_digest(token: str) -> str | None:
    """What the throttle keys a link by: a digest, so the table never holds a working token."""
    return hashlib.sha256(token.encode()).hexdigest()[:32] if answers.well_formed(token) else None


@dataclass(frozen=True)
class AnswerForm:
    """The posted form as read: what is wrong with it in the person's words (`problem`), or None."""

    answer: int | None
    comment: str  # line breaks as "\n", trimmed; as shown again after a refusal
    do_not_contact: bool
    problem: str | None = None


def _read_form(form) -> AnswerForm:
    """The comment's problems first (they refuse any form, the tick included: a refusal writes nothing, and the
    form comes back with the tick kept), then the answer: none is fine only with the tick (an opt-out alone)."""
    raw_answer = form.get("answer", "")
    comment = form.get("comment", "").replace("\r\n", "\n").strip()  # a browser sends line breaks as CRLF
    do_not_contact = form.get("do_not_contact") == "yes"
    answer = int(raw_answer) if raw_answer.isascii() and raw_answer.isdigit() and \
        len(raw_answer) <= ANSWER_DIGITS else None
    if len(comment) > COMMENT_MAX:
        return AnswerForm(answer, comment[:COMMENT_MAX * 2], do_not_contact,
                          _("Комментарий длиннее %(limit)s символов: сократите его.", limit=COMMENT_MAX))
    if text_problem(comment, multiline=True):  # shown again without them, so the rest of it is not lost
        kept = BIDI_CONTROLS.sub("", CONTROL_IN_LINES.sub("", comment)).encode("utf-8", "ignore").decode()
        return AnswerForm(answer, kept, do_not_contact,
                          _("В комментарии есть символы, которые нельзя сохранить: уберите их."))
    if BIDI_CONTROLS.search(comment):  # shown again without them: the person checks what is left and sends it
        problem = _("В комментарии были знаки, меняющие направление текста: мы их убрали. Проверьте его.")
        return AnswerForm(answer, BIDI_CONTROLS.sub("", comment), do_not_contact, problem)
    if answer is None and not do_not_contact:
        return AnswerForm(None, comment, do_not_contact, _("Выберите оценку."))
    return AnswerForm(answer, comment, do_not_contact)


@bp.post("/<token>")
def answer(token: str):
    services, now = _services(), _now()
    keys = throttle.rating_keys(_link_digest(token), throttle.client_address(request.remote_addr))
    wait = throttle.retry_after(services.db, keys)
    if wait > 0:
        seconds = max(1, math.ceil(wait))
        with force_locale(_language()):
            detail = _("Подождите %(seconds)s с и попробуйте снова.", seconds=seconds)
        return _problem(429, headers={"Retry-After": str(seconds)}, detail=detail)
    throttle.record_failure(services.db, keys)  # every answer counts: there is no login to fail
    with force_locale(_language()):
        form = _read_form(request.form)
    with services.db.transaction() as s:
        found, shown, refused = _open_link(s, token, now)
        if refused is not None:
            return refused
        if form.problem:
            return _show(shown, 400, chosen=form.answer, comment=form.comment, problem=form.problem, token=token,
                         ticked=form.do_not_contact)
        outcome = answers.rate(s, services.ingest, found, form.answer, form.comment, form.do_not_contact, now)
        log.info("rating link: request %d %s", found.id, outcome.result.value)
    if outcome.result == Rated.OPTED_OUT and outcome.do_not_contact:
        # Not a redirect: the page says what was done and keeps the comment typed (not stored: it belongs to a
        # rating) in the form, which stays while the link works. Posting it again changes nothing.
        return _show(replace(shown, do_not_contact=True), comment=form.comment, opted_out=True, token=token)
    if outcome.result in (Rated.NOT_OFFERED, Rated.OPTED_OUT):  # OPTED_OUT here: a number the list cannot hold
        with force_locale(_language()):
            problem = _("Выберите оценку.")
        return _show(shown, 400, comment=form.comment, problem=problem, token=token, ticked=form.do_not_contact)
    if outcome.result == Rated.EXPIRED:
        return _problem(410, page=shown)
    if outcome.result == Rated.LOCKED:
        return _problem(409, page=shown, not_contacted=outcome.do_not_contact)
    # Post/redirect/get: reloading the thank-you page does not post the answer again.
    return redirect(url_for("rating.page", token=token, lang=_language_asked()), 303)


OTHER_METHODS = ["PUT", "PATCH", "DELETE"]
ANY_METHOD = ["GET", "HEAD", "POST", *OTHER_METHODS]


@bp.route("/<token>", methods=OTHER_METHODS)
def other_method(token: str):
    """The page's 405 rather than the console's JSON (what no rule of the blueprint matches never reaches its
    handler). Also keeps Werkzeug from redirecting such a request to `/<token>/` below."""
    return _problem(405, headers={"Allow": "GET, HEAD, POST, OPTIONS"})


@bp.get("/<token>/")
def page_with_slash(token: str):
    """`/r/<token>/` (a slash added by a messenger or by hand): the page's own address. 308 keeps the method,
    but only GET and HEAD come here; a POST to it gets the public 404 (`elsewhere`)."""
    if not answers.well_formed(token):
        return _problem(404)
    return redirect(url_for("rating.page", token=token, lang=_language_asked()), 308)


@bp.route("/", methods=ANY_METHOD)
@bp.route("/<token>/", methods=["POST", *OTHER_METHODS])
@bp.route("/<token>/<path:more>", methods=ANY_METHOD)
def elsewhere(token: str = "", more: str = ""):
    """Any other address under /r/: the public page's 404 in the page's language, never the console's page or
    its JSON (the console's handlers answer what no blueprint's rule matched)."""
    return _problem(404)
