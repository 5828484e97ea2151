"""What the connections saved on the settings page share: where a value in force comes from, and how much of
a secret people may see. The secrets themselves are encrypted with the tokens' cipher
(`connector.core.accounts.token_cipher`)."""
from __future__ import annotations

import enum

SHOWN = 4  # characters shown of a secret


class Source(enum.StrEnum):
    """Where a connection's value in force comes from."""

    CONSOLE = "console"  # saved by an admin on the settings page: wins once saved
    ENVIRONMENT = "environment"  # the environment variables (.env)
    NONE = "none"  # neither: the connection is not set up


def masked(secret: str) -> str:
    """What people may see of a secret: its last characters only ("…1a2b"); nothing of a short one."""
    return "…" + secret[-SHOWN:] if len(secret) > 2 * SHOWN else "…"
