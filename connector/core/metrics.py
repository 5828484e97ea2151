"""Prometheus metrics. Counters and histograms are updated where things happen; queue depths are read
from the database when `/metrics` is scraped (`queue_metrics`). Under gunicorn, and for `connector
worker` processes on the same host, set PROMETHEUS_MULTIPROC_DIR (gunicorn.conf.py does) so that one
scrape sums every process. Labels never carry a call id, a phone number or a secret."""
from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # multiprocess mode writes there from the first metric on
    os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)

CALLBACKS = Counter("connector_callbacks_total", "Callbacks received, by endpoint and outcome "
                    "(accepted, duplicate, rejected_<status>)", ["endpoint", "outcome"])
EVENTS_APPLIED = Counter("connector_events_applied_total", "Stored events applied to their calls")
APPLY_LAG = Histogram("connector_apply_lag_seconds", "From a callback's commit to its call being visible",
                      buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300))
DELIVERIES = Counter("connector_deliveries_total", "Delivery job outcomes, by CRM, kind and outcome",
                     ["crm", "kind", "outcome"])
CRM_REQUESTS = Histogram("connector_crm_request_seconds", "CRM requests, by CRM and HTTP status (or error)",
                         ["crm", "status"], buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20))
LIMITER_WAIT = Histogram("connector_limiter_wait_seconds", "Waits for the shared rate slot, by account",
                         ["account"], buckets=(0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 30))
RECORDING_COPIES = Counter("connector_recording_copies_total", "Recordings copied from the PBX for targets that "
                           "download them, by outcome (copied, missing, failed, deferred, over_limit)", ["outcome"])

FOLLOW_UP_READS = Counter("connector_follow_up_reads_total", "Follow-up tasks read back from a target, by target "
                          "and outcome (open, completed, deleted, failed)", ["target", "outcome"])


def queue_metrics(components: dict) -> CollectorRegistry:
    """Gauges of this moment, from `connector.console.status.details`: inbox backlog, outbox depth and age."""
    registry = CollectorRegistry()
    up = Gauge("connector_component_ok", "1 when the component is ok", ["component", "state"], registry=registry)
    for name, part in components.items():
        up.labels(name, part["state"]).set(1 if part["state"] in ("ok", "none") else 0)
    inbox = components["inbox"]
    Gauge("connector_inbox_pending", "Stored events not applied yet", registry=registry).set(inbox["pending"])
    Gauge("connector_inbox_oldest_pending_seconds", "Age of the oldest event not applied yet",
          registry=registry).set(inbox["oldest_pending_seconds"] or 0)
    depth = Gauge("connector_outbox_pending", "Delivery jobs waiting, by CRM and kind", ["crm", "kind"],
                  registry=registry)
    oldest = Gauge("connector_outbox_oldest_pending_seconds", "Age of the oldest waiting delivery job",
                   ["crm", "kind"], registry=registry)
    crm = components["crm"]
    channels = [part for name, part in components.items() if name != "crm" and "outbox" in part]
    for target in [*(crm.get("targets") or {crm["name"]: crm}).values(), *channels]:
        for kind, queue in (target.get("outbox") or {}).items():
            depth.labels(target["name"], kind).set(queue["pending"])
            oldest.labels(target["name"], kind).set(queue["oldest_seconds"] or 0)
    reports = [part["reports"] for part in components.values() if isinstance(part, dict) and "reports" in part]
    if reports:
        Gauge("connector_report_mails_dead", "Scheduled report e-mails given up (a replay or a fix sends the next)",
              registry=registry).set(sum(r["dead"] for r in reports))
    scan_ok = Gauge("connector_pbx_scan_ok", "1 when the PBX statistics scan of the window last succeeded",
                    ["window"], registry=registry)
    scan_age = Gauge("connector_pbx_scan_last_finished_seconds", "Seconds since the window's scan last finished "
                     "(-1: never)", ["window"], registry=registry)
    for name, scan in components["pbx"].get("quality_scans", {}).items():
        scan_ok.labels(name).set(0 if scan["last_error"] else 1)
        finished = scan["last_finished_seconds"]
        scan_age.labels(name).set(-1 if finished is None else finished)
    if (directory := components["pbx"].get("directory")) is not None:
        Gauge("connector_operator_directory_failures", "Failed reads of the PBX's user list in a row (0: the last "
              "read succeeded)", registry=registry).set(directory["failures"])
    return registry
