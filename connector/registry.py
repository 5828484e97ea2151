"""The one list of delivery targets and PBXes: each declares its own parts (`connector.delivery.kit.TargetKit`,
`connector.inbound.pbx.PbxKit`), and everything else asks this module for them (targets by the names CRM lists).
Add a target or a PBX here, nowhere else. Importing it also adds each kit's own tables (its `models.py`) to the schema."""
from __future__ import annotations

from connector.core.alerting import Channel
from connector.core.config import ConfigError, section_names
from connector.core.db import Database
from connector.delivery.kit import TargetKit
from connector.delivery.targets.amocrm.kit import KIT as AMOCRM
from connector.delivery.targets.bitrix24.kit import KIT as BITRIX24
from connector.delivery.targets.webhook.kit import KIT as WEBHOOK
from connector.inbound.link.sms import CHANNEL as SMS_CHANNEL
from connector.inbound.mango.kit import KIT as MANGO
from connector.inbound.pbx import PbxKit

KITS: dict[str, TargetKit] = {kit.name: kit for kit in (AMOCRM, BITRIX24, WEBHOOK)}
PBX: PbxKit = MANGO  # the one PBX the connector speaks to; a second one will be chosen by a setting
# Outbox targets that are not CRMs: the rating link's SMS, the alerts' e-mail and Telegram.
CHANNELS: tuple[str, ...] = (SMS_CHANNEL, *(c.value for c in Channel))


def channels_on(session, config) -> tuple[str, ...]:
    """The channels in use (the status lists them): the rating link's SMS once it is on, globally or on a line;
    the alerts' channels that are set up (in the environment or the console)."""
    from connector.delivery.alerts.channel_setup import available_channels, environment_channels
    from connector.inbound.link.settings import read

    sms = (SMS_CHANNEL,) if read(session)[0].on_anywhere else ()
    return (*sms, *(c.value for c in available_channels(session, environment_channels(config))))


def kit(name: str) -> TargetKit:
    try:
        return KITS[name]
    except KeyError:
        raise ConfigError(f"CRM: expected none or a comma list of {', '.join(KITS)}, got {name!r}") from None


def check(config) -> None:
    """The targets CRM lists exist, and every target accepts its own settings, listed or not, so a wrong value
    waiting for the day it is listed stops start-up now (ConfigError names the first problem)."""
    for name in config.targets:
        kit(name)
    for each in KITS.values():
        each.validate(config)
    PBX.validate(config)


def plannings(config) -> tuple:
    """Each configured target's planning rules, as ingest applies them."""
    return tuple(kit(name).planning(config) for name in config.targets)


def build_target(name: str, config, db: Database, **options):
    """The delivery target `name` of the CRM setting."""
    return kit(name).build_target(config, db, plannings(config), **options)


def build_user_reader(name: str, config, db: Database, *, session=None):
    """What reads target `name`'s users (`() -> list[CrmUser]`), through the target's own client and rate
    limiter; None for a target without users (the webhook). It never trades an authorization code: the
    delivery worker does that at its start."""
    reader = kit(name).read_users
    return reader(config, db, session=session) if reader else None


def build_task_reader(name: str, config, db: Database, *, session=None):
    """What reads target `name`'s follow-up tasks back (`contract.TaskReader`), through its own client and rate
    limiter; None for a target that makes no tasks (the webhook)."""
    reader = kit(name).read_tasks
    return reader(config, db, session=session) if reader else None


def targets_with_users() -> tuple[str, ...]:
    """The targets whose users PBX operators are mapped to, each with its own map."""
    return tuple(k.name for k in KITS.values() if k.has_users)


def sections() -> dict[str, tuple[type, str]]:
    """Each target's and the PBX's own settings, as `Config.from_env` reads them."""
    return {**{k.name: (k.settings_type, k.env_prefix) for k in KITS.values() if k.settings_type},
            PBX.name: (PBX.settings_type, PBX.env_prefix)}


def environment_names() -> list[str]:
    """Every environment name a target or the PBX reads (settings.example.env documents each)."""
    return [name for settings_type, prefix in sections().values() for name in section_names(settings_type, prefix)]

