"""Spreadsheet cells that cannot break a file or attack the person who opens it, for the CSV and XLSX
exports alike. Pure rules; the XLSX writer (`connector.console.xlsx`) applies them to each cell it writes.

- Characters XML 1.0 cannot carry (C0 controls other than tab, line feed and carriage return; U+FFFE,
  U+FFFF; lone surrogates) are removed from every text cell: a file with them is no XML, and no spreadsheet
  opens it (openpyxl, the writer before `connector.console.xlsx`, refused the C0 controls, so one such value made
  the whole export fail). Intake refuses them (`connector.core.validation.text_problem`); rows stored before
  it did, or written by other paths, still come out clean.
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
