"""Spreadsheet cells that cannot break a file or attack the person who opens it, for the CSV and XLSX
exports alike. Pure rules; openpyxl is imported only by `xlsx_row`.

- Characters XML 1.0 cannot carry (C0 controls other than tab, line feed and carriage return; U+FFFE,
  U+FFFF; lone surrogates) are removed from every text cell: openpyxl refuses the C0 controls
  (IllegalCharacterError, so one such value made the whole export fail) and writes U+FFFF into a file
  that no spreadsheet can open. Intake refuses them (`connector.validation.text_problem`); rows stored
  before it did, or written by other paths, still come out clean.
- A text cell that a spreadsheet would read as a formula (the OWASP CSV-injection rule: it starts with
  `=`, `+`, `-`, `@`, a tab or a carriage return) is written as text: in CSV prefixed with a single
  quote (`'=HYPERLINK(...)`, `'+79001234567`); in XLSX as a string cell with the quotePrefix style, so
  Excel shows it as sent (`+79001234567`) and never evaluates it, not even after the cell is edited.
- Numbers, dates, booleans and None are left as they are: a negative score stays a number.
"""
from __future__ import annotations

import re

# XML 1.0 Char minus what is allowed: tab, LF and CR stay; surrogates cannot be encoded at all.
ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def clean_text(text: str) -> str:
    """The text without the characters a spreadsheet file cannot carry."""
    return ILLEGAL.sub("", text)


def is_formula_like(text: str) -> bool:
    """Whether a spreadsheet opening this text in a cell could take it for a formula."""
    return text.startswith(FORMULA_START)


def csv_value(value):
    """A value for csv.writer: text cleaned and, when it could be read as a formula, quote-prefixed."""
    if not isinstance(value, str):
        return value
    text = clean_text(value)
    return "'" + text if is_formula_like(text) else text


def csv_row(row) -> list:
    return [csv_value(v) for v in row]


def xlsx_row(sheet, row) -> list:
    """Values for `sheet.append` on a write-only sheet: text cleaned, never a formula."""
    from openpyxl.cell import WriteOnlyCell

    cells = []
    for value in row:
        if isinstance(value, str):
            value = clean_text(value)
            if is_formula_like(value):
                cell = WriteOnlyCell(sheet, value=value)
                cell.data_type = "s"  # openpyxl makes a text starting with "=" a formula
                cell.quotePrefix = True  # and Excel would, once the cell is edited
                value = cell
        cells.append(value)  # any other text is a string cell as it is
    return cells
