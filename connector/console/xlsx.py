"""XLSX written as it streams: the file's bytes come out while its rows are still being read, so a download
of every call starts at once and memory stays flat however many rows there are.

A workbook is a zip of XML parts. The small parts go first; each sheet's part is deflated row by row into
the zip as it is written, with its sizes in a data descriptor after it (the zip format's way of writing to a
stream that cannot seek back), and the zip's directory comes last. Cells follow `connector.console.cells`: text is
cleaned of what XML cannot carry and written as an inline string; a formula-like text gets the quotePrefix
style, so a spreadsheet shows it as text and never evaluates it; numbers and booleans are numeric and
boolean cells; a datetime is a date cell (an Excel date number with the workbook's date format); None is an
empty cell. No formula is ever written.

A sheet may have a header row: bold, frozen (it stays in view while scrolling) and with an autofilter over
the rows below it. Its column widths are set before its rows, so they are decided from what is known then.
The workbook's part (which names the autofilter's range) is written after the sheets, whose length it needs:
the order of a zip's parts means nothing to a reader.
"""
from __future__ import annotations

import math
import zipfile
from dataclasses import dataclass
from datetime import datetime
from typing import Iterable, Iterator, Sequence
from xml.sax.saxutils import escape, quoteattr

from connector.console.cells import clean_text, is_formula_like

MIME = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
FLUSH_BYTES = 64 * 1024  # a chunk goes out once this much of the zip is ready
ROWS_AT_ONCE = 200  # rows handed to the compressor together
MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
PKG_REL = "http://schemas.openxmlformats.org/package/2006/relationships"
SHEET_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"
XML_DECL = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
TEXT_STYLE = 1  # the cellXfs entry with quotePrefix
DATE_STYLE = 2  # the cellXfs entry with the workbook's date format
HEADER_STYLE = 3  # bold
DATE_FORMAT_ID = 164  # the first id of a format of the file's own (0-163 are built in)
DEFAULT_DATE_FORMAT = "yyyy-mm-dd hh:mm:ss"
EXCEL_EPOCH = datetime(1899, 12, 30)  # day 0 of Excel's date numbers (it counts 1900 as a leap year)
MAX_WIDTH = 60  # no column wider than this many characters: a long comment wraps in Excel's cell editor


@dataclass(frozen=True)
class Sheet:
    """One sheet: its name, its rows (read lazily, once) and, optionally, its columns' widths in characters;
    `header`: the first row names the columns (bold, frozen, an autofilter over the rows)."""
    name: str
    rows: Iterable[Iterable]
    widths: Sequence[float] = ()
    header: bool = False


def _content_types(sheets: int) -> str:
    return (XML_DECL + '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
            '<Default Extension="xml" ContentType="application/xml"/>'
            '<Override PartName="/xl/workbook.xml" '
            'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
            '<Override PartName="/xl/styles.xml" '
            'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/>'
            + "".join(f'<Override PartName="/xl/worksheets/sheet{n}.xml" ContentType="{SHEET_TYPE}"/>'
                      for n in range(1, sheets + 1))
            + "</Types>")


ROOT_RELS = (XML_DECL + f'<Relationships xmlns="{PKG_REL}"><Relationship Id="rId1" '
             f'Type="{REL}/officeDocument" Target="xl/workbook.xml"/></Relationships>')

def _styles(date_format: str) -> str:
    """A small style sheet: two fonts (plain, bold), the two fills every file has, one border, and the cell
    formats in the order of the *_STYLE constants: default, quote-prefixed, date, header."""
    return (XML_DECL + f'<styleSheet xmlns="{MAIN}">'
            f'<numFmts count="1"><numFmt numFmtId="{DATE_FORMAT_ID}" formatCode={quoteattr(date_format)}/></numFmts>'
            '<fonts count="2"><font><sz val="11"/><name val="Calibri"/><family val="2"/></font>'
            '<font><b/><sz val="11"/><name val="Calibri"/><family val="2"/></font></fonts>'
            '<fills count="2"><fill><patternFill patternType="none"/></fill>'
            '<fill><patternFill patternType="gray125"/></fill></fills>'
            '<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>'
            '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>'
            '<cellXfs count="4"><xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>'
            '<xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0" quotePrefix="1"/>'
            f'<xf numFmtId="{DATE_FORMAT_ID}" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
            '<xf numFmtId="0" fontId="1" fillId="0" borderId="0" xfId="0" applyFont="1"/></cellXfs>'
            '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>'
            '</styleSheet>')


def _workbook(names: list[str], filters: dict[int, str]) -> str:
    """`filters`: a sheet's autofilter range by its 0-based index (Excel keeps it as a hidden defined name)."""
    sheets = "".join(f'<sheet name={quoteattr(name)} sheetId="{n}" r:id="rId{n}"/>'
                     for n, name in enumerate(names, 1))
    names_xml = "".join(
        f'<definedName name="_xlnm._FilterDatabase" localSheetId="{i}" hidden="1">'
        f'{escape(_quoted_sheet(names[i]))}!{_absolute(ref)}</definedName>' for i, ref in sorted(filters.items()))
    defined = f"<definedNames>{names_xml}</definedNames>" if names_xml else ""
    return XML_DECL + f'<workbook xmlns="{MAIN}" xmlns:r="{REL}"><sheets>{sheets}</sheets>{defined}</workbook>'


def _quoted_sheet(name: str) -> str:
    return "'" + name.replace("'", "''") + "'"


def _absolute(ref: str) -> str:
    """A1:N20 as $A$1:$N$20."""
    def one(corner: str) -> str:
        letters = corner.rstrip("0123456789")
        return f"${letters}${corner[len(letters):]}"
    return ":".join(one(corner) for corner in ref.split(":"))


def _workbook_rels(sheets: int) -> str:
    return (XML_DECL + f'<Relationships xmlns="{PKG_REL}">'
            + "".join(f'<Relationship Id="rId{n}" Type="{REL}/worksheet" Target="worksheets/sheet{n}.xml"/>'
                      for n in range(1, sheets + 1))
            + f'<Relationship Id="rId{sheets + 1}" Type="{REL}/styles" Target="styles.xml"/></Relationships>')


def column(index: int) -> str:
    """The column's letters for a 0-based index: A, B, ... Z, AA, AB ..."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def excel_date(moment: datetime) -> float:
    """A wall-clock time as Excel's date number (days since 1899-12-30, the time of day as the fraction). A
    time zone is not Excel's concept: an aware datetime is written as its own wall-clock time."""
    delta = moment.replace(tzinfo=None) - EXCEL_EPOCH
    return delta.days + (delta.seconds + delta.microseconds / 1_000_000) / 86_400


def cell(ref: str, value, *, header: bool = False) -> str:
    """One cell's XML, or "" for None (an empty cell is simply not written). `header`: a column's name, bold."""
    if value is None:
        return ""
    if isinstance(value, bool):  # before int: a bool is an int
        return f'<c r="{ref}" t="b"><v>{int(value)}</v></c>'
    if isinstance(value, int) or (isinstance(value, float) and math.isfinite(value)):
        return f'<c r="{ref}"><v>{value!r}</v></c>'
    if isinstance(value, datetime):
        return f'<c r="{ref}" s="{DATE_STYLE}"><v>{excel_date(value)!r}</v></c>'
    text = clean_text(value if isinstance(value, str) else str(value))
    style = f' s="{TEXT_STYLE}"' if is_formula_like(text) else (f' s="{HEADER_STYLE}"' if header else "")
    space = ' xml:space="preserve"' if text[:1].isspace() or text[-1:].isspace() else ""
    return f'<c r="{ref}"{style} t="inlineStr"><is><t{space}>{escape(text)}</t></is></c>'


_COLUMNS = [column(i) for i in range(64)]


def _letters(index: int) -> str:
    return _COLUMNS[index] if index < 64 else column(index)


class _Chunks:
    """Where the zip writes: a stream that cannot seek, whose bytes are taken out as they come."""

    def __init__(self):
        self.parts: list[bytes] = []
        self.size = 0

    def write(self, data) -> int:
        self.parts.append(bytes(data))
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data, self.parts, self.size = b"".join(self.parts), [], 0
        return data


def _entry(name: str) -> zipfile.ZipInfo:
    """A part of the zip with a fixed date: the same rows make the same bytes."""
    entry = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    entry.compress_type = zipfile.ZIP_DEFLATED
    return entry


def fit_widths(rows: Sequence[Sequence], *, least: float = 8) -> list[float]:
    """Columns' widths for rows already in hand (a report's few): the longest line of each column's cells,
    with a margin, between `least` and MAX_WIDTH characters."""
    widths: list[float] = []
    for row in rows:
        for c, value in enumerate(row):
            text = "" if value is None else str(value)
            longest = max((len(line) for line in text.splitlines()), default=0)
            if c == len(widths):
                widths.append(least)
            widths[c] = min(MAX_WIDTH, max(widths[c], longest + 2))
    return widths


def _sheet_head(sheet: Sheet) -> str:
    """What comes before a sheet's rows: the frozen header's view and the columns' widths."""
    head = XML_DECL + f'<worksheet xmlns="{MAIN}">'
    if sheet.header:
        head += ('<sheetViews><sheetView workbookViewId="0"><pane ySplit="1" topLeftCell="A2" activePane="bottomLeft"'
                 ' state="frozen"/><selection pane="bottomLeft" activeCell="A2" sqref="A2"/></sheetView></sheetViews>')
    if sheet.widths:
        head += "<cols>" + "".join(f'<col min="{c}" max="{c}" width="{min(float(w), MAX_WIDTH):.1f}" customWidth="1"/>'
                                   for c, w in enumerate(sheet.widths, 1)) + "</cols>"
    return head + "<sheetData>"


def stream(sheets: Iterable[Sheet | tuple[str, Iterable[Iterable]]], *,
           date_format: str = DEFAULT_DATE_FORMAT) -> Iterator[bytes]:
    """The workbook's bytes, chunk by chunk: one sheet per `Sheet` (or (name, rows)), rows read lazily, one
    at a time. The sheets' names must be known before the first row: `sheets` is read whole first, its rows
    are not. `date_format`: how Excel shows the date cells (an Excel number format)."""
    sheets = [s if isinstance(s, Sheet) else Sheet(*s) for s in sheets]
    out = _Chunks()
    filters: dict[int, str] = {}
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as book:
        book.writestr(_entry("[Content_Types].xml"), _content_types(len(sheets)))
        book.writestr(_entry("_rels/.rels"), ROOT_RELS)
        book.writestr(_entry("xl/_rels/workbook.xml.rels"), _workbook_rels(len(sheets)))
        book.writestr(_entry("xl/styles.xml"), _styles(date_format))
        started = False  # the first chunk goes once the first rows are in: a failure before them sends nothing
        for n, sheet in enumerate(sheets, 1):
            with book.open(_entry(f"xl/worksheets/sheet{n}.xml"), "w") as part:
                part.write(_sheet_head(sheet).encode())
                pending: list[str] = []
                r, columns = 0, 0
                for r, row in enumerate(sheet.rows, 1):
                    values = list(row)
                    columns = max(columns, len(values))
                    header = sheet.header and r == 1
                    pending.append(f'<row r="{r}">' + "".join(cell(f"{_letters(c)}{r}", v, header=header)
                                                             for c, v in enumerate(values)) + "</row>")
                    if len(pending) >= ROWS_AT_ONCE:
                        part.write("".join(pending).encode())
                        pending.clear()
                        if out.size >= FLUSH_BYTES or not started:
                            started = True
                            yield out.take()
                tail = "</sheetData>"
                if sheet.header and columns:
                    filters[n - 1] = f"A1:{_letters(columns - 1)}{r}"
                    tail += f'<autoFilter ref="{filters[n - 1]}"/>'
                part.write(("".join(pending) + tail + "</worksheet>").encode())
        book.writestr(_entry("xl/workbook.xml"), _workbook([sheet.name for sheet in sheets], filters))
    yield out.take()
