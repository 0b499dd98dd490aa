"""The alert outbox (analysts read and acknowledge) and the webhooks it delivers to (admins)."""

from __future__ import annotations

import time

from fastapi import APIRouter, HTTPException

from services.api.deps import (
    Admin,
    AlertStatusFilter,
    Analyst,
    Audit,
    Limit,
    Offset,
    SettingsDep,
    StoreDep,
)
from services.api.errors import errors
from services.api.schemas import (
    Acknowledgement,
    Alert,
    Page,
    Webhook,
    WebhookRemoved,
    WebhookRequest,
)
from services.webhooks import add_webhook, enqueue_acknowledgement, remove_webhook, webhooks
from storage import queries

router = APIRouter()


@router.get("/v1/alerts", tags=["alerts"], responses=errors(401, 403, 422))
def list_alerts(
    _who: Analyst,
    store: StoreDep,
    audit: Audit,
    status: AlertStatusFilter = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[Alert]:
    """Alerts, newest first, with their delivery state (their payloads: an audited view)."""
    audit.note("list_alerts")
    return Page[Alert].of(queries.alert_page(store, status, limit, offset), Alert.from_row)


@router.post("/v1/alerts/{alert_id}/ack", tags=["alerts"], responses=errors(401, 403, 404, 422))
def acknowledge_alert(
    alert_id: str, who: Analyst, store: StoreDep, audit: Audit
) -> Acknowledgement:
    """Mark an alert as seen by the caller; delivery goes on regardless. An alert sent to
    PagerDuty sends it an `acknowledge` event for the alert's group."""
    now_ms = int(time.time() * 1000)
    row = queries.acknowledge_alert(store, alert_id, who.token_id, now_ms)
    if row is None:
        raise HTTPException(404, f"no alert {alert_id!r}")
    audit.note("acknowledge_alert", account_id=row["account_id"])
    enqueue_acknowledgement(store, row)  # a PagerDuty incident is acknowledged there too
    return Acknowledgement(alert_id=alert_id, acknowledged_by=who.token_id, acknowledged_ms=now_ms)


@router.get("/v1/webhooks", tags=["admin"], responses=errors(401, 403))
def list_webhooks(_who: Admin, store: StoreDep) -> Page[Webhook]:
    """The active webhooks (one page: there are never many)."""
    return Page[Webhook].whole([Webhook.model_validate(hook) for hook in webhooks(store)])


@router.post("/v1/webhooks", tags=["admin"], status_code=201, responses=errors(401, 403, 413, 422))
def create_webhook(
    body: WebhookRequest, _who: Admin, store: StoreDep, settings: SettingsDep, audit: Audit
) -> Webhook:
    """Alerts go to this URL from now on, signed with the deployment's webhook secret. Its host
    must resolve to public addresses only, unless `webhook_allow_networks` lists the network.
    A `pagerduty` webhook (`https://events.pagerduty.com/v2/enqueue`) takes its routing key."""
    routing_key = body.routing_key.get_secret_value() if body.routing_key else None
    secret = settings.webhook_secret
    sealing = secret.get_secret_value().encode() if secret else None
    try:
        webhook_id = add_webhook(
            store, body.url, body.format, settings.webhook_allow_networks, routing_key, sealing
        )
    except ValueError as refused:  # the URL (WebhookURLError) or the routing key
        audit.note("add_webhook")  # audited with the 422
        raise HTTPException(422, str(refused)) from None
    audit.note(f"add_webhook:{webhook_id}")
    return Webhook(webhook_id=webhook_id, url=body.url, format=body.format)


@router.delete("/v1/webhooks/{webhook_id}", tags=["admin"], responses=errors(401, 403, 404, 422))
def delete_webhook(webhook_id: str, _who: Admin, store: StoreDep, audit: Audit) -> WebhookRemoved:
    audit.note(f"remove_webhook:{webhook_id}")
    if not remove_webhook(store, webhook_id):
        raise HTTPException(404, f"no webhook {webhook_id!r}")
    return WebhookRemoved(webhook_id=webhook_id)
