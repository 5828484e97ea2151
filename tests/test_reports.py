"""Report arithmetic on known calls: response rate, CSAT, NPS, supervisor average, per operator and line.

The figures below were worked out by hand from the calls in `known_calls` (the docstring shows how)."""
import pytest
from sqlalchemy import update

from connector.core.models import Call, SurveyState
from tests.conftest import ADMIN_TOKEN, console_login, dtmf, summary

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
LINE_A, LINE_B = "74950000001", "74950000002"


@pytest.fixture
def known_calls(client, mango_post, db):
    """Threshold 9 on a 1..10 scale (the defaults).
    Operator 101, line A: c1 talked, scored 10 (promoter, positive); c2 talked, scored 3 (detractor, tagged);
      c3 talked, no digits (DTMF: the survey's fate is unknown, so it counts as answered-but-unrated);
      c4 ended in the IVR (not answered, not asked).
    Operator 102, line B: c5 talked, scored 5 (detractor, tagged); c6 talked, MANGO's quality control says
      the customer reached the survey and pressed nothing (offered, no_answer); c7 talked, the survey was
      never reached (not offered: not asked).
    Reviews: c1 by 6, c5 by 9."""
    for entry_id, extension, line, digits in [("c1", "101", LINE_A, "10"), ("c2", "101", LINE_A, "3"),
                                              ("c3", "101", LINE_A, None), ("c4", "101", LINE_A, None),
                                              ("c5", "102", LINE_B, "5"), ("c6", "102", LINE_B, None),
                                              ("c7", "102", LINE_B, None)]:
        payload = summary(entry_id, extension=extension, line=line)
        if entry_id == "c4":
            payload["talk_time"] = 0
        assert mango_post("events/summary", payload).status_code == 200
        if digits:
            assert mango_post("events/dtmf", dtmf(entry_id, digits)).status_code == 200
    # What the quality poller writes when MANGO answers mark_client -1 / no mark within the wait.
    with db.transaction() as s:
        s.execute(update(Call).where(Call.entry_id == "c6").values(survey=SurveyState.NO_ANSWER.value))
        s.execute(update(Call).where(Call.entry_id == "c7").values(survey=SurveyState.NOT_OFFERED.value))
    for entry_id, score in [("c1", 6), ("c5", 9)]:
        assert client.post(f"/api/v1/calls/{entry_id}/reviews", json={"score": score}, headers=AUTH).status_code \
            == 201


def test_operators_report(client, known_calls):
    body = client.get("/api/v1/reports/operators", headers=AUTH).json
    by_operator = {row["operator"]: row for row in body["items"]}
    assert by_operator["101"] == {
        "operator": "101", "calls": 4, "answered": 3, "offered": 2, "no_answer": 0, "rated": 2,
        "response_rate": 66.7,  # 2 rated / (2 offered + c3 answered with no known fate)
        "average": 6.5, "positive": 1, "negative": 1, "csat": 50.0,
        "nps": 0.0,  # one promoter, one detractor
        "supervisor_rated": 1, "supervisor_average": 6.0}
    assert by_operator["102"] == {
        "operator": "102", "calls": 3, "answered": 3, "offered": 2, "no_answer": 1, "rated": 1,
        "response_rate": 50.0,  # 1 rated / 2 offered (c7 was never offered)
        "average": 5.0, "positive": 0, "negative": 1, "csat": 0.0, "nps": -100.0,
        "supervisor_rated": 1, "supervisor_average": 9.0}
    assert body["totals"] == {
        "operator": None, "calls": 7, "answered": 6, "offered": 4, "no_answer": 1, "rated": 3,
        "response_rate": 60.0, "average": 6.0, "positive": 1, "negative": 2, "csat": 33.3,
        "nps": -33.3,  # (1 promoter - 2 detractors) / 3
        "supervisor_rated": 2, "supervisor_average": 7.5}


def test_lines_report_and_its_filters(client, known_calls):
    body = client.get("/api/v1/reports/lines", headers=AUTH).json
    assert [(row["line"], row["rated"], row["csat"]) for row in body["items"]] == [(LINE_A, 2, 50.0),
                                                                                   (LINE_B, 1, 0.0)]
    only_b = client.get(f"/api/v1/reports/operators?line={LINE_B}", headers=AUTH).json
    assert [row["operator"] for row in only_b["items"]] == ["102"] and only_b["totals"]["calls"] == 3
    later = client.get("/api/v1/reports/operators?date_from=2030-01-01T00:00:00Z", headers=AUTH).json
    assert later["items"] == [] and later["totals"]["calls"] == 0 and later["totals"]["csat"] is None
    assert client.get("/api/v1/reports/operators?date_from=yesterday", headers=AUTH).status_code == 400


def test_the_threshold_in_force_decides_positive(client, known_calls):
    client.put("/api/v1/settings", json={"max_threshold": 5}, headers=AUTH)
    totals = client.get("/api/v1/reports/operators", headers=AUTH).json["totals"]
    assert totals["positive"] == 2 and totals["csat"] == 66.7  # 10 and 5 are now at or above it


def test_nps_is_only_given_on_a_ten_point_scale(client, known_calls):
    client.put("/api/v1/settings", json={"scale_max": 5, "max_threshold": 4}, headers=AUTH)
    assert client.get("/api/v1/reports/operators", headers=AUTH).json["totals"]["nps"] is None


def test_an_operator_reports_only_on_their_own_calls(client, known_calls, db):
    from connector.core.users import add_user, issue_token

    with db.transaction() as s:
        add_user(s, "olga", "operator", "long enough pass", ["101"])
        s.flush()
        token = issue_token(s, "olga")
    body = client.get("/api/v1/reports/operators", headers={"Authorization": f"Bearer {token}"}).json
    assert [row["operator"] for row in body["items"]] == ["101"] and body["totals"]["calls"] == 4


def _logged_in_as(client, db, name, role, extensions=()):
    from connector.core.users import add_user

    with db.transaction() as s:
        add_user(s, name, role, "long enough pass", list(extensions))
    console_login(client, name, "long enough pass")


def test_the_reports_page_draws_the_figures_and_both_charts(client, known_calls, db):
    import re

    _logged_in_as(client, db, "sam", "supervisor")
    page = client.get("/reports").get_data(as_text=True)
    operators = page.split('id="report-operator"')[1].split("</table>")[0]
    totals = re.findall(r"<td>([^<]*)</td>", operators.split("Итого")[1])
    # calls, answered, offered, no_answer, rated, response rate, average, positive, negative, CSAT, NPS, ...
    assert totals[:11] == ["7", "6", "4", "1", "3", "60.0", "6.0", "1", "2", "33.3", "-33.3"]
    distribution = page.split('id="distribution"')[1].split("</svg>")[0]
    assert re.findall(r"<title>(\d+): (\d+)</title>", distribution) == [("3", "1"), ("5", "1"), ("10", "1")]

    def texts(svg: str, group: str) -> list[str]:
        return re.findall(r"<text[^>]*>([^<]*)</text>", svg.split(f'class="{group}"')[1].split("</g>")[0])

    # Axes: both lines, every score of the 1..10 scale along x, round counts up y, titles in the page's language
    assert 'class="x-axis"' in distribution and 'class="y-axis"' in distribution
    assert texts(distribution, "x-ticks") == [str(s) for s in range(1, 11)]
    assert texts(distribution, "y-ticks") == ["0", "1"]
    assert re.search(r'class="x-title"[^>]*>Оценка<', distribution)
    assert re.search(r'class="y-title"[^>]*>Звонков<', distribution)
    trend = page.split('id="trend"')[1].split("</svg>")[0]
    assert "<polyline" in trend and 'class="x-axis"' in trend and 'class="y-axis"' in trend
    assert texts(trend, "y-ticks") == ["1", "2", "4", "6", "8", "10"]  # the scale, its bottom marked
    days = texts(trend, "x-ticks")
    points = re.findall(r"<circle[^>]*><title>([^<]*)</title>", trend)
    assert len(points) == len(days) >= 1 and all(re.fullmatch(r"\d\d\.\d\d\.\d{4}: [\d.]+", p) for p in points)
    assert all(re.fullmatch(r"\d\d\.\d\d", d) for d in days)  # day and month: the year is in the table
    assert re.search(r'class="x-title"[^>]*>День<', trend) and re.search(r'class="y-title"[^>]*>Средняя оценка<', trend)
    english = client.get("/reports?lang=en").get_data(as_text=True)
    assert re.search(r'class="x-title"[^>]*>Score<', english) and re.search(r'class="y-title"[^>]*>Calls<', english)
    assert re.search(r'class="x-title"[^>]*>Day<', english)
    assert re.search(r'class="y-title"[^>]*>Average score<', english)


def test_the_report_exports_to_xlsx(client, known_calls, db):
    import io

    from openpyxl import load_workbook

    _logged_in_as(client, db, "sam", "supervisor")
    book = load_workbook(io.BytesIO(client.get("/reports/export.xlsx").data), read_only=True)
    rows = [list(r) for r in book["Операторы"].iter_rows(values_only=True)]
    header, *body = rows
    assert header[:3] == ["Оператор", "Звонков", "Отвечено"]  # as the reports page names them
    by_operator = {row[0]: dict(zip(header, row)) for row in body}
    assert by_operator["101"]["Отклик, %"] == 66.7 and by_operator["Итого"]["NPS"] == -33.3
    assert [r[0] for r in book["Линии"].iter_rows(values_only=True)][1:] == [LINE_A, LINE_B, "Итого"]


def test_an_operator_sees_only_their_own_figures_on_the_page(client, known_calls, db):
    _logged_in_as(client, db, "olga", "operator", ["101"])
    page = client.get("/reports").get_data(as_text=True)
    operators = page.split('id="report-operator"')[1].split("</table>")[0]
    # Named by her console account, linked to 101 (no PBX directory here).
    assert "<td>olga (101)</td>" in operators and "(102)" not in operators and "<td>102</td>" not in operators


def test_the_console_counts_days_in_moscow_time(client, mango_post, db):
    """A call at 22:30 UTC on 20 November is on 21 November in Moscow (UTC+3): the console's date filters
    and the daily trend put it there; the API's filters, documented as UTC moments, keep UTC."""
    from datetime import datetime, timezone

    late = int(datetime(2026, 11, 20, 22, 30, tzinfo=timezone.utc).timestamp())
    noon = int(datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc).timestamp())
    for entry_id, start, digits in [("late", late, "4"), ("noon", noon, "10")]:
        assert mango_post("events/summary", summary(entry_id, start=start)).status_code == 200
        assert mango_post("events/dtmf", dtmf(entry_id, digits, timestamp=start + 80)).status_code == 200
    _logged_in_as(client, db, "sam", "supervisor")
    on_21st = client.get("/calls?date_from=2026-11-21").get_data(as_text=True)
    before_21st = client.get("/calls?date_to=2026-11-21").get_data(as_text=True)
    assert "/calls/late" in on_21st and "/calls/noon" not in on_21st
    assert "/calls/noon" in before_21st and "/calls/late" not in before_21st
    trend = client.get("/reports").get_data(as_text=True).split('id="trend"')[1]
    assert "<td>20.11.2026</td><td>1</td><td>10.0</td>" in trend
    assert "<td>21.11.2026</td><td>1</td><td>4.0</td>" in trend
    utc = client.get("/api/v1/calls?date_from=2026-11-21", headers=AUTH).get_json()
    assert [c["call_id"] for c in utc["items"]] == []  # 22:30 UTC is before the 21st in UTC
