"""The console speaks Russian by default and English on request; every message has its translation."""
import io
import re
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

WEBUI = Path(__file__).resolve().parent.parent / "webui"
CATALOGUE = WEBUI / "translations" / "en" / "LC_MESSAGES"
MESSAGE = re.compile(r"""\b_l?\(\s*(["'])(.+?)\1""")


def _catalogue():
    with open(CATALOGUE / "messages.po", "rb") as f:
        return read_po(f)


def test_every_message_of_the_console_has_an_english_translation():
    used = set()
    for path in [*WEBUI.glob("templates/*.html"), *WEBUI.glob("*.py")]:
        used |= {m.group(2) for m in MESSAGE.finditer(path.read_text())}
    catalogue = _catalogue()
    missing = sorted(m for m in used if not (catalogue.get(m) and catalogue.get(m).string))
    assert len(used) > 80 and missing == []


def test_the_compiled_catalogue_matches_its_source():
    compiled = io.BytesIO()
    write_mo(compiled, _catalogue())
    assert (CATALOGUE / "messages.mo").read_bytes() == compiled.getvalue(), \
        "messages.mo is stale: compile messages.po again (pybabel compile -d webui/translations)"


def test_russian_by_default_english_on_request_and_remembered(client):
    assert "Пользователь" in client.get("/login").get_data(as_text=True)
    english = client.get("/login?lang=en").get_data(as_text=True)
    assert "Username" in english and "Password" in english and '<html lang="en">' in english
    assert "Log in" in client.get("/login").get_data(as_text=True)  # the choice stays for the session
    assert "Пользователь" in client.get("/login?lang=ru").get_data(as_text=True)
    assert "Пользователь" in client.get("/login?lang=xx").get_data(as_text=True)  # unknown: unchanged
