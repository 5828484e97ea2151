"""Exports an office can open (issue 17, item 6). The files used to carry English keys as headers, times as
UTC ISO text, no widths and no frozen header, and a CSV that Excel set up for Russian opened garbled in one
column (UTF-8 without a byte-order mark, commas). Now they are written for the person who downloads them:
the columns named in the console's language, times in CONSOLE_TIMEZONE (date cells in XLSX), the CRM status
as the console names it, a frozen header with an autofilter, and a CSV with a BOM and `;`. The direction and
the survey were still codes (inbound, no_answer…): they are words too, as the call page names them."""
import io
from datetime import datetime, timezone

import pytest
from openpyxl import load_workbook
from sqlalchemy import update

from connector.core.models import Call, SurveyState
from connector.core.users import add_user
from tests.conftest import EXPORT_HEADERS, console_login, csv_rows, dtmf, summary

PASSWORD = "correct horse battery"
START = datetime(2026, 11, 26, 11, 5, 7, 654321, tzinfo=timezone.utc)  # 14:05:07 in Moscow (UTC+3 all year)
ENGLISH_HEADERS = ["Call", "Started", "Direction", "Operator", "Line", "Customer", "Talk, s", "Survey",
                   "Customer score", "Supervisor score", "Tag", "Supervisors' reviews", "CRM status", "CRM record"]


@pytest.fixture
def sam(client, db, mango_post, monkeypatch):
    """A supervisor logged in; call-1 (inbound, score 3, tagged) started at START, to the microsecond; call-2
    outbound, its customer moved to the survey and pressed nothing (MANGO's mark -1)."""
    monkeypatch.setattr("connector.core.users.PASSWORD_METHOD", "scrypt:1024:8:1")
    with db.transaction() as s:
        add_user(s, "sam", "supervisor", PASSWORD)
    for call, direction in (("call-1", 1), ("call-2", 2)):  # MANGO's 1: inbound, 2: outbound
        assert mango_post("events/summary", summary(call, direction=direction)).status_code == 200
    assert mango_post("events/dtmf", dtmf("call-1", "3")).status_code == 200
    with db.transaction() as s:
        s.execute(update(Call).where(Call.entry_id == "call-1").values(created_at=START, listed_at=START))
        s.execute(update(Call).where(Call.entry_id == "call-2").values(survey=SurveyState.NO_ANSWER))
    console_login(client, "sam", PASSWORD)
    return client


def workbook(response):
    assert response.status_code == 200, response.status_code
    return load_workbook(io.BytesIO(response.data))


def test_the_xlsx_export_is_in_russian_with_moscow_date_cells_a_frozen_filtered_header_and_widths(sam):
    book = workbook(sam.get("/calls/export.xlsx"))
    assert book.sheetnames == ["Звонки"]
    sheet = book["Звонки"]
    header = [c.value for c in sheet[1]]
    assert header == list(EXPORT_HEADERS)
    assert all(c.font.b for c in sheet[1])  # the header stands out
    rows = {r[0].value: dict(zip(header, r)) for r in sheet.iter_rows(min_row=2)}
    started = rows["call-1"]["Начало"]
    assert started.is_date and started.value == datetime(2026, 11, 26, 14, 5, 7)  # Moscow, to the second
    assert started.number_format == "dd.mm.yyyy hh:mm"
    assert rows["call-1"]["Оценка клиента"].value == 3 and rows["call-1"]["Статус в CRM"].value == "не отправлялся"
    assert [rows[c]["Направление"].value for c in ("call-1", "call-2")] == ["входящий", "исходящий"]
    assert rows["call-1"]["Опрос"].value == "ответ получен"
    assert sheet.freeze_panes == "A2"  # the header stays in view
    assert sheet.auto_filter.ref == "A1:N3"  # the header and both calls
    widths = {column: sheet.column_dimensions[column].width for column in "ABCDEFGHIJKLMN"}
    for column, name in zip("ABCDEFGHIJKLMN", EXPORT_HEADERS):
        assert widths[column] >= len(name), (column, name, widths[column])
    assert widths["A"] >= 20 and widths["B"] >= 16 and widths["L"] >= 40  # an id, a time, the reviews


def test_the_xlsx_export_in_english(sam):
    book = workbook(sam.get("/calls/export.xlsx?lang=en"))
    sheet = book["Calls"]
    assert [c.value for c in sheet[1]] == ENGLISH_HEADERS
    row = {h: c for h, c in zip(ENGLISH_HEADERS, next(r for r in sheet.iter_rows(min_row=2)
                                                      if r[0].value == "call-1"))}
    assert row["Started"].value == datetime(2026, 11, 26, 14, 5, 7)
    assert row["Started"].number_format == "yyyy-mm-dd hh:mm"
    assert row["CRM status"].value == "not sent"
    assert (row["Direction"].value, row["Survey"].value) == ("incoming", "answered")


@pytest.mark.parametrize("config_overrides", [{"CONSOLE_TIMEZONE": "Asia/Yekaterinburg"}])
def test_the_exports_follow_the_console_time_zone(sam):
    sheet = workbook(sam.get("/calls/export.xlsx"))["Звонки"]
    started = {r[0].value: r[1].value for r in sheet.iter_rows(min_row=2)}
    assert started["call-1"] == datetime(2026, 11, 26, 16, 5, 7)  # UTC+5
    rows = {r[0]: r for r in csv_rows(sam.get("/calls/export.csv"))[1:]}
    assert rows["call-1"][1] == "26.11.2026 16:05"


def test_the_csv_opens_in_russian_excel_bom_semicolons_local_times_labels(sam):
    response = sam.get("/calls/export.csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert response.data.startswith(b"\xef\xbb\xbf\xd0\x97\xd0\xb2\xd0\xbe\xd0\xbd\xd0\xbe\xd0\xba;")  # BOM, "Звонок;"
    header, *rows = csv_rows(response)
    assert header == list(EXPORT_HEADERS)
    by_call = {r[0]: dict(zip(header, r)) for r in rows}
    assert set(by_call) == {"call-1", "call-2"} and all(len(r) == len(header) for r in rows)
    call = by_call["call-1"]
    assert (call["Начало"], call["Оценка клиента"], call["Статус в CRM"]) == ("26.11.2026 14:05", "3", "не отправлялся")
    assert (call["Направление"], call["Опрос"]) == ("входящий", "ответ получен")
    assert (by_call["call-2"]["Направление"], by_call["call-2"]["Опрос"]) == ("исходящий", "без ответа")

    english = csv_rows(sam.get("/calls/export.csv?lang=en"))
    assert english[0] == ENGLISH_HEADERS
    call = {r[0]: r for r in english[1:]}["call-1"]
    assert (call[1], call[12]) == ("2026-11-26 14:05", "not sent")
    assert (call[2], call[7]) == ("incoming", "answered")
    call = {r[0]: r for r in english[1:]}["call-2"]
    assert (call[2], call[7]) == ("outgoing", "no answer")  # not the codes outbound and no_answer


def test_the_csv_with_commas_on_request(sam):
    semicolons = csv_rows(sam.get("/calls/export.csv"))
    commas = csv_rows(sam.get("/calls/export.csv?sep=comma&sort=newest"), separator=",")
    assert commas == semicolons  # the same fields, split on commas
    assert csv_rows(sam.get("/calls/export.csv?sep=semicolon")) == semicolons
    refused = sam.get("/calls/export.csv?sep=tab")
    assert refused.status_code == 400
    assert "Разделитель CSV: semicolon (точка с запятой) или comma (запятая)." in refused.get_data(as_text=True)
    assert sam.get("/calls?sep=comma").status_code == 200  # a page argument, never a filter


def test_the_report_export_names_its_columns_and_sheets_as_the_page_does(sam):
    book = workbook(sam.get("/reports/export.xlsx"))
    assert book.sheetnames == ["Операторы", "Линии", "Отклик по каналам", "Запросы по ссылке", "Пропуски и сбои",
                               "Обратная связь, операторы", "Обратная связь, линии"]
    follow_ups = [c.value for c in book["Обратная связь, операторы"][1]]
    assert follow_ups == ["Оператор", "Низких оценок", "Выполнено", "Выполнено, %", "Медиана, ч", "Просрочено",
                          "Закрыто с итогом", "Вернули клиента", "Вернули клиента, %"]
    sheet = book["Операторы"]
    header = [c.value for c in sheet[1]]
    assert header[:3] == ["Оператор", "Звонков", "Отвечено"] and "NPS" in header and "Средняя супервизора" in header
    assert [r[0].value for r in sheet.iter_rows(min_row=2)] == ["101", "Итого"]
    assert sheet.freeze_panes == "A2" and len(header) == 14 and sheet.auto_filter.ref == "A1:N3"
    for column, name in zip("ABCDEFGHIJKLMN", header):
        assert sheet.column_dimensions[column].width >= len(name), (column, name)
    english = workbook(sam.get("/reports/export.xlsx?lang=en"))
    assert english.sheetnames == ["Operators", "Lines", "Response by channel", "Link requests", "Skipped and failed",
                                  "Follow-ups, operators", "Follow-ups, lines"]
    assert [c.value for c in english["Lines"][1]][:2] == ["Line", "Calls"]
    assert [r[0].value for r in english["Lines"].iter_rows(min_row=2)][-1] == "Total"
