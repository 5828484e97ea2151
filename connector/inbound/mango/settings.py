"""MANGO OFFICE's own settings, each read from MANGO_<NAME> (settings.example.env documents them), and their rules."""
from __future__ import annotations

from dataclasses import dataclass

from connector.core.config import ConfigError

NAME = "mango"
PREFIX = "MANGO_"

# Where MANGO's quality-control scores come from: extended call statistics in bulk (`stats`), the
# Contact Center API call by call (`cc`), or both (the statistics for every call, `cc/call/` between
# scans for the calls the statistics show the contact centre handled).
QUALITY_SOURCES = ("both", "stats", "cc")


@dataclass(frozen=True)
class MangoSettings:
    """The PBX's settings; the key and salt may instead be entered on the settings page (its pair wins)."""

    api_key: str = ""  # the VPBX's unique code (vpbx_api_key)
    api_salt: str = ""  # secret: the signing key
    api_url: str = "https://app.mango-office.ru/vpbx/"
    survey_location: str = ""  # the IVR menu whose digits are the customer's score, e.g. ivr.5
    quality_api: bool = False
    quality_source: str = "both"  # stats, cc or both: where quality-control scores are pulled from
    stats_utc_offset: int = 3  # hours: the time zone MANGO reads a statistics period in
    rate_limit: float = 5.0


def settings_of(config) -> MangoSettings:
    return config.section(NAME, MangoSettings, PREFIX)


def validate(config) -> None:
    own = settings_of(config)
    if not 0 < own.rate_limit <= 10:
        raise ConfigError(f"MANGO_RATE_LIMIT: must be above 0 and at most MANGO's 10 per second, "
                          f"got {own.rate_limit}")
    if own.quality_source not in QUALITY_SOURCES:
        raise ConfigError(f"MANGO_QUALITY_SOURCE: expected one of {', '.join(QUALITY_SOURCES)}, "
                          f"got {own.quality_source!r}")
    if not -12 <= own.stats_utc_offset <= 14:
        raise ConfigError(f"MANGO_STATS_UTC_OFFSET: hours from UTC, -12 to 14, got {own.stats_utc_offset}")
    # MANGO_QUALITY_API needs the PBX's key and salt, from here or entered in the console (checked there):
    # until a pair is in force no command is sent, and the settings page says MANGO is not connected.
