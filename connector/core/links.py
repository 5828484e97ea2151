"""Signed, expiring links to a call's recording, which the CRM's player and the console open."""
from __future__ import annotations

import hashlib
import hmac
import re
import time
from urllib.parse import quote, urlencode

LINK_TTL_SECONDS = 365 * 24 * 3600  # a year, so the player in an old CRM note keeps working


def _signature(secret_key: str, call_id: str, expires: int) -> str:
    message = f"recording\x00{call_id}\x00{expires}".encode()
    return hmac.new(secret_key.encode(), message, hashlib.sha256).hexdigest()


def recording_link(base_url: str, secret_key: str, call_id: str, *, now: float | None = None,
                   ttl: int = LINK_TTL_SECONDS) -> str:
    expires = int((now if now is not None else time.time()) + ttl)
    query = urlencode({"exp": expires, "sig": _signature(secret_key, call_id, expires)})
    return f"{base_url.rstrip('/')}/recordings/{quote(call_id, safe='')}?{query}"


def link_is_valid(secret_key: str, call_id: str, exp: str, sig: str, *, now: float | None = None) -> bool:
    try:
        expires = int(exp)
    except (TypeError, ValueError):
        return False
    if expires < (now if now is not None else time.time()):
        return False
    # Bytes, not str: compare_digest raises on a non-ASCII str, and a link is anyone's to tamper with.
    given = (sig or "").encode("utf-8", "surrogateescape")
    return hmac.compare_digest(_signature(secret_key, call_id, expires).encode(), given)

def record_file_name(entry_id: str) -> str:
    """The file name of a call's recording, with the extension of the PBX's files (mp3)."""
    return (re.sub(r"[^A-Za-z0-9_-]", "", entry_id)[:64] or "call") + ".mp3"
