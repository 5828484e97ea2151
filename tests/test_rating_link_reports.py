"""The rating link in the reports: the response rate per channel and the rating requests' funnel, as a
supervisor reads them on /reports, as the API gives them and as the Excel export writes them.

The figures below were worked out by hand from the rows `known_calls` inserts (its docstring shows how)."""
import io
import re
from datetime import datetime, timedelta, timezone
from html import unescape
from html.parser import HTMLParser

import pytest
from openpyxl import load_workbook

from connector.console.reports import ReportFilter, figures
from connector.core.models import (Call, RatingRequest, RequestReason, RequestStatus, Score, ScoreOrigin,
                                   ScoreSource)
from connector.core.policy import ACCEPTED, DUPLICATE, KEPT, REFUSED
from tests.conftest import ADMIN_TOKEN, counted_statements
from tests.test_reports import _logged_in_as

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
LINE_A, LINE_B = "74950000001", "74950000002"
# Operator 101's calls at 13:00 in Moscow on 20 November; operator 102's at 22:30 UTC on the 20th, which is
# 01:30 on the 21st in Moscow (the account's zone by default).
ON_20TH = datetime(2026, 11, 20, 10, 0, tzinfo=timezone.utc)
ON_21ST_IN_MOSCOW = datetime(2026, 11, 20, 22, 30, tzinfo=timezone.utc)


def _call(s, entry_id, extension, line, at, *, direction="inbound", talk=60, customer_score=None) -> Call:
    call = Call(entry_id=entry_id, direction=direction, operator_extension=extension, line_number=line,
                customer_phone="79001234567", created_at=at, listed_at=at, ended_at=at + timedelta(seconds=talk + 10),
                talk_seconds=talk, customer_score=customer_score)
    s.add(call)
    s.flush()
    return call


def _score(s, call, origin, value, status=ACCEPTED, source=ScoreSource.CUSTOMER):
    s.add(Score(call_id=call.id, source=source.value, origin=origin.value, raw=str(value), value=value,
                status=status.value, reason="", rated_at=call.ended_at))


def _request(s, call, status, reason=None, *, sent=False, delivered=False, opened=False, rated=False):
    at = call.ended_at + timedelta(hours=2)
    s.add(RatingRequest(call_row=call.id, number=call.customer_phone, line_number=call.line_number,
                        status=status.value, reason=reason and reason.value, due_at=at,
                        expires_at=at + timedelta(days=3),
                        sent_at=at if sent else None, delivered_at=at if delivered else None,
                        opened_at=at + timedelta(minutes=5) if opened else None,
                        rated_at=at + timedelta(minutes=6) if rated else None))


@pytest.fixture
def known_calls(db):
    """Operator 101, line A, on 20 November (Moscow):
      s1 inbound, IVR survey 3; its request delivered, not opened;
      s2 inbound, the PBX's quality control 9; its request sent, no delivery report yet;
      s3 outbound, rated 10 by the link; its request delivered, opened, rated;
      s4 inbound, IVR survey 8, then the link 4 (kept: the first stays in force): two channels, one call; its
         request sent, opened and rated with no delivery report (opening proves delivery);
      s5 inbound, a score through the API refused (not a score) and a supervisor's review: not rated by the
         customer; its request delivered and opened, not rated;
      s6 not answered (talk 0) with an IVR score, s7 internal with an API score: neither could be rated, so
         neither counts.
    Operator 102, line B, on 21 November (Moscow), all answered, external:
      t1 the API 7, sent twice (accepted, then a duplicate): one call; its request accepted by the PBX;
      t2 a QA form of the PBX's quality control (a supervisor's, not the customer's); its request not delivered
         (failed): the carrier's failure, so it was sent, though the PBX's report of sending never came;
      t3, t4 skipped (do not contact), t5 skipped (the daily cap), t6 failed (billing, never sent), t7 queued,
      t8 scheduled.
    Rateable: s1-s5 and t1-t8 = 13. Rated: IVR s1, s4 (2); quality s2 (1); link s3, s4 (2); API t1 (1); any 5.
    Requests 13: skipped 3 (do not contact 2, daily cap 1), due 10, sent 6 (s1-s5, t2), delivered 4 (s1, s3,
    s4, s5), opened 3 (s3, s4, s5), rated 2 (s3, s4); waiting 3 (t1, t7, t8); failed 2 (t2, t6)."""
    with db.transaction() as s:
        s1 = _call(s, "s1", "101", LINE_A, ON_20TH, customer_score=3)
        s2 = _call(s, "s2", "101", LINE_A, ON_20TH, customer_score=9)
        s3 = _call(s, "s3", "101", LINE_A, ON_20TH, direction="outbound", customer_score=10)
        s4 = _call(s, "s4", "101", LINE_A, ON_20TH, customer_score=8)
        s5 = _call(s, "s5", "101", LINE_A, ON_20TH)
        s6 = _call(s, "s6", "101", LINE_A, ON_20TH, talk=0, customer_score=5)
        s7 = _call(s, "s7", "101", LINE_A, ON_20TH, direction="internal", customer_score=6)
        _score(s, s1, ScoreOrigin.PBX_SURVEY, 3)
        _score(s, s2, ScoreOrigin.PBX_QUALITY, 9)
        _score(s, s3, ScoreOrigin.LINK, 10)
        _score(s, s4, ScoreOrigin.PBX_SURVEY, 8)
        _score(s, s4, ScoreOrigin.LINK, 4, KEPT)
        _score(s, s5, ScoreOrigin.API, 99, REFUSED)
        _score(s, s5, ScoreOrigin.REVIEW, 7, source=ScoreSource.SUPERVISOR)
        _score(s, s6, ScoreOrigin.PBX_SURVEY, 5)
        _score(s, s7, ScoreOrigin.API, 6)
        _request(s, s1, RequestStatus.DELIVERED, sent=True, delivered=True)
        _request(s, s2, RequestStatus.SENT, sent=True)
        _request(s, s3, RequestStatus.DELIVERED, sent=True, delivered=True, opened=True, rated=True)
        _request(s, s4, RequestStatus.SENT, sent=True, opened=True, rated=True)
        _request(s, s5, RequestStatus.DELIVERED, sent=True, delivered=True, opened=True)
        t = [_call(s, f"t{i}", "102", LINE_B, ON_21ST_IN_MOSCOW, direction="outbound" if i == 3 else "inbound",
                   customer_score=7 if i == 1 else None) for i in range(1, 9)]
        _score(s, t[0], ScoreOrigin.API, 7)
        _score(s, t[0], ScoreOrigin.API, 7, DUPLICATE)
        _score(s, t[1], ScoreOrigin.PBX_QUALITY, 2, source=ScoreSource.SUPERVISOR)
        _request(s, t[0], RequestStatus.ACCEPTED)
        _request(s, t[1], RequestStatus.FAILED, RequestReason.NOT_DELIVERED)
        _request(s, t[2], RequestStatus.SKIPPED, RequestReason.DO_NOT_CONTACT)
        _request(s, t[3], RequestStatus.SKIPPED, RequestReason.DO_NOT_CONTACT)
        _request(s, t[4], RequestStatus.SKIPPED, RequestReason.DAILY_CAP)
        _request(s, t[5], RequestStatus.FAILED, RequestReason.BILLING)
        _request(s, t[6], RequestStatus.QUEUED)
        _request(s, t[7], RequestStatus.SCHEDULED)


def _rows(page: str, table_id: str) -> list[list[str]]:
    """A table of the page as a person reads it: each row's cells, as text."""
    table = page.split(f'id="{table_id}"')[1].split("</table>")[0].split("<tbody>")[1]
    return [[unescape(re.sub(r"<[^>]+>", "", cell)).strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
            for row in re.findall(r"<tr[^>]*>(.*?)</tr>", table, re.S)]


def _page(client, path="/reports") -> str:
    response = client.get(path)
    assert response.status_code == 200
    return response.get_data(as_text=True)


# What a supervisor reads for all the calls: channel, rated, could be rated, response rate in %.
ALL_CHANNELS = [["опрос АТС (клавиши)", "2", "13", "15.4"], ["контроль качества АТС", "1", "13", "7.7"],
                ["ссылка в SMS", "2", "13", "15.4"], ["API оценок", "1", "13", "7.7"],
                ["Любой канал", "5", "13", "38.5"]]
# Step, requests, % of the step before, % of due.
ALL_FUNNEL = [["К отправке", "10", "—", "100.0"], ["Отправлено", "6", "60.0", "60.0"],
              ["Доставлено", "4", "66.7", "40.0"], ["Открыто", "3", "75.0", "30.0"],
              ["Оценено", "2", "66.7", "20.0"]]


def test_the_page_shows_the_response_rate_per_channel_and_the_funnel(client, db, known_calls):
    _logged_in_as(client, db, "sam", "supervisor")
    page = _page(client)
    assert _rows(page, "report-channels") == ALL_CHANNELS
    assert _rows(page, "report-funnel") == ALL_FUNNEL
    assert "Всего запросов: 13; пропущено: 3; ждут отправки: 3; не удались: 2." in page
    assert _rows(page, "report-skipped") == [["номер в списке «не беспокоить»", "2"],
                                             ["этому номеру сегодня уже отправляли", "1"]]
    assert _rows(page, "report-failed") == [["АТС: недостаточно средств или ограничение тарифа", "1"],
                                            ["оператор связи не доставил SMS", "1"]]
    # The definitions are on the page, where the figures are.
    rule = unescape(page.split('id="channels-rule"')[1].split("</p>")[0])
    assert "отвеченных внешних" in rule and "«Любой канал» — один раз" in rule
    assert "открытая ссылка значит, что SMS доставлено" in unescape(page.split('id="funnel-rule"')[1].split("</p>")[0])
    # No code reaches the page.
    for code in ("mango_dtmf", "do_not_contact", "daily_cap", "not_delivered", "billing"):
        assert code not in page
    # On a phone each row is a card, each figure under its name.
    assert '<table id="report-channels" class="cards">' in page and 'data-label="Можно было оценить"' in page


def test_the_page_in_english(client, db, known_calls):
    _logged_in_as(client, db, "sam", "supervisor")
    page = _page(client, "/reports?lang=en")
    assert _rows(page, "report-channels") == [
        ["PBX survey (keypad)", "2", "13", "15.4"], ["PBX quality control", "1", "13", "7.7"],
        ["SMS link", "2", "13", "15.4"], ["score API", "1", "13", "7.7"], ["Any channel", "5", "13", "38.5"]]
    assert [row[0] for row in _rows(page, "report-funnel")] == ["Due", "Sent", "Delivered", "Opened", "Rated"]
    assert _rows(page, "report-skipped")[0] == ["number on the do-not-contact list", "2"]
    assert "Response by channel" in page and "Rating requests by link" in page


class _Cells(HTMLParser):
    """Every cell's `data-label` of a table, as a browser parses the page (an unescaped quote splits it)."""

    def __init__(self, table_id):
        super().__init__()
        self.table_id, self.inside, self.labels = table_id, False, []

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.inside = dict(attrs).get("id") == self.table_id
        elif tag == "td" and self.inside:
            self.labels.append(attrs)

    def handle_endtag(self, tag):
        if tag == "table":
            self.inside = False


@pytest.mark.parametrize("lang, funnel", [
    ("ru", {"Шаг", "Запросов", "От предыдущего шага, %", "От «К отправке», %"}),
    ("en", {"Step", "Requests", "Of the step before, %", 'Of "Due", %'})])
def test_every_cards_label_is_one_well_formed_attribute(client, db, known_calls, lang, funnel):
    _logged_in_as(client, db, "sam", "supervisor")
    page = _page(client, f"/reports?lang={lang}")
    for table_id, expected in [("report-funnel", funnel), ("report-channels", None)]:
        parser = _Cells(table_id)
        parser.feed(page)
        assert parser.labels, table_id
        for attrs in parser.labels:  # the label and nothing else: no stray attribute out of a split one
            assert [name for name, _ in attrs] == ["data-label"], (table_id, attrs)
        labels = {dict(attrs)["data-label"] for attrs in parser.labels}
        assert expected is None or labels == expected, labels
        assert all(label.strip() and "=" not in label for label in labels), labels


def test_the_page_counts_local_days_and_filters_by_line(client, db, known_calls):
    _logged_in_as(client, db, "sam", "supervisor")
    # 22:30 UTC on the 20th is the 21st in Moscow: operator 102's calls only.
    on_21st = _page(client, "/reports?date_from=2026-11-21")
    assert _rows(on_21st, "report-channels")[3:] == [["API оценок", "1", "8", "12.5"],
                                                     ["Любой канал", "1", "8", "12.5"]]
    assert _rows(on_21st, "report-funnel") == [["К отправке", "5", "—", "100.0"], ["Отправлено", "1", "20.0", "20.0"],
                                               ["Доставлено", "0", "0.0", "0.0"], ["Открыто", "0", "—", "0.0"],
                                               ["Оценено", "0", "—", "0.0"]]
    before_21st = _page(client, "/reports?date_to=2026-11-21")
    assert _rows(before_21st, "report-channels")[-1] == ["Любой канал", "4", "5", "80.0"]
    assert "Всего запросов: 5; пропущено: 0; ждут отправки: 0; не удались: 0." in before_21st
    assert 'id="report-skipped"' not in before_21st  # nothing skipped: only the heading with its 0
    line_b = _page(client, f"/reports?line={LINE_B}")
    assert _rows(line_b, "report-channels") == _rows(on_21st, "report-channels")
    assert _rows(line_b, "report-funnel") == _rows(on_21st, "report-funnel")
    nothing = _page(client, "/reports?date_from=2030-01-01")
    assert _rows(nothing, "report-channels")[-1] == ["Любой канал", "0", "0", "—"]
    assert _rows(nothing, "report-funnel")[0] == ["К отправке", "0", "—", "—"]


def test_an_operator_sees_only_their_own_calls_figures(client, db, known_calls):
    _logged_in_as(client, db, "olga", "operator", ["101"])
    page = _page(client)
    assert _rows(page, "report-channels") == [["опрос АТС (клавиши)", "2", "5", "40.0"],
                                              ["контроль качества АТС", "1", "5", "20.0"],
                                              ["ссылка в SMS", "2", "5", "40.0"], ["API оценок", "0", "5", "0.0"],
                                              ["Любой канал", "4", "5", "80.0"]]
    assert _rows(page, "report-funnel") == [["К отправке", "5", "—", "100.0"], ["Отправлено", "5", "100.0", "100.0"],
                                            ["Доставлено", "4", "80.0", "80.0"], ["Открыто", "3", "75.0", "60.0"],
                                            ["Оценено", "2", "66.7", "40.0"]]
    assert "Всего запросов: 5; пропущено: 0; ждут отправки: 0; не удались: 0." in page


def test_the_api_gives_the_same_figures_with_codes(client, db, known_calls):
    channels = client.get("/api/v1/reports/channels", headers=AUTH)
    assert channels.status_code == 200
    assert channels.json == {
        "rateable": 13,
        "items": [{"channel": "mango_dtmf", "rated": 2, "response_rate": 15.4},
                  {"channel": "mango_quality", "rated": 1, "response_rate": 7.7},
                  {"channel": "link", "rated": 2, "response_rate": 15.4},
                  {"channel": "api", "rated": 1, "response_rate": 7.7}],
        "any_channel": {"rated": 5, "response_rate": 38.5}}
    requests = client.get("/api/v1/reports/rating-requests", headers=AUTH)
    assert requests.status_code == 200
    assert requests.json == {
        "requests": 13,
        "steps": [{"step": "due", "requests": 10, "of_previous": None, "of_due": 100.0},
                  {"step": "sent", "requests": 6, "of_previous": 60.0, "of_due": 60.0},
                  {"step": "delivered", "requests": 4, "of_previous": 66.7, "of_due": 40.0},
                  {"step": "opened", "requests": 3, "of_previous": 75.0, "of_due": 30.0},
                  {"step": "rated", "requests": 2, "of_previous": 66.7, "of_due": 20.0}],
        "waiting": 3,
        "skipped": {"requests": 3, "by_reason": [{"reason": "do_not_contact", "requests": 2},
                                                 {"reason": "daily_cap", "requests": 1}]},
        "failed": {"requests": 2, "by_reason": [{"reason": "billing", "requests": 1},
                                                {"reason": "not_delivered", "requests": 1}]}}
    # The API's filters are UTC moments, as its other reports' are: 22:30 UTC is still the 20th.
    utc = client.get("/api/v1/reports/channels?date_from=2026-11-21T00:00:00Z", headers=AUTH).json
    assert utc["rateable"] == 0 and utc["any_channel"] == {"rated": 0, "response_rate": None}
    only_b = client.get(f"/api/v1/reports/rating-requests?line={LINE_B}", headers=AUTH).json
    assert only_b["requests"] == 8 and only_b["steps"][0]["requests"] == 5 and only_b["waiting"] == 3
    assert client.get("/api/v1/reports/channels?date_from=yesterday", headers=AUTH).status_code == 400
    assert client.get("/api/v1/reports/rating-requests").status_code == 401


def test_an_operator_token_gets_only_their_own_figures(client, db, known_calls):
    from connector.core.users import add_user, issue_token

    with db.transaction() as s:
        add_user(s, "oleg", "operator", "long enough pass", ["102"])
        s.flush()
        token = issue_token(s, "oleg")
    own = {"Authorization": f"Bearer {token}"}
    channels = client.get("/api/v1/reports/channels", headers=own).json
    assert channels["rateable"] == 8 and channels["any_channel"] == {"rated": 1, "response_rate": 12.5}
    requests = client.get("/api/v1/reports/rating-requests", headers=own).json
    assert requests["requests"] == 8 and requests["skipped"]["requests"] == 3


def test_the_export_has_the_channels_the_funnel_and_the_reasons_in_words(client, db, known_calls):
    _logged_in_as(client, db, "sam", "supervisor")
    book = load_workbook(io.BytesIO(client.get("/reports/export.xlsx").data), read_only=True)

    def sheet(name):
        return [list(row) for row in book[name].iter_rows(values_only=True)]

    assert sheet("Отклик по каналам") == [
        ["Канал", "Оценено", "Можно было оценить", "Отклик, %"],
        ["опрос АТС (клавиши)", 2, 13, 15.4], ["контроль качества АТС", 1, 13, 7.7], ["ссылка в SMS", 2, 13, 15.4],
        ["API оценок", 1, 13, 7.7], ["Любой канал", 5, 13, 38.5]]
    assert sheet("Запросы по ссылке") == [
        ["Шаг", "Запросов", "От предыдущего шага, %", "От «К отправке», %"],
        ["К отправке", 10, None, 100.0], ["Отправлено", 6, 60.0, 60.0], ["Доставлено", 4, 66.7, 40.0],
        ["Открыто", 3, 75.0, 30.0], ["Оценено", 2, 66.7, 20.0]]
    assert sheet("Пропуски и сбои") == [
        ["Запросы", "Причина", "Запросов"],
        ["Пропущены", "номер в списке «не беспокоить»", 2], ["Пропущены", "этому номеру сегодня уже отправляли", 1],
        ["Не удались", "АТС: недостаточно средств или ограничение тарифа", 1], ["Не удались", "оператор связи не доставил SMS", 1]]
    # The same filters as the page: the 21st in Moscow.
    later = load_workbook(io.BytesIO(client.get("/reports/export.xlsx?date_from=2026-11-21").data), read_only=True)
    assert [list(r) for r in later["Отклик по каналам"].iter_rows(values_only=True)][-1] == ["Любой канал", 1, 8, 12.5]


def test_the_new_figures_cost_two_statements_whatever_the_number_of_calls(app, db, known_calls):
    initial = app.extensions["connector"].ingest.initial_policy
    flt = ReportFilter(zone="Europe/Moscow")

    def statements(parts) -> int:
        with counted_statements(db) as counted:
            figures(db, flt, initial, parts)
        return len(counted)

    without = statements(())
    assert statements(("channels", "funnel")) == without + 2
    with db.transaction() as s:  # ten times the calls, scores and requests
        for i in range(130):
            call = _call(s, f"more-{i}", str(200 + i % 7), LINE_A, ON_20TH, customer_score=5)
            _score(s, call, ScoreOrigin.LINK, 5)
            _request(s, call, RequestStatus.DELIVERED, sent=True, delivered=True, opened=True, rated=True)
    assert statements(("channels", "funnel")) == without + 2
    assert figures(db, flt, initial, ("channels",))["channels"]["items"][2] == \
        {"channel": "link", "rated": 132, "response_rate": round(100 * 132 / 143, 1)}
