"""Log set-up shared by `connector ...` and gunicorn: one line per record, and no phone number in it.

Log lines name calls by their id (MANGO's entry_id). Callers' numbers are personal data: a number
that reaches a message anyway (a CRM error echoing a request, an exception's text) is masked as it
is written. Secrets are never passed to a logger in the first place; SQL parameters are kept out of
exception texts by the engine (`hide_parameters`)."""
from __future__ import annotations

import logging
import re

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# 10 to 15 digits in a row (as MANGO and amoCRM write numbers), or a + and the separators people
# write numbers with. Ids in our logs are shorter (amoCRM ids) or not all digits (MANGO's entry_id);
# dates have no run of 10 digits and no +.
PHONE = re.compile(r"(?<![\w+])(?<!\d\.)(?:\+\d[\d ()\-]{8,18}\d|\d{10,15})(?!\w)(?!\.\d)")


def mask_phones(text: str) -> str:
    return PHONE.sub(lambda m: "<phone …" + m.group()[-2:] + ">", text)


class RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return mask_phones(super().format(record))


def configure_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format=FORMAT)
    for handler in logging.getLogger().handlers:
        handler.setFormatter(RedactingFormatter(FORMAT))
    # Migrations run inside commands (`db upgrade`, `users add`, `demo`, `serve`), which say themselves what
    # they did: alembic's lines ("Context impl SQLiteImpl.", one per revision) would only bury the answer.
    # Its warnings and errors still show.
    logging.getLogger("alembic").setLevel(logging.WARNING)
