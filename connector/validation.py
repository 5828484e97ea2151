"""One line from marshmallow's error messages, for every face's `{"error": ...}`."""
from __future__ import annotations


def first_error(messages) -> str:
    """marshmallow's nested messages -> 'to.extension: Not a valid string.'"""
    path = []
    while isinstance(messages, dict):
        key, messages = next(iter(messages.items()))
        path.append(str(key))
    text = messages[0] if isinstance(messages, list) and messages else str(messages)
    return f"{'.'.join(path)}: {text}" if path else str(text)
