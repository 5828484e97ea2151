"""Serve a WSGI app over real HTTP on a free loopback port, in a background thread."""
from __future__ import annotations

import threading
from contextlib import contextmanager

from waitress.server import create_server


@contextmanager
def serving(app, threads: int = 8):
    server = create_server(app, host="127.0.0.1", port=0, threads=threads, ident="fake")
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        server.close()
        thread.join(timeout=5)
