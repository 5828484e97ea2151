"""The public rating page (`/r/<token>`, issue #19): what a customer sees, what their answer becomes (a customer
score of origin `link`, through the same policy and targets, each effect once), and what hostile or stale
requests get (a clear page, a 4xx, nothing written). On SQLite, and on PostgreSQL when TEST_DATABASE_URL is set."""
from __future__ import annotations

import base64
import logging
import re
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from babel.messages.pofile import read_po
from sqlalchemy import func, select

from app import create_app
from connector.core import throttle
from connector.core.models import Call, DeliveryJob, DoNotContact, RatingRequest, Score, SettingsAudit
from connector.core.users import unlock
from connector.inbound.link import settings as link_settings
from connector.inbound.link.rules import token_for, token_hash
from tests.conftest import ADMIN_TOKEN, MangoPoster, make_config, summary

NUMBER = "79001234567"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
HOOK_SECRET = "whsec_" + base64.b64encode(b"a receiver's secret of 32 bytes!").decode()
# The call of `summary()` ended at 08:27:50 UTC on 22 November 2025: that day in Moscow too.
CALL_DAY_RU, CALL_DAY_EN = "22 ноября 2025", "22 November 2025"


class Page:
    """One app with one call and its rating request, as a customer's phone meets it."""

    def __init__(self, app):
        self.app, self.client = app, app.test_client()
        self.db = app.extensions["connector"].db
        self.config = app.extensions["connector"].config

    def call(self, entry_id="call-1", **kwargs) -> None:
        assert MangoPoster(self.client)("events/summary", summary(entry_id, **{"customer": NUMBER, **kwargs})).status_code == 200

    def request(self, entry_id="call-1", *, status="sent", expires_in=timedelta(days=3), number=NUMBER) -> str:
        """A rating request for the call, in `status`; returns its link's token."""
        now = datetime.now(timezone.utc)
        with self.db.transaction() as s:
            call = s.scalars(select(Call).where(Call.entry_id == entry_id)).one()
            request = RatingRequest(call_row=call.id, number=number, line_number=call.line_number, status=status,
                                    due_at=now - timedelta(hours=1), expires_at=now + expires_in,
                                    sent_at=None if status in ("scheduled", "skipped", "queued") else now)
            s.add(request)
            s.flush()
            token = token_for(self.config.SECRET_KEY, request.id)
            request.token_hash = token_hash(token)
        return token

    def settings(self, **changes) -> None:
        with self.db.transaction() as s:
            link_settings.save(s, changes, self.config.PUBLIC_BASE_URL, "test")

    def rate(self, token, answer, comment="", do_not_contact=False, **headers):
        data = {"answer": str(answer), "comment": comment}
        if do_not_contact:
            data["do_not_contact"] = "yes"
        return self.client.post(f"/r/{token}", data=data, headers=headers)

    def stored(self, token) -> RatingRequest:
        with self.db.reading() as s:
            return s.scalars(select(RatingRequest).where(RatingRequest.token_hash == token_hash(token))).one()

    def count(self, model) -> int:
        with self.db.reading() as s:
            return s.scalar(select(func.count()).select_from(model))

    def api_call(self, entry_id="call-1") -> dict:
        return self.client.get(f"/api/v1/calls/{entry_id}", headers=AUTH).json

    def written(self) -> tuple:
        """Everything an answer could write: scores, jobs, do-not-contact rows, the request's rating."""
        with self.db.reading() as s:
            rated = s.scalars(select(RatingRequest.rated_at)).all()
        return self.count(Score), self.count(DeliveryJob), self.count(DoNotContact), rated


@contextmanager
def page_app(db_url, **overrides):
    app = create_app(make_config(db_url, **overrides))
    app.config["TESTING"] = True
    try:
        yield Page(app)
    finally:
        app.extensions["connector"].reads.close()
        app.extensions["connector"].db.dispose()


@pytest.fixture
def page(db_url):
    with page_app(db_url) as p:
        p.call()
        yield p


def text(response) -> str:
    return response.get_data(as_text=True)


def test_a_valid_link_shows_the_company_and_the_day_and_nothing_personal(page):
    page.settings(company="ООО «Ромашка»")
    token = page.request()
    answer = page.client.get(f"/r/{token}")
    body = text(answer)
    assert answer.status_code == 200 and '<html lang="ru">' in body
    assert "<title>Оцените разговор — ООО «Ромашка»</title>" in body
    assert f"ООО «Ромашка» благодарит вас за звонок {CALL_DAY_RU}." in body
    assert "Хорошо" in body and "Плохо" in body and "Больше не присылать мне такие сообщения" in body
    for personal in (NUMBER, NUMBER[1:], "101", "74950000000"):  # the number, the operator, the line
        assert personal not in body
    assert "Set-Cookie" not in answer.headers  # no session, no login: the token is the only key
    assert answer.headers["Cache-Control"] == "no-store" and "script-src 'none'" in answer.headers[
        "Content-Security-Policy"]
    first = page.stored(token).opened_at
    assert first is not None
    page.client.get(f"/r/{token}")
    assert page.stored(token).opened_at == first  # the first open only


def test_english_when_the_browser_prefers_it_and_our_company_without_a_name(page):
    token = page.request()
    body = text(page.client.get(f"/r/{token}", headers={"Accept-Language": "en-GB,en;q=0.9,ru;q=0.5"}))
    assert '<html lang="en">' in body and f"Our company thanks you for your call on {CALL_DAY_EN}." in body
    assert "Good" in body and "Bad" in body and "Do not contact me again" in body
    russian = text(page.client.get(f"/r/{token}", headers={"Accept-Language": "ru-RU,ru;q=0.9,en;q=0.8"}))
    assert f"Наша компания благодарит вас за звонок {CALL_DAY_RU}." in russian
    assert '<html lang="ru">' in text(page.client.get(f"/r/{token}", headers={"Accept-Language": "de-DE"}))
    assert '<html lang="en">' in text(page.client.get(f"/r/{token}?lang=en"))  # the page's own switch


@pytest.mark.parametrize("scale, answer, score, shown", [
    ("good_bad", 1, 10, "Хорошо"), ("good_bad", 0, 1, "Плохо"),
    ("five", 1, 1, "1 из 5"), ("five", 2, 3, "2 из 5"), ("five", 3, 6, "3 из 5"), ("five", 4, 8, "4 из 5"),
    ("five", 5, 10, "5 из 5"),
    ("survey", 7, 7, "7 из 10"),
])
def test_an_answer_becomes_a_link_score_on_the_call(page, scale, answer, score, shown):
    page.settings(scale=scale)
    token = page.request()
    response = page.rate(token, answer, comment="Всё решили быстро")
    assert response.status_code == 303 and response.headers["Location"].endswith(f"/r/{token}")
    call = page.api_call()
    assert call["customer_score"] == score and call["survey"] == "answered"
    [given] = call["scores"]
    assert (given["origin"], given["value"], given["comment"], given["status"]) == \
        ("link", score, "Всё решили быстро", "accepted")
    stored = page.stored(token)
    assert (stored.rating, stored.comment) == (answer, "Всё решили быстро") and stored.rated_at is not None
    thanks = text(page.client.get(f"/r/{token}"))
    assert "Спасибо за оценку!" in thanks and f'id="rating-given">{shown}</span>' in thanks
    assert "Всё решили быстро" in thanks and "Оценку уже нельзя изменить." in thanks  # the lock is on by default


def test_the_target_gets_the_score_once_and_a_repeated_post_adds_nothing(db_url):
    with page_app(db_url, CRM="webhook", WEBHOOK_TARGET_URL="http://127.0.0.1:9/hook",
                  WEBHOOK_TARGET_SECRET=HOOK_SECRET) as page:
        page.call()
        token = page.request()
        before = page.count(DeliveryJob)
        assert page.rate(token, 0, comment="Долго ждал").status_code == 303
        with page.db.reading() as s:
            jobs = s.execute(select(DeliveryJob.crm, DeliveryJob.kind)).all()
        assert page.count(DeliveryJob) == before + 1 and ("webhook", "scored") in jobs
        assert page.rate(token, 0, comment="Долго ждал").status_code == 303  # a double tap, a reload
        assert page.count(DeliveryJob) == before + 1 and page.count(Score) == 1


def test_with_the_lock_a_different_rating_is_refused_and_nothing_changes(page):
    token = page.request()
    page.rate(token, 1)
    written = page.written()
    answer = page.rate(token, 0, comment="Передумал")
    assert answer.status_code == 409
    assert "Оценка уже дана" in text(answer) and 'id="rating-given">Хорошо</span>' in text(answer)
    assert page.written() == written and page.stored(token).rating == 1 and page.api_call()["customer_score"] == 10
    # Not to be contacted is the customer's wish even when the rating can no longer change.
    answer = page.rate(token, 0, do_not_contact=True)
    assert answer.status_code == 409 and "Мы больше не будем присылать вам такие сообщения." in text(answer)
    assert page.written()[:3] == (written[0], written[1], 1) and page.stored(token).rating == 1


def test_without_the_lock_the_customer_changes_the_rating_until_the_link_expires(db_url):
    with page_app(db_url, QA_LOCK_SCORE="false") as page:
        page.call()
        page.settings(scale="five")
        token = page.request()
        page.rate(token, 2)
        assert "Изменить оценку" in text(page.client.get(f"/r/{token}"))
        assert page.rate(token, 5, comment="Перезвонили и всё решили").status_code == 303
        assert page.api_call()["customer_score"] == 10
        assert [s["value"] for s in page.api_call()["scores"]] == [3, 10]
        assert (page.stored(token).rating, page.stored(token).comment) == (5, "Перезвонили и всё решили")
        with page.db.transaction() as s:  # the link expires
            s.get(RatingRequest, page.stored(token).id).expires_at = datetime.now(timezone.utc) - timedelta(seconds=1)
        written = page.written()
        answer = page.rate(token, 1)
        assert answer.status_code == 410 and 'id="rating-given">5 из 5</span>' in text(answer)
        assert page.written() == written


def test_do_not_contact_puts_the_number_on_the_list_and_keeps_an_admins_row(page):
    page.call("call-2", customer="79007654321")
    token = page.request()
    assert page.rate(token, 1, do_not_contact=True).status_code == 303
    with page.db.reading() as s:
        row = s.get(DoNotContact, NUMBER)
        assert (row.source, row.actor) == ("customer", None)
    assert "Мы больше не будем присылать вам такие сообщения." in text(page.client.get(f"/r/{token}"))
    with page.db.transaction() as s:
        s.add(DoNotContact(number="79007654321", source="admin", actor="ann"))
    other = page.request("call-2", number="79007654321")
    assert page.rate(other, 0, do_not_contact=True).status_code == 303
    with page.db.reading() as s:
        assert s.get(DoNotContact, "79007654321").source == "admin"


def test_a_comment_with_bidi_controls_comes_back_without_them_and_the_tick_kept(page):
    token = page.request()
    refused = page.rate(token, 1, comment="Оператор RTL\u202eLTR\r\nвежлив\u200f", do_not_contact=True)
    body = text(refused)
    assert refused.status_code == 400 and 'role="alert"' in body
    assert "мы их убрали. Проверьте его." in body and "\u202e" not in body
    assert ">Оператор RTLLTR\nвежлив\u200f</textarea>" in body  # a mark reorders nothing: it may stay
    assert 'name="do_not_contact" value="yes" checked' in body and 'value="1" required checked' in body
    assert page.written() == (0, 0, 0, [None])
    english = page.client.post(f"/r/{token}", data={"answer": "1", "comment": "a\u202db"},
                               headers={"Accept-Language": "en"})
    assert english.status_code == 400 and "we removed them. Please check it." in text(english)
    assert page.rate(token, 1, comment="Оператор вежлив\u200f").status_code == 303  # the marks are kept
    assert page.stored(token).comment == "Оператор вежлив\u200f"


def test_an_opt_out_alone_lists_the_number_and_rates_nothing(page):
    token = page.request()
    page.client.get(f"/r/{token}")
    answer = page.client.post(f"/r/{token}", data={"comment": "больше не звоните", "do_not_contact": "yes"})
    body = text(answer)
    assert answer.status_code == 200 and "<h1>Вы отказались от сообщений</h1>" in body
    assert 'id="not-contacted" role="status">Мы больше не будем присылать вам такие сообщения.' in body
    assert "Пока ссылка действует, вы можете оценить разговор." in body and 'name="answer"' in body
    assert ">больше не звоните</textarea>" in body  # kept in the form, not stored: a comment goes with a rating
    assert 'name="do_not_contact"' not in body and "Выберите оценку." not in body
    with page.db.reading() as s:
        row = s.get(DoNotContact, NUMBER)
        assert (row.source, row.actor) == ("customer", None)
        audits = [(a.actor, a.before, a.after) for a in s.scalars(select(SettingsAudit).where(
            SettingsAudit.scope == "do_not_contact"))]
        assert audits == [("rating_page", {}, {"number": NUMBER, "source": "customer"})]
    assert page.written() == (0, 0, 1, [None]) and page.stored(token).comment is None
    assert page.api_call()["customer_score"] is None
    again = page.client.post(f"/r/{token}", data={"do_not_contact": "yes"}, headers={"Accept-Language": "en"})
    assert again.status_code == 200 and "We will not send you such messages again." in text(again)
    assert "<h1>You have opted out of these messages</h1>" in text(again)
    assert page.written() == (0, 0, 1, [None])  # already listed: no second row, no second audit
    with page.db.reading() as s:
        assert s.scalar(select(func.count()).select_from(SettingsAudit).where(
            SettingsAudit.scope == "do_not_contact")) == 1
    # the link still works: a rating later is taken as any other
    assert page.rate(token, 0).status_code == 303 and page.stored(token).rating == 0
    assert "Мы больше не будем присылать вам такие сообщения." in text(page.client.get(f"/r/{token}"))


def test_an_opt_out_alone_keeps_an_admins_row_and_an_expired_link_lists_nothing(page):
    with page.db.transaction() as s:
        s.add(DoNotContact(number=NUMBER, source="admin", actor="ann"))
    token = page.request()
    answer = page.client.post(f"/r/{token}", data={"do_not_contact": "yes"})
    assert answer.status_code == 200 and "Мы больше не будем присылать вам такие сообщения." in text(answer)
    with page.db.reading() as s:
        assert (s.get(DoNotContact, NUMBER).source, s.get(DoNotContact, NUMBER).actor) == ("admin", "ann")
    page.call("call-2", customer="79007654321")
    expired = page.request("call-2", number="79007654321", expires_in=timedelta(seconds=-1))
    gone = page.client.post(f"/r/{expired}", data={"do_not_contact": "yes"})
    assert gone.status_code == 410 and "Ссылка больше не действует" in text(gone)
    assert page.count(DoNotContact) == 1 and page.written()[:2] == (0, 0)


def test_an_address_with_a_slash_too_many_gets_the_page_or_its_own_404(page):
    token = page.request()
    moved = page.client.get(f"/r/{token}/?lang=en")
    assert moved.status_code in (301, 308) and moved.headers["Location"].endswith(f"/r/{token}?lang=en")
    followed = page.client.get(f"/r/{token}/", follow_redirects=True)
    assert followed.status_code == 200 and "<h1>Как прошёл разговор?</h1>" in text(followed)
    for method, path in [("GET", "/r/"), ("GET", "/r"), ("GET", f"/r/{token}/more"), ("GET", f"/r/{token}/a/b"),
                         ("POST", f"/r/{token}/"), ("POST", "/r/"), ("GET", "/r/short/"), ("HEAD", "/r/"),
                         ("PUT", f"/r/{token}/"), ("DELETE", f"/r/{token}/x")]:
        for language, title in [("ru", "Ссылка не найдена"), ("en", "Link not found")]:
            answer = page.client.open(path, method=method, headers={"Accept-Language": language},
                                      follow_redirects=path == "/r")
            assert answer.status_code == 404, (method, path)
            assert answer.mimetype == "text/html" and "Set-Cookie" not in answer.headers, (method, path)
            if method != "HEAD":
                body = text(answer)
                assert f"<h1>{title}</h1>" in body and f'<html lang="{language}">' in body, (method, path)
                assert "оператор" not in body and "login" not in body and "error" not in body, (method, path)
    put = page.client.put(f"/r/{token}", headers={"Accept-Language": "en"})
    assert put.status_code == 405 and "<h1>The request was not understood</h1>" in text(put) and "GET" in put.headers["Allow"]
    assert page.written() == (0, 0, 0, [None])


def test_unknown_malformed_expired_and_unsent_links_get_a_clear_page(page):
    sent = page.request()
    page.call("call-2")
    page.call("call-3")
    expired = page.request("call-2", expires_in=timedelta(seconds=-1))
    waiting = page.request("call-3", status="queued")
    unknown = token_for("another-secret", 1)
    for token, status, title in [(unknown, 404, "Ссылка не найдена"), (sent[:-1], 404, "Ссылка не найдена"),
                                 (sent + "A", 404, "Ссылка не найдена"), ("x" * 5000, 404, "Ссылка не найдена"),
                                 (sent[:-1] + "=", 404, "Ссылка не найдена"), (waiting, 404, "Ссылка не найдена"),
                                 (expired, 410, "Ссылка больше не действует")]:
        for answer in (page.client.get(f"/r/{token}"), page.rate(token, 1)):
            assert answer.status_code == status, token
            assert f"<h1>{title}</h1>" in text(answer) and '<html lang="ru">' in text(answer)
    english = page.client.get(f"/r/{unknown}", headers={"Accept-Language": "en"})
    assert "<h1>Link not found</h1>" in text(english)
    assert page.stored(expired).opened_at is None and page.stored(waiting).opened_at is None
    assert page.written()[:3] == (0, 0, 0)


@pytest.mark.parametrize("form, message", [
    ({"answer": "1", "comment": "х" * 10_000}, "Комментарий длиннее 500 символов: сократите его."),
    ({"answer": "1", "comment": "до\x00после"}, "В комментарии есть символы, которые нельзя сохранить"),
    ({"answer": "1", "comment": "звонок\x1b[31m"}, "В комментарии есть символы, которые нельзя сохранить"),
    ({"answer": "хорошо"}, "Выберите оценку."),
    ({"answer": "1.0"}, "Выберите оценку."),
    ({"answer": "-1"}, "Выберите оценку."),
    ({"answer": "99999999999999999999999"}, "Выберите оценку."),
    ({"answer": "7"}, "Выберите оценку."),  # good/bad offers 0 and 1 only
    ({"comment": "без оценки"}, "Выберите оценку."),
    ({"answer": "1", "comment": "RTL\u202eLTR"}, "В комментарии были знаки, меняющие направление текста"),
    ({"comment": "RTL\u2067LTR\u2069", "do_not_contact": "yes"}, "знаки, меняющие направление текста"),
    ({}, "Выберите оценку."),
])
def test_bad_answers_get_the_form_again_with_a_clear_message_and_nothing_is_written(page, form, message):
    token = page.request()
    answer = page.client.post(f"/r/{token}", data=form)
    assert answer.status_code == 400
    body = text(answer)
    assert message in body and 'role="alert"' in body and 'name="answer"' in body
    assert "\x00" not in body and "\x1b" not in body
    assert not any(chr(c) in body for c in [*range(0x202A, 0x202F), *range(0x2066, 0x206A)])
    assert page.written() == (0, 0, 0, [None])


def test_a_huge_body_or_a_json_one_is_refused_and_nothing_is_written(page):
    token = page.request()
    huge = page.client.post(f"/r/{token}", data={"answer": "1", "comment": "x" * 1_000_000})
    assert huge.status_code == 413 and "Слишком длинный текст" in text(huge)
    assert page.client.post(f"/r/{token}", json={"answer": 1}).status_code == 400
    assert page.client.put(f"/r/{token}", data={"answer": "1"}).status_code == 405
    assert page.written() == (0, 0, 0, [None])


def test_markup_in_the_comment_or_the_address_is_shown_as_text(page):
    token = page.request()
    script = "<script>alert(1)</script>"
    assert page.client.get(f"/r/{token}?q={script}&lang={script}").status_code == 200
    assert "<script" not in text(page.client.get(f"/r/{token}?q={script}&lang={script}"))
    assert "<script" not in text(page.client.get(f"/r/{script}")) and "alert" not in text(page.client.get(f"/r/{script}"))
    assert page.rate(token, 1, comment=script).status_code == 303
    assert page.stored(token).comment == script  # plain text, as given
    body = text(page.client.get(f"/r/{token}"))
    assert "<script" not in body and "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    refused = page.client.post(f"/r/{token}?x={script}", data={"answer": "9", "comment": script})
    assert refused.status_code in (400, 409) and "<script" not in text(refused)


def test_too_many_answers_to_one_link_get_429_with_retry_after(page):
    token = page.request()
    answers = [page.rate(token, "x") for _ in range(12)]
    assert [a.status_code for a in answers[:11]] == [400] * 11
    assert answers[11].status_code == 429 and int(answers[11].headers["Retry-After"]) >= 1
    assert "Слишком много попыток" in text(answers[11]) and "попробуйте снова" in text(answers[11])
    assert page.rate(token, 1).status_code == 429 and page.written() == (0, 0, 0, [None])
    page.call("call-2")
    assert page.rate(page.request("call-2"), 1).status_code == 303  # another link from the same address


def test_too_many_answers_from_one_address_get_429(page):
    tokens = []
    for n in range(62):
        page.call(f"call-x{n}")
        tokens.append(page.request(f"call-x{n}"))
    codes = [page.rate(token, "x").status_code for token in tokens]
    assert codes[:61] == [400] * 61 and codes[61] == 429
    other = page.client.post(f"/r/{tokens[0]}", data={"answer": "1"}, environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert other.status_code == 303  # another address is not held back
    with page.db.transaction() as s:
        assert throttle.active(s) == []  # not a login: the console's lockout list leaves it out
        lifted = unlock(s, actor="ann", address="127.0.0.1")  # an admin lifting the address lifts it too
    throttle.forget_cached(page.db, lifted)
    assert page.rate(tokens[1], 1).status_code == 303


def test_the_number_never_reaches_the_logs(page, caplog):
    caplog.set_level(logging.DEBUG)
    token = page.request()
    page.client.get(f"/r/{token}")
    page.rate(token, 0, comment="Плохо слышно", do_not_contact=True)
    page.rate(token, 1)
    page.client.get(f"/r/{token}")
    assert caplog.records and NUMBER[1:] not in caplog.text and "9001234567" not in caplog.text


def test_every_message_of_the_page_has_an_english_translation():
    root = Path(__file__).resolve().parents[1]
    used = set()
    for path in [root / "web" / "rating.py", *(root / "web" / "templates" / "public").glob("*.html")]:
        used |= {m.group(2) for m in re.finditer(r"""\b_l?\(\s*(["'])(.+?)\1""", path.read_text())}
    with open(root / "webui" / "translations" / "en" / "LC_MESSAGES" / "messages.po", "rb") as f:
        catalogue = read_po(f)
    assert len(used) > 20
    assert sorted(m for m in used if not (catalogue.get(m) and catalogue.get(m).string)) == []
