"""XLSX written as it streams: the file's bytes come out while its rows are still being read, so a download
of every call starts at once and memory stays flat however many rows there are.

A workbook is a zip of XML parts. The small parts go first; each sheet's part is deflated row by row into
the zip as it is written, with its sizes in a data descriptor after it (the zip format's way of writing to a
stream that cannot seek back), and the zip's directory comes last. Cells follow `connector.cells`: text is
cleaned of what XML cannot carry and written as an inline string; a formula-like text gets the quotePrefix
style, so a spreadsheet shows it as text and never evaluates it; numbers and booleans are numeric and
boolean cells; None is an empty cell. No formula is ever written.
"""
from __future__ import annotations

import math
import zipfile
from typing import Iterable, Iterator
from xml.sax.saxutils import escape, quoteattr

from connector.cells import clean_text, is_formula_like

MIME = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
FLUSH_BYTES = 64 * 1024  # a chunk goes out once this much of the zip is ready
ROWS_AT_ONCE = 200  # rows handed to the compressor together
MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
PKG_REL = "http://schemas.openxmlformats.org/package/2006/relationships"
SHEET_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"
XML_DECL = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
TEXT_STYLE = 1  # the cellXfs entry with quotePrefix


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

# The smallest style sheet spreadsheets accept: one font, the two fills every file has, one border, and two
# cell formats, the default and the quote-prefixed one.
STYLES = (XML_DECL + f'<styleSheet xmlns="{MAIN}">'
          '<fonts count="1"><font><sz val="11"/><name val="Calibri"/><family val="2"/></font></fonts>'
          '<fills count="2"><fill><patternFill patternType="none"/></fill>'
          '<fill><patternFill patternType="gray125"/></fill></fills>'
          '<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>'
          '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>'
          '<cellXfs count="2"><xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>'
          '<xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0" quotePrefix="1"/></cellXfs>'
          '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>'
          '</styleSheet>')


def _workbook(names: list[str]) -> str:
    sheets = "".join(f'<sheet name={quoteattr(name)} sheetId="{n}" r:id="rId{n}"/>'
                     for n, name in enumerate(names, 1))
    return XML_DECL + f'<workbook xmlns="{MAIN}" xmlns:r="{REL}"><sheets>{sheets}</sheets></workbook>'


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


def cell(ref: str, value) -> str:
    """One cell's XML, or "" for None (an empty cell is simply not written)."""
    if value is None:
        return ""
    if isinstance(value, bool):  # before int: a bool is an int
        return f'<c r="{ref}" t="b"><v>{int(value)}</v></c>'
    if isinstance(value, int) or (isinstance(value, float) and math.isfinite(value)):
        return f'<c r="{ref}"><v>{value!r}</v></c>'
    text = clean_text(value if isinstance(value, str) else str(value))
    style = f' s="{TEXT_STYLE}"' if is_formula_like(text) else ""
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


def stream(sheets: Iterable[tuple[str, Iterable[Iterable]]]) -> Iterator[bytes]:
    """The workbook's bytes, chunk by chunk: one sheet per (name, rows), rows read lazily, one at a time.
    The sheets' names must be known before the first row: `sheets` is read whole first, its rows are not."""
    sheets = list(sheets)
    out = _Chunks()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as book:
        book.writestr(_entry("[Content_Types].xml"), _content_types(len(sheets)))
        book.writestr(_entry("_rels/.rels"), ROOT_RELS)
        book.writestr(_entry("xl/workbook.xml"), _workbook([name for name, _ in sheets]))
        book.writestr(_entry("xl/_rels/workbook.xml.rels"), _workbook_rels(len(sheets)))
        book.writestr(_entry("xl/styles.xml"), STYLES)
        started = False  # the first chunk goes once the first rows are in: a failure before them sends nothing
        for n, (_name, rows) in enumerate(sheets, 1):
            with book.open(_entry(f"xl/worksheets/sheet{n}.xml"), "w") as part:
                part.write((XML_DECL + f'<worksheet xmlns="{MAIN}"><sheetData>').encode())
                pending: list[str] = []
                for r, row in enumerate(rows, 1):
                    pending.append(f'<row r="{r}">' + "".join(cell(f"{_letters(c)}{r}", v) for c, v in enumerate(row))
                                   + "</row>")
                    if len(pending) >= ROWS_AT_ONCE:
                        part.write("".join(pending).encode())
                        pending.clear()
                        if out.size >= FLUSH_BYTES or not started:
                            started = True
                            yield out.take()
                part.write(("".join(pending) + "</sheetData></worksheet>").encode())
    yield out.take()
