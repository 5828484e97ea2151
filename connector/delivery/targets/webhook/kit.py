"""The outbound webhook as the registry knows it."""
from __future__ import annotations

from connector.core.config import ConfigError, is_webhook_secret
from connector.core.db import Database
from connector.delivery.kit import TargetKit
from connector.delivery.targets.webhook.kinds import JobKind
from connector.delivery.targets.webhook.target import NAME, WebhookConnection, WebhookPlanning, WebhookTarget


def build_webhook_connection(config, db: Database) -> WebhookConnection:
    """The outbound webhook's URL and secret in force: the console's once saved, else the environment's."""
    return WebhookConnection(db, config.WEBHOOK_TARGET_URL, config.WEBHOOK_TARGET_SECRET, config.SECRET_KEY)


def _webhook_target(config, db: Database, *, plannings: tuple = (), session=None) -> WebhookTarget:
    # The CRMs beside it, with their defaults for high scores: each message says which of them writes the score.
    crm_defaults = {p.name: p.high_scores for p in plannings if p.name != NAME}
    return WebhookTarget(config.WEBHOOK_TARGET_URL, config.WEBHOOK_TARGET_SECRET, session=session,
                         crm_defaults=crm_defaults, connection=build_webhook_connection(config, db))


def validate(config) -> None:
    """The webhook's settings: both may instead be entered on the settings page; the environment's, when given,
    must be whole."""
    if config.WEBHOOK_TARGET_URL and not config.WEBHOOK_TARGET_URL.startswith(("https://", "http://")):
        raise ConfigError("WEBHOOK_TARGET_URL: expected an http(s) URL")
    if config.WEBHOOK_TARGET_URL and not is_webhook_secret(config.WEBHOOK_TARGET_SECRET):
        raise ConfigError("WEBHOOK_TARGET_SECRET: expected whsec_ followed by base64 (at least 24 bytes)")


KIT = TargetKit(NAME, tuple(JobKind), planning=lambda config: WebhookPlanning(), build=_webhook_target,
                validate=validate)
