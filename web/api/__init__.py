"""The JSON API at /api/v1: one blueprint (`api`), its routes in modules by area. `scores` is the signed score
intake (machine-facing, Standard Webhooks); `calls`, `reports`, `notifications`, `settings`, `status`,
`rating_link` (its settings and the do-not-contact list) and `alerts` (their settings and routes) are the
token API; `common` holds the blueprint, the bearer-token check and the JSON body's reading. /healthz and
/metrics are `web.health`; the OpenAPI document, `web.openapi`."""
from web.api.common import bp

# Each module registers its routes on `bp` as it is imported, in the order the API has always listed them.
from web.api import scores, calls, reports, notifications, settings, status, rating_link, alerts

__all__ = ["bp", "scores", "calls", "reports", "notifications", "settings", "status", "rating_link", "alerts"]
