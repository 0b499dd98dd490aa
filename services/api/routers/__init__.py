"""One router per resource; `create_app` includes them all. Routes declare their full path (no
router prefix), which is also the path the request metrics label them with."""

from __future__ import annotations

from services.api.routers import (
    accounts,
    admin,
    alerts,
    clusters,
    dispositions,
    events,
    reports,
    verdicts,
)

ROUTERS = [
    admin.router,
    accounts.router,
    verdicts.router,
    clusters.router,
    events.router,
    reports.router,
    alerts.router,
    dispositions.router,
]
