"""Security headers for what a browser opens: the console, the API, the recording links.

The PBX's callbacks go without them: no browser reads those answers, and the intake stays lean.
The console has no script at all, so the policy forbids every script; its styles are inline (one page,
no assets). A recording plays from the PBX's own host after our redirect, so media may come from any
host. No page may be framed (clickjacking), no answer sniffed into another type, and no address, which
for a recording link carries its signature, is sent on as a referrer.
"""
from __future__ import annotations

from flask import Flask, Response

CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'none'; style-src 'self' 'unsafe-inline'; "
                           "img-src 'self' data:; media-src *; object-src 'none'; base-uri 'none'; "
                           "form-action 'self'; frame-ancestors 'none'")
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def protect(app: Flask) -> None:
    """Add the headers to every answer of `app` (the PBX's callbacks are answered before it: web/mango.py)."""

    @app.after_request
    def add_security_headers(response: Response) -> Response:
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        return response
