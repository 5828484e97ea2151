"""Health for machines: `/healthz` (each component's state, no details) and `/metrics` (Prometheus), both
without a token."""
from __future__ import annotations

import logging

from flask import Blueprint, Response, current_app

from connector import registry
from connector.console import status
from connector.core.metrics import queue_metrics
from web.errors import ApiError

log = logging.getLogger(__name__)
bp = Blueprint("health", __name__)


def services():
    return current_app.extensions["connector"]


def component_details() -> dict:
    try:
        with services().db.reading() as session:
            return status.details(session, services().config.targets, registry.PBX.guard_state,
                                    registry.channels_on(session, services().config))
    except Exception:  # any database failure means unhealthy, never a 500
        raise ApiError(503, "database unavailable") from None


@bp.get("/healthz")
def healthz():
    """200 `ok`, or 200 `degraded` with each component's state (a paused or failing CRM, a blocked PBX
    API, a lagging inbox); 503 when the database does not answer. No error text: that is for tokens."""
    return status.summary(component_details())


@bp.get("/metrics")
def metrics():
    """Prometheus text format: every process's counters (multiprocess mode when PROMETHEUS_MULTIPROC_DIR
    is set), then this moment's queue depths read from the database."""
    import os

    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        collectors = CollectorRegistry()
        multiprocess.MultiProcessCollector(collectors)
    else:
        collectors = REGISTRY
    body = generate_latest(collectors)
    try:
        with services().db.reading() as session:
            state = status.details(session, services().config.targets, registry.PBX.guard_state,
                                    registry.channels_on(session, services().config))
            body += generate_latest(queue_metrics(state))
    except Exception as exc:  # the database is down: the process metrics still tell something
        log.warning("metrics: the queues could not be read (%s)", type(exc).__name__)
    return Response(body, mimetype=CONTENT_TYPE_LATEST)

