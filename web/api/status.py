"""The token API's status: each component's state with its reason (the details /healthz leaves out)."""
from __future__ import annotations

from connector.console import status
from connector.core.models import Role
from web.api.common import bp, require_token
from web.health import component_details


@bp.get("/status")
@require_token(Role.ADMIN, Role.SUPERVISOR)
def get_status():
    """Each component's state with its reason: pause reason, MANGO block, inbox lag, outbox depth."""
    components = component_details()
    return {**status.summary(components), "details": components}
