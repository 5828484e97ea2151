"""MANGO OFFICE VPBX callbacks: verify, validate, store in the inbox, then answer 200.

The PBX admin points the VPBX "API connector" at `<PUBLIC_BASE_URL>/mango`.

A WSGI layer of its own in front of the web framework: a callback needs no session, no locale, no template,
no routing table, so it reads the form, checks the key and the signature, validates, hands the message to the
writer and answers, and nothing more (docs/performance.md). Its answers are the framework's to the byte: the
same JSON, statuses, `Allow` headers and error texts (web/errors.py); an address under `/mango/` that is no
callback goes on to the framework's 404.
"""
from __future__ import annotations

import io
import json
import logging
from typing import Callable, Iterable

from werkzeug.exceptions import HTTPException, InternalServerError, RequestEntityTooLarge
from werkzeug.formparser import FormDataParser
from werkzeug.http import HTTP_STATUS_CODES, parse_options_header
from werkzeug.wsgi import get_content_length, get_input_stream

from connector.core.metrics import CALLBACKS
from connector.core.validation import text_problem
from connector.inbound.inbox import InboxWriter
from connector.inbound.mango import callbacks as mango
from connector.inbound.mango.credentials import CALLBACK_SECONDS, CredentialStore
from connector.inbound.pbx import CallbackRejected, PayloadRejected, SignatureRejected
from web.errors import FAILURES, failure_answer, http_error_message, one_line
from web.security import HEADERS as BROWSER_HEADERS

log = logging.getLogger(__name__)

PREFIX = "/mango"
GROUPS = ("events", "result")  # `<PREFIX>/<group>/<name>`: what the PBX posts to
MAX_KIND = 64  # inbound_events.kind
# The PBX's own examples post urlencoded forms; public MANGO clients post multipart.
FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")
ALLOW = "OPTIONS, POST"
MAX_FORM_PARTS = 1000  # as the framework's forms: a multipart body of more parts is refused (413)

Content = tuple[str, dict, "int | None"]  # the body's media type (lower case), its parameters, its length
WsgiApp = Callable[[dict, Callable], Iterable[bytes]]


class NotAForm(CallbackRejected):
    """A body the PBX would never send: neither of FORMS."""

    status = 415


def normal_path(path: str) -> str:
    """The PBX's callbacks under `/mango//events/...` are taken as `/mango/events/...`. MANGO's manual gives
    the external system's address with a trailing slash (§2.1.1, `https://external-system.com/mango-api-connector/`)
    and does not say whether it adds one before `events/...`; the web framework would answer a doubled slash
    with a 308 redirect, which a PBX need not follow, and the event would be lost to a redirect."""
    if path.startswith(PREFIX + "/") and "//" in path:
        return PREFIX + "/" + "/".join(p for p in path[len(PREFIX):].split("/") if p)
    return path


def callback_kind(path: str) -> str | None:
    """`events/call` for `/mango/events/call`, `ping` for `/mango/ping`; None: no callback's address."""
    rest = path[len(PREFIX) + 1:]
    if rest == "ping":
        return rest
    group, _, name = rest.partition("/")  # `normal_path` left no empty segment
    return rest if group in GROUPS and name else None


class MangoCallbacks:
    """The WSGI layer: callbacks answered here, every other request passed on to `app`."""

    def __init__(self, app: WsgiApp, *, intake: InboxWriter, credentials: CredentialStore, max_body: int):
        self.app, self.intake, self.credentials = app, intake, credentials
        self.max_body = max_body
        self.accepted, self.duplicates = CALLBACKS.labels("mango", "accepted"), CALLBACKS.labels("mango", "duplicate")

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if not path.startswith(PREFIX + "/"):
            return self.app(environ, start_response)
        environ["PATH_INFO"] = path = normal_path(path)
        # As the framework reads an address: the server's latin-1 text is the client's UTF-8 bytes.
        kind = callback_kind(path.encode("latin-1").decode("utf-8", "replace"))
        if kind is None:
            return self.app(environ, start_response)  # its 404, as for any unknown address
        method = environ.get("REQUEST_METHOD", "")
        if method == "OPTIONS":
            start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"), ("Allow", ALLOW),
                                      ("Content-Length", "0")])
            return []
        if method != "POST":
            body = _refused(405, "method not allowed")[1]
            start_response(_status(405), [*_json_headers(body), ("Allow", ALLOW), *BROWSER_HEADERS.items()])
            return [] if method == "HEAD" else [body]
        status, body = self._answer(environ, kind)
        start_response(_status(status), _json_headers(body))
        return [body]

    def _answer(self, environ: dict, kind: str) -> tuple[int, bytes]:
        try:
            content = _content(environ)
            stored = self._ping(environ, content) if kind == "ping" else self._event(environ, kind, content)
        except HTTPException as exc:  # a body over the limit, a client gone mid-body
            return _refused(exc.code or 500, http_error_message(exc))
        except FAILURES as exc:  # refused (415, 400, 403), or the database's failure (503, 422, 409)
            return _refused(*failure_answer(exc))
        except Exception:  # noqa: BLE001 - answered as the framework answers what nobody foresaw, and logged
            log.exception("Exception on %s [POST]", environ.get("PATH_INFO"))
            return _refused(500, InternalServerError.description)
        if stored is False:  # only after the commit: the PBX reads only the status, a duplicate is acknowledged
            self.duplicates.inc()
            return 200, DUPLICATE
        if stored is True:
            self.accepted.inc()
        return 200, SUCCESS

    def _ping(self, environ: dict, content: Content) -> None:
        """The account's "check connection" button; it may post nothing at all, which is answered 200
        and stores nothing. A ping that carries fields is verified like any event."""
        mimetype, _, length = content
        if length or mimetype:
            form = self._form(environ, content)
            if mimetype not in FORMS or form:
                self._verified_json(form, mimetype)

    def _event(self, environ: dict, kind: str, content: Content) -> bool:
        if len(kind) > MAX_KIND or text_problem(kind) or not kind.isprintable():
            raise PayloadRejected(f"path: the event name must be printable and at most {MAX_KIND} characters")
        message = mango.parse(kind, self._verified_json(self._form(environ, content), content[0]))
        return self.intake.submit("mango", message)  # committed, with others waiting at the same moment

    def _form(self, environ: dict, content: Content) -> dict:
        """The form's fields (the first value of each), read as the framework reads a form: a body over the
        limit is refused (413), one that cannot be read is an empty form. The PBX's usual body, urlencoded
        ASCII, is read by `urlencoded_fields`; anything else by the framework's own parser."""
        mimetype, options, length = content
        if mimetype not in FORMS:
            return {}
        if mimetype == FORMS[0] and length is not None:
            if length > self.max_body:
                raise RequestEntityTooLarge()
            body = environ["wsgi.input"].read(length)
            fields = urlencoded_fields(body) if len(body) == length else None
            if fields is not None:
                return fields
            environ["wsgi.input"] = io.BytesIO(body)  # read again below, as it came
        stream = get_input_stream(environ, max_content_length=self.max_body)
        parser = FormDataParser(max_form_memory_size=self.max_body, max_content_length=self.max_body,
                                max_form_parts=MAX_FORM_PARTS)
        _, form, _ = parser.parse(stream, mimetype, length, options)
        return form

    def _verified_json(self, form, mimetype: str) -> str:
        if mimetype not in FORMS:
            raise NotAForm(f"expected {FORMS[0]} or {FORMS[1]}, got {mimetype or 'no content type'}")
        credentials = self.credentials.current(max_age=CALLBACK_SECONDS)  # no read on the way of a callback
        try:
            return mango.verify(form, credentials.api_key, credentials.salt)
        except SignatureRejected:
            fresh = self.credentials.after_refusal()  # a pair saved in another process since: accepted at once
            if fresh is None or fresh == credentials:
                raise
            return mango.verify(form, fresh.api_key, fresh.salt)


def _content(environ: dict) -> Content:
    """The body's media type (lower case, as the framework's `mimetype`), its parameters and its length."""
    content_type = environ.get("CONTENT_TYPE", "")
    if content_type == FORMS[0]:  # what the PBX sends: nothing to take apart
        return content_type, {}, get_content_length(environ)
    mimetype, options = parse_options_header(content_type)
    return mimetype.lower(), options, get_content_length(environ)


def urlencoded_fields(body: bytes) -> dict[str, str] | None:
    """The fields of an urlencoded ASCII body (the first value of each) as the framework's parser reads
    them (`urllib.parse.parse_qsl` with blank values kept), in a quarter of its time: the percent escapes
    are decoded by Python's own `unicode_escape` codec in C instead of one by one in Python. None where it
    cannot be sure (a byte past ASCII, a broken escape, text that is not UTF-8): the framework's parser
    reads those. tests/test_mango_form.py compares the two on generated bodies."""
    if not body.isascii():
        return None
    fields: dict[str, str] = {}
    for pair in body.decode("ascii").split("&"):
        if not pair:
            continue
        name, _, value = pair.partition("=")
        name, value = _unquote(name), _unquote(value)
        if name is None or value is None:
            return None
        fields.setdefault(name, value)
    return fields


def _unquote(text: str) -> str | None:
    text = text.replace("+", " ")
    if "%" not in text:
        return text
    # Every backslash doubled, so that the only escapes the codec sees are the \xHH made from %HH.
    escaped = text.replace("\\", "\\\\").replace("%", "\\x").encode("ascii")
    try:
        return escaped.decode("unicode_escape").encode("latin-1").decode("utf-8")
    except UnicodeDecodeError:  # %4 at the end, %ZZ, or bytes that are not UTF-8
        return None


def _refused(status: int, message: str) -> tuple[int, bytes]:
    CALLBACKS.labels("mango", f"rejected_{status}").inc()
    return status, _json({"error": one_line(message)})


def _json(document: dict) -> bytes:
    """As the framework writes JSON outside debug mode: compact, UTF-8 as it is, a closing line break."""
    return (json.dumps(document, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


SUCCESS, DUPLICATE = _json({"success": True}), _json({"success": True, "duplicate": True})


def _json_headers(body: bytes) -> list[tuple[str, str]]:
    return [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]


def _status(code: int) -> str:
    return f"{code} {HTTP_STATUS_CODES[code].upper()}"
