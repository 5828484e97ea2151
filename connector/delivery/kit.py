"""What a target declares about itself, so the registry can list it and the generic code never names it.

A target (a CRM, the outbound webhook, or one a test defines) is one `TargetKit`: its name as `CRM` lists it,
its job kinds, the planning rules ingest applies, how its delivery target is built from the settings, and,
its own settings (with, when PBX operators are mapped to its users, the map it starts from) and how its users
are read.
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
    # Its own settings: a frozen dataclass read from `env_prefix` + each field's name in capitals (AMOCRM_BASE_URL);
    # a `user_map: dict` field is the extension -> user map it starts from.
    settings_type: type | None = None
    env_prefix: str = ""
    # (config, db, *, session=None) -> () -> list[CrmUser]; None for a target without users
    read_users: Callable[..., Callable] | None = None
    validate: Callable[["Config"], None] = lambda config: None  # its own settings' rules (ConfigError)
    # (config, db, *, session=None) -> TaskReader (connector.delivery.contract): reads its follow-up tasks back;
    # None for a target that makes none
    read_tasks: Callable[..., object] | None = None

    @property
    def has_users(self) -> bool:
        """Whether PBX operators are mapped to its users (its settings have a user map)."""
        return self.settings_type is not None and "user_map" in getattr(self.settings_type, "__dataclass_fields__", {})

    def build_target(self, config: "Config", db: "Database", plannings: tuple, **options) -> "Target":
        return self.build(config, db, plannings=plannings, **options)
