"""The browser tests' one Chromium for the run (tests/e2e/test_browser.py's `browser` gives it to each test
as new); nothing else here."""
import pytest


@pytest.fixture(scope="session")
def chromium(tmp_path_factory):
    from tests.e2e.test_browser import Chromium, _browser_or_skip

    _browser_or_skip()
    shared = Chromium(tmp_path_factory.mktemp("chromium"))
    try:
        yield shared
    finally:
        shared.quit()
