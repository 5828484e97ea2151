"""The rating page's load on a slow phone, beside a bare page of the same size from the same server (issue
#19: "loads in under 1 s on a throttled phone profile in Chromium").

Chromium's own throttling: 400 kbit/s each way, 400 ms latency, the CPU four times slower; the cache cleared
before every load. Each round loads the rating page of a sent request (the connector on SQLite, served by
werkzeug) and then the anchor: a bare Flask endpoint answering the same bytes, so the figure's share that is the
network profile itself is visible. Run:

    .venv/bin/python bench/rating_page.py [--rounds 7]

It prints every round and the medians, and exits non-zero when the rating page's median is 1 s or more. Needs
Debian's chromium and chromium-driver.
"""
from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flask import Flask  # noqa: E402

from app import create_app  # noqa: E402
from connector.core.db import upgrade  # noqa: E402
from tests.conftest import make_config  # noqa: E402
from tests.e2e.test_browser import start_chromium  # noqa: E402
from tests.e2e.test_rating_page_browser import sent_request, slow_phone  # noqa: E402
from tests.fakes.server import serving  # noqa: E402

logging.getLogger("werkzeug").setLevel(logging.WARNING)
LOAD = "const n = performance.getEntriesByType('navigation')[0]; return [n.loadEventEnd - n.startTime, n.transferSize]"


def rating_app(tmp: str):
    url = f"sqlite:///{tmp}/page.db"
    upgrade(url)
    app = create_app(make_config(url))
    return app, sent_request(app)


def anchor_app(body: bytes) -> Flask:
    anchor = Flask("anchor")
    anchor.add_url_rule("/", "page", lambda: (body, 200, {"Content-Type": "text/html; charset=utf-8"}))
    return anchor


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        app, path = rating_app(tmp)
        body = app.test_client().get(path, headers={"Accept-Language": "ru"}).get_data()
        driver = start_chromium(Path(tmp) / "profile")
        page_ms, anchor_ms = [], []
        try:
            with serving(app) as page_url, serving(anchor_app(body)) as anchor_url:
                driver.set_window_size(360, 740)
                for round_ in range(args.rounds):
                    for url, into in ((page_url + path, page_ms), (anchor_url + "/", anchor_ms)):
                        driver.get("about:blank")
                        driver.execute_cdp_cmd("Network.clearBrowserCache", {})
                        with slow_phone(driver):
                            driver.get(url)
                            took, size = driver.execute_script(LOAD)
                        into.append(took)
                    print(f"round {round_ + 1}: rating page {page_ms[-1]:.0f} ms ({size} bytes), "
                          f"bare page {anchor_ms[-1]:.0f} ms")
        finally:
            driver.quit()
    page, anchor = statistics.median(page_ms), statistics.median(anchor_ms)
    print(f"median: rating page {page:.0f} ms, bare page of the same {len(body)} bytes {anchor:.0f} ms "
          f"(x{page / anchor:.2f}) at 400 kbit/s, 400 ms latency, CPU x4; target < 1000 ms")
    return 0 if page < 1000 else 1


if __name__ == "__main__":
    sys.exit(main())
