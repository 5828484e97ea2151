"""Exports and reports in child processes of lower priority (issue 16, "intake never waits for a reader"):
the web process only streams what a child writes, so an export's Python work and a report's counting never
compete with the PBX's callbacks for the interpreter, and lose to them for the CPU. What a person gets is
the same as when this process builds it, the role rules included; a large export starts at once; a child
that fails is an error, never a wrong file; a download given up ends its child."""
import csv
import io
import os

import pytest
from openpyxl import load_workbook

from connector.console import offload, xlsx
from connector.console.exports import COLUMNS, Layout, Separator, export_file
from connector.console.offload import ChildFailed, HeavyReads, NICE
from connector.console.reports import ReportFilter, figures
from connector.core.calls import CallFilter, Sort
from connector.core.db import Database, upgrade
from connector.core.users import add_user
from tests.conftest import EXPORT_HEADERS, console_login, csv_rows, dtmf, summary

PASSWORD = "correct horse battery"
# A layout for people, as the console makes one: what the web process decides must reach the child whole.
PEOPLE_LAYOUT = Layout(headers=EXPORT_HEADERS, statuses={"pending": "ждёт отправки", "skipped": "не отправлялся"},
                       zone="Europe/Moscow", csv_time="%d.%m.%Y %H:%M", xlsx_time="dd.mm.yyyy hh:mm",
                       separator=Separator.SEMICOLON, bom=True, sheet="Звонки")
HOSTILE = "=SUM(1,2)"  # a line name a spreadsheet would take for a formula


@pytest.fixture
def calls(db, mango_post, monkeypatch):
    monkeypatch.setattr("connector.core.users.PASSWORD_METHOD", "scrypt:1024:8:1")
    with db.transaction() as s:
        add_user(s, "sam", "supervisor", PASSWORD)
        add_user(s, "olga", "operator", PASSWORD, ["101"])
    for n in range(7):
        mango_post("events/summary", summary(f"call-{n}", extension="101" if n % 2 else "102",
                                             start=1_763_800_000 + 60 * n, line=HOSTILE if n == 3 else None))
        mango_post("events/dtmf", dtmf(f"call-{n}", str(1 + n)))


@pytest.fixture
def children(db):
    """Exports and reports in child processes on the test's database; their children ended after the test."""
    reads = HeavyReads(db, in_children=True)
    yield reads
    reads.close()


def cells(data: bytes, sheet: str) -> list[list[tuple]]:
    book = load_workbook(io.BytesIO(data))
    return [[(c.value, c.data_type, c.quotePrefix) for c in row] for row in book[sheet].iter_rows()]


@pytest.mark.parametrize("flt, sort", [
    (CallFilter(), Sort.NEWEST),
    (CallFilter(visible_extensions=("101",)), Sort.LOWEST_SCORE),  # an operator's: their own calls only
    (CallFilter(score_lte=4, tagged=True), Sort.OLDEST),
])
def test_a_child_process_writes_the_same_export_as_this_process(db, calls, children, flt, sort):
    reads = children
    assert reads.in_children
    for layout in (Layout(), PEOPLE_LAYOUT):
        for fmt in ("csv", "xlsx"):
            here = b"".join(export_file(db, fmt, flt, sort, layout, pace=0))
            assert b"".join(reads.export(fmt, flt, sort, layout)) == here, fmt  # byte for byte
    rows = list(csv.reader(io.StringIO(here_csv := b"".join(export_file(db, "csv", flt, sort)).decode())))
    assert rows[0] == list(COLUMNS) and len(rows) > 1, here_csv  # the machine form: keys, commas, UTC
    people = csv_rows(b"".join(reads.export("csv", flt, sort, PEOPLE_LAYOUT)))
    assert people[0] == list(EXPORT_HEADERS) and {r[12] for r in people[1:]} == {"не отправлялся"}
    assert [r[0] for r in people[1:]] == [r[0] for r in rows[1:]]
    if flt.visible_extensions:
        assert {r[3] for r in rows[1:]} == {"101"}


def test_a_child_process_counts_the_same_report(db, calls, app, children):
    initial = app.extensions["connector"].ingest.initial_policy
    pids = set()
    for flt in (ReportFilter(), ReportFilter(visible_extensions=("101",)), ReportFilter(line="nowhere")):
        by_child, here = children.figures(flt, initial), figures(db, flt, initial)
        assert by_child.pop("counted_at") <= here.pop("counted_at") and by_child == here
        pids |= {child.pid for child in children._idle}
    assert len(pids) == 1  # one child, kept for the next job: a report pays no start-up
    # It runs below the web process's priority (at most 19 steps below nothing), in the idle class, off the
    # first CPU: one CPU is always free of exports and reports.
    pid = pids.pop()
    assert os.getpriority(os.PRIO_PROCESS, pid) == min(19, os.nice(0) + NICE)
    assert os.sched_getscheduler(pid) == os.SCHED_IDLE
    mine = sorted(os.sched_getaffinity(0))
    assert sorted(os.sched_getaffinity(pid)) == (mine[1:] if len(mine) > 1 else mine)


def test_the_console_exports_and_reports_through_child_processes(app, client, calls):
    """The default: every export and report is a child's work; what the person gets is what this process
    would have made, and an operator still gets only their own calls."""
    services = app.extensions["connector"]
    assert services.config.HEAVY_READS_IN_CHILDREN and services.reads.in_children
    from webui.calls import export_layout

    console_login(client, "olga", PASSWORD)
    with app.test_request_context("/"):
        layout = export_layout()
    for path, fmt in (("/calls/export.csv", "csv"), ("/calls/export.xlsx", "xlsx")):
        response = client.get(path)
        assert response.status_code == 200
        assert response.data == b"".join(export_file(services.db, fmt, CallFilter(visible_extensions=("101",)),
                                                     Sort.NEWEST, layout, pace=0))
    sheet = cells(client.get("/calls/export.xlsx").data, "Звонки")
    assert [row[0][0] for row in sheet[1:]] == ["call-5", "call-3", "call-1"]  # olga's, newest first
    assert (HOSTILE, "s", True) in sheet[2]  # a formula-like line is text, marked so
    report = client.get("/api/v1/reports/operators")  # the API answers tokens only: a login is no token
    assert report.status_code == 401
    page = client.get("/reports")
    assert page.status_code == 200 and "101" in page.get_data(as_text=True)
    book = cells(client.get("/reports/export.xlsx").data, "Операторы")
    assert [row[0][0] for row in book] == ["Оператор", "101", "Итого"]  # her own extension, then the totals


def test_a_child_that_cannot_read_fails_the_export_before_anything_is_sent(tmp_path, app, client, calls,
                                                                          monkeypatch):
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    upgrade(empty, "0001")  # a database without the calls' later columns: the first page fails
    broken = Database(empty)
    reads = HeavyReads(broken, in_children=True)
    try:
        with pytest.raises(ChildFailed, match="no such column"):
            reads.export("xlsx", CallFilter(), Sort.NEWEST)
        assert len(reads._idle) == 1  # the child said what went wrong, and waits for the next job
        # Through the console: an error answer, not a file that looks whole.
        monkeypatch.setattr(app.extensions["connector"].reads, "db", broken)
        app.config["PROPAGATE_EXCEPTIONS"] = False  # answered as a server would, not raised into the test
        console_login(client, "sam", PASSWORD)
        assert client.get("/calls/export.xlsx").status_code == 500
    finally:
        reads.close()
        broken.dispose()


def test_a_large_export_starts_at_once_and_a_download_given_up_ends_its_child(db, children, monkeypatch):
    started = []
    popen = offload.subprocess.Popen

    def recorded(*args, **kwargs):
        started.append(popen(*args, **kwargs))
        return started[-1]

    monkeypatch.setattr(offload.subprocess, "Popen", recorded)
    from sqlalchemy import insert

    from connector.core.models import Call

    with db.transaction() as s:  # enough calls for many pages and many chunks
        s.execute(insert(Call), [{"entry_id": f"bulk-{i}", "direction": "inbound", "operator_extension": "101",
                                  "customer_phone": f"7900{i:07d}", "survey": "answered", "customer_score": 5}
                                 for i in range(6000)])
    chunks = children.export("xlsx", CallFilter(), Sort.NEWEST)
    first = next(chunks)
    assert first.startswith(b"PK") and started[0].poll() is None  # the file has begun; the child works on
    chunks.close()  # the client went away
    assert started[0].returncode is not None  # the child is gone, not left writing to nobody
    assert children._idle == []


def test_the_xlsx_stream_sends_its_first_bytes_before_the_rows_are_all_read():
    read = []

    def rows():
        for n in range(10 * xlsx.ROWS_AT_ONCE):
            read.append(n)
            yield [f"row {n}", n, None, "+7 900"]

    chunks = xlsx.stream([("calls", rows())])
    assert next(chunks).startswith(b"PK")
    assert len(read) <= xlsx.ROWS_AT_ONCE + 1  # the first chunk went with the first rows, not after them all
    chunks.close()
    whole = b"".join(xlsx.stream([("calls", ([f"row {n}", n, None, "+7 900"] for n in range(10)))]))
    assert cells(whole, "calls")[9] == [("row 9", "s", False), (9, "n", False), (None, "n", False),
                                        ("+7 900", "s", True)]


# --- the reports' figures as the faces ask for them: one count at a time, reused when expensive -------------

class SlowCount:
    """`figures` as a child counts them, on a clock the test moves: each count takes `seconds`."""

    def __init__(self, db, seconds):
        self.db, self.seconds, self.counts, self.at = db, seconds, 0, 1000.0

    def clock(self):
        return self.at

    def __call__(self, flt, initial, parts):
        self.counts += 1
        self.at += self.seconds
        return figures(self.db, flt, initial, parts)


def test_figures_over_many_calls_answer_the_same_question_again_for_ten_times_their_cost(calls, db, client,
                                                                                        monkeypatch):
    from connector.console.reports import RecentFigures

    monkeypatch.setattr(RecentFigures, "REUSE_FROM_CALLS", 7)  # the 7 calls here stand for 10,000
    initial = client.application.extensions["connector"].ingest.initial_policy
    count = SlowCount(db, 0.5)
    recent = RecentFigures(db, count, clock=count.clock)
    first = recent(ReportFilter(), initial)
    assert count.counts == 1 and first["operators"]["totals"]["rated"] == 7
    count.at += 4.9  # counted in 0.5 s: kept for 5 s after it was done
    assert recent(ReportFilter(), initial) is first and count.counts == 1
    assert recent(ReportFilter(line="74950000000"), initial)["operators"]["totals"]["calls"] == 0  # another question
    count.at += 10
    assert recent(ReportFilter(), initial) is not first and count.counts == 3  # stale: counted again
    quick = SlowCount(db, 0.01)
    recent = RecentFigures(db, quick, clock=quick.clock)
    recent(ReportFilter(), initial)
    quick.at += 1.9
    recent(ReportFilter(), initial)
    assert quick.counts == 1  # however quick, kept 2 s


def test_figures_over_few_calls_and_a_settings_change_are_always_counted_afresh(calls, db, client, auth,
                                                                                  monkeypatch):
    from connector.console.reports import RecentFigures

    initial = client.application.extensions["connector"].ingest.initial_policy
    slow = SlowCount(db, 5.0)
    recent = RecentFigures(db, slow, clock=slow.clock)
    recent(ReportFilter(), initial)
    recent(ReportFilter(), initial)
    assert slow.counts == 2  # 7 calls: always fresh, however long it took
    monkeypatch.setattr(RecentFigures, "REUSE_FROM_CALLS", 7)
    recent = RecentFigures(db, slow, clock=slow.clock)
    before = recent(ReportFilter(), initial)["operators"]["totals"]["positive"]
    assert client.put("/api/v1/settings", json={"max_threshold": 3}, headers=auth).status_code == 200
    after = recent(ReportFilter(), initial)  # a changed threshold is a new question at once
    assert slow.counts == 4 and after["operators"]["totals"]["positive"] > before


@pytest.mark.parametrize("config_overrides", [{"HEAVY_READS_IN_CHILDREN": "false"}])  # the page's words, not
def test_the_reports_page_says_when_its_figures_were_counted(calls, client):  # who counts: no child to start
    console_login(client, "sam", PASSWORD)
    page = client.get("/reports").get_data(as_text=True)
    assert "Подсчитано:" in page
