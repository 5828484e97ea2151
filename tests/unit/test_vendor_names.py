"""The generic core names no vendor: a PBX's or a target's name in a generic module's code couples the core to it.

Generic modules are `connector/core`, `connector/inbound` (not its PBX packages), `connector/delivery` (not
`targets/`) and `connector/console`. Identifiers and string literals count; comments and docstrings do not (they
may cite a vendor's manual as the reason for a rule). The modules that still name one are listed with how many
times: the list may only shrink, and an entry that is clean must go, so each move of vendor code into its own
package is kept.
"""
from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENDOR = re.compile(r"amo_?crm|bitrix|(?<![a-z])b24|mango|kommo", re.IGNORECASE)
GENERIC = ("connector/core", "connector/inbound", "connector/delivery", "connector/console")
VENDOR_PACKAGES = ("connector/inbound/mango", "connector/delivery/targets")

# What still names one: the stored and published values of two score origins (`scores.origin`, the API's
# `origin`), which rows and integrations already hold.
STILL_NAMING = {
    "connector/core/models.py": 2,
}


def vendor_names(source: str) -> list[tuple[int, str]]:
    """(line, token) of each identifier or string literal naming a vendor; docstrings and comments left out."""
    found, previous = [], None
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type in (tokenize.COMMENT, tokenize.NL):
            continue
        statement_start = previous is None or previous.type in (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT)
        is_docstring = token.type == tokenize.STRING and statement_start
        if token.type in (tokenize.NAME, tokenize.STRING) and not is_docstring and VENDOR.search(token.string):
            found.append((token.start[0], token.string[:60]))
        previous = token
    return found


def generic_modules() -> list[Path]:
    modules = [p for area in GENERIC for p in (ROOT / area).rglob("*.py")]
    return sorted(p for p in modules if not str(p.relative_to(ROOT)).startswith(VENDOR_PACKAGES))


def test_the_check_sees_code_and_not_citations():
    source = ('"""Per MANGO\'s manual §3.5."""\n'
              "# amoCRM answers 204 here\n"
              "def fetch(api):\n"
              "    \"\"\"Bitrix24 batches.\"\"\"\n"
              "    return api.call('crm.bitrix_thing', MangoError)\n")
    assert [token for _line, token in vendor_names(source)] == ["'crm.bitrix_thing'", "MangoError"]


def test_no_generic_module_names_a_vendor_beyond_the_list():
    named = {str(p.relative_to(ROOT)): vendor_names(p.read_text()) for p in generic_modules()}
    new = {path: found[:5] for path, found in named.items() if found and path not in STILL_NAMING}
    assert new == {}, "a generic module names a vendor: move that code into the vendor's package"
    grown = {path: len(named.get(path, [])) for path, allowed in STILL_NAMING.items()
             if len(named.get(path, [])) > allowed}
    assert grown == {}, "a listed module names vendors more often than before"


def test_the_list_only_shrinks():
    counts = {str(p.relative_to(ROOT)): len(vendor_names(p.read_text())) for p in generic_modules()}
    stale = {path: (allowed, counts.get(path, 0)) for path, allowed in STILL_NAMING.items()
             if counts.get(path, 0) < allowed}
    assert stale == {}, "fewer vendor names than listed (allowed, found): lower or drop the entry"
