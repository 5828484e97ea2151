"""One error shape for every face: JSON `{"error": "<one line>"}` with a 4xx status."""
from __future__ import annotations

import logging
from typing import Callable

from flask import Flask, has_request_context, jsonify, request
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from werkzeug.exceptions import HTTPException

from connector.core.metrics import CALLBACKS
from connector.inbound.ingest import DuplicateEvent
from connector.inbound.pbx import CallbackRejected

log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(self, status: int, message: str, *, headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


FAILURES = (CallbackRejected, OperationalError, DataError, IntegrityError)


def failure_answer(exc: Exception) -> tuple[int, str]:
    """The status and one-line message every face answers a refused callback or a database failure with
    (one of FAILURES), logged here: the Flask faces' handlers and the PBX's callbacks (web/mango.py) alike."""
    if isinstance(exc, CallbackRejected):
        return exc.status, exc.message
    if isinstance(exc, OperationalError):
        # Nothing was committed, so the sender may safely retry.
        log.error("database unavailable: %s", type(exc.orig).__name__)
        return 503, "database unavailable, retry later"
    # Input that slipped past validation and that the database refused: the sender's fault, so a
    # 4xx (nothing was committed). Logged by class only: the statement may hold personal data.
    if isinstance(exc, DataError):
        log.warning("database refused a value: %s", type(exc.orig).__name__)
        return 422, "a value does not fit what the connector can store"
    if isinstance(exc, IntegrityError):
        log.warning("database refused a conflicting change: %s", type(exc.orig).__name__)
        return 409, "conflicting change: it clashes with data already stored"
    raise TypeError(f"not a failure with a known answer: {type(exc).__name__}")


HTTP_MESSAGES = {413: "request body too large", 404: "not found", 405: "method not allowed"}


def http_error_message(exc: HTTPException) -> str:
    """What a face says for an HTTP error the web layer raised (a body too large, a client gone mid-body)."""
    return HTTP_MESSAGES.get(exc.code, exc.description or exc.name)


def one_line(message: str) -> str:
    """An error's text as every face sends it: its first line."""
    return message.splitlines()[0] if message else "error"


def error_response(status: int, message: str):
    response = jsonify(error=one_line(message))
    response.status_code = status
    endpoint = _callback_endpoint()
    if endpoint:
        CALLBACKS.labels(endpoint, f"rejected_{status}").inc()
    return response


def _callback_endpoint() -> str | None:
    """Which machine intake a request is, for the callbacks metric (people's requests are not counted)."""
    if not has_request_context():
        return None
    if request.path.startswith("/mango/"):
        return "mango"
    return "scores" if request.path == "/api/v1/scores" else None


def _for_people() -> bool:
    """A request that matched no face (an unknown address, a wrong method) from a browser asking for a
    page: the machine faces (the API, the PBX's callbacks) always answer JSON."""
    return (request.blueprint is None and not request.path.startswith(MACHINE_PATHS)
            and request.accept_mimetypes.best_match(("application/json", "text/html")) == "text/html")


MACHINE_PATHS = ("/api/", "/mango/", "/recordings/", "/healthz", "/metrics")


def register_error_handlers(app: Flask, *, page_for_people: Callable[[HTTPException], object] | None = None) -> None:
    """JSON errors for every face; `page_for_people` answers instead where a person's browser asked for a
    page at an address no face knows (the console's own views answer with its pages themselves)."""

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        response = error_response(exc.status, exc.message)
        response.headers.update(exc.headers)
        return response

    @app.errorhandler(CallbackRejected)
    @app.errorhandler(OperationalError)
    @app.errorhandler(DataError)
    @app.errorhandler(IntegrityError)
    def _failure(exc: Exception):
        return error_response(*failure_answer(exc))

    @app.errorhandler(DuplicateEvent)
    def _duplicate(exc: DuplicateEvent):
        CALLBACKS.labels(_callback_endpoint() or "other", "duplicate").inc()
        # Senders (the PBX, Standard Webhooks senders) read only the status and retry
        # anything but a 2xx: a message already stored is acknowledged, and nothing changes.
        return {"success": True, "duplicate": True}

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        if page_for_people is not None and _for_people():
            return page_for_people(exc)
        response = error_response(exc.code or 500, http_error_message(exc))
        if getattr(exc, "valid_methods", None):  # a 405 says what is allowed (RFC 9110)
            response.headers["Allow"] = ", ".join(exc.valid_methods)
        return response
