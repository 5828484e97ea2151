"""The outbound webhook as the registry knows it."""
from __future__ import annotations

from dataclasses import dataclass
from connector.core.config import ConfigError, is_webhook_secret
from connector.core.db import Database
from connector.delivery.kit import TargetKit
from connector.delivery.targets.webhook.kinds import JobKind
from connector.delivery.targets.webhook.target import NAME, WebhookConnection, WebhookPlanning, WebhookTarget

PREFIX = "WEBHOOK_TARGET_"


@dataclass(frozen=True)
class WebhookSettings:
    """The webhook's own settings, read from WEBHOOK_TARGET_URL and WEBHOOK_TARGET_SECRET."""

    url: str = ""
    secret: str = ""  # secret: whsec_ and base64


def settings_of(config) -> WebhookSettings:
    return config.section(NAME, WebhookSettings, PREFIX)


def build_webhook_connection(config, db: Database) -> WebhookConnection:
    """The outbound webhook's URL and secret in force: the console's once saved, else the environment's."""
    own = settings_of(config)
    return WebhookConnection(db, own.url, own.secret, config.SECRET_KEY)


def _webhook_target(config, db: Database, *, plannings: tuple = (), session=None) -> WebhookTarget:
    own = settings_of(config)
    # The CRMs beside it, with their defaults for high scores: each message says which of them writes the score.
    crm_defaults = {p.name: p.high_scores for p in plannings if p.name != NAME}
    return WebhookTarget(own.url, own.secret, session=session,
                         crm_defaults=crm_defaults, connection=build_webhook_connection(config, db))


def validate(config) -> None:
    """The webhook's settings: both may instead be entered on the settings page; the environment's, when given,
    must be whole."""
    own = settings_of(config)
    if own.url and not own.url.startswith(("https://", "http://")):
        raise ConfigError("WEBHOOK_TARGET_URL: expected an http(s) URL")
    if own.url and not is_webhook_secret(own.secret):
        raise ConfigError("WEBHOOK_TARGET_SECRET: expected whsec_ followed by base64 (at least 24 bytes)")


KIT = TargetKit(NAME, tuple(JobKind), planning=lambda config: WebhookPlanning(), build=_webhook_target,
                settings_type=WebhookSettings, env_prefix=PREFIX, validate=validate)
