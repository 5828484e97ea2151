"""What a target declares about itself, so the registry can list it and the generic code never names it.

A target (a CRM, the outbound webhook, or one a test defines) is one `TargetKit`: its name as `CRM` lists it,
its job kinds, the planning rules ingest applies, how its delivery target is built from the settings, and,
when it has users that PBX operators are mapped to, the setting its map starts from and how its users are read.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from connector.core.config import Config
    from connector.core.db import Database
    from connector.delivery.outbox import Planning
    from connector.delivery.worker import Target


@dataclass(frozen=True)
class TargetKit:
    name: str  # as CRM lists it, and the `crm` of its jobs and records
    kinds: tuple[str, ...]  # its job kinds, as stored in `delivery_jobs.kind`
    planning: Callable[["Config"], "Planning"]
    # (config, db, *, plannings, session=None) -> Target; `plannings` are every configured target's rules
    build: Callable[..., "Target"]
    user_map_setting: str = ""  # the setting its extension -> user map starts from; empty: it has no users
    # (config, db, *, session=None) -> () -> list[CrmUser]; None for a target without users
    read_users: Callable[..., Callable] | None = None
    validate: Callable[["Config"], None] = lambda config: None  # its own settings' rules (ConfigError)

    def initial_user_map(self, config: "Config") -> dict:
        return getattr(config, self.user_map_setting) if self.user_map_setting else {}

    def build_target(self, config: "Config", db: "Database", plannings: tuple, **options) -> "Target":
        return self.build(config, db, plannings=plannings, **options)
