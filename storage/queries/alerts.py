"""The alert outbox (`alerts`) and the webhooks it delivers to."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypedDict, cast

from storage.base import Store
from storage.queries.paging import RowPage, fetch_page


class AlertSummaryRow(TypedDict):
    alert_id: str
    created_time: int  # epoch seconds
    kind: str
    account_id: str
    cluster_id: str
    payload_json: str
    status: str  # pending | delivered | expired
    attempts: int
    last_error: str
    webhook_id: str
    acknowledged_by: str
    acknowledged_ms: int


class AlertRow(AlertSummaryRow):
    next_attempt_ms: int
    version: int


class AlertClaimRow(TypedDict):
    alert_id: str
    attempt: int
    token: str
    dispatcher: str
    claimed_ms: int
    lease_until_ms: int


class WebhookRow(TypedDict):
    webhook_id: str
    url: str
    format: str
    routing_key_sealed: str  # never leaves services.webhooks unsealed
    created_time: int
    active: int
    version: int


def alert_page(
    store: Store, status: str | None, limit: int, offset: int
) -> RowPage[AlertSummaryRow]:
    """Alerts, newest first, optionally only those with `status`."""
    return fetch_page(
        store,
        "SELECT alert_id, created_time, kind, account_id, cluster_id, payload_json, status,"
        " attempts, last_error, webhook_id, acknowledged_by, acknowledged_ms"
        " FROM {db}.alerts FINAL WHERE %(status)s = '' OR status = %(status)s"
        " ORDER BY created_time DESC, alert_id",
        {"status": status or ""},
        limit,
        offset,
    )


def alert(store: Store, alert_id: str) -> AlertRow | None:
    rows = store.query("SELECT * FROM {db}.alerts FINAL WHERE alert_id = %(a)s", {"a": alert_id})
    return cast(AlertRow, rows[0]) if rows else None


def acknowledge_alert(store: Store, alert_id: str, by: str, at_ms: int) -> AlertRow | None:
    """Record who acknowledged the alert and when (a newer row version); None when there is no
    such alert. Acknowledging leaves delivery alone."""
    row = alert(store, alert_id)
    if row is None:
        return None
    revised = store.revise("alerts", dict(row), acknowledged_by=by, acknowledged_ms=at_ms)
    return cast(AlertRow, revised)


def existing_alert_ids(store: Store, alert_ids: Sequence[str]) -> set[str]:
    """Which of these alerts are already in the outbox, in any status."""
    rows = store.query_in(
        "SELECT alert_id FROM {db}.alerts WHERE alert_id IN %(values)s", alert_ids
    )
    return {r["alert_id"] for r in rows}


class AlertHistoryRow(TypedDict):
    webhook_id: str
    kind: str
    account_id: str
    cluster_id: str
    payload_json: str


def alert_history(
    store: Store, account_ids: Sequence[str], cluster_ids: Sequence[str]
) -> list[AlertHistoryRow]:
    """Every alert (first or update, any status) about these accounts or campaigns: what grouping
    compares a new verdict with. No `FINAL`: a payload never changes between row versions, and
    the caller counts distinct alert ids."""
    columns = "SELECT DISTINCT alert_id, webhook_id, kind, account_id, cluster_id, payload_json"
    rows = store.query_in(
        columns + " FROM {db}.alerts WHERE kind = 'extraction' AND account_id IN %(values)s",
        account_ids,
    )
    rows += store.query_in(
        columns + " FROM {db}.alerts WHERE kind = 'campaign' AND cluster_id IN %(values)s",
        cluster_ids,
    )
    return cast(list[AlertHistoryRow], rows)


def due_alerts(store: Store, now_ms: int, limit: int) -> list[AlertRow]:
    """Pending alerts whose next attempt is due, earliest first."""
    rows = store.query(
        "SELECT * FROM {db}.alerts FINAL WHERE status = 'pending' "
        "AND next_attempt_ms <= %(now)s ORDER BY next_attempt_ms, alert_id LIMIT %(limit)s",
        {"now": now_ms, "limit": limit},
    )
    return cast(list[AlertRow], rows)


def alert_rows(store: Store, alert_ids: Sequence[str]) -> list[AlertRow]:
    """The current version of each of these alerts (for a re-check just before a send)."""
    rows = store.query_in("SELECT * FROM {db}.alerts FINAL WHERE alert_id IN %(values)s", alert_ids)
    return cast(list[AlertRow], rows)


def live_alert_claims(store: Store, alert_ids: Sequence[str], now_ms: int) -> list[AlertClaimRow]:
    """The claims on these alerts whose lease has not expired at `now_ms`, any attempt. Claim
    rows are never revised, so no `FINAL`: a repeated insert only repeats a token."""
    rows = store.query_in(
        "SELECT alert_id, attempt, token, dispatcher, claimed_ms, lease_until_ms"
        " FROM {db}.alert_claims WHERE alert_id IN %(values)s AND lease_until_ms > %(now)s",
        alert_ids,
        {"now": now_ms},
    )
    return cast(list[AlertClaimRow], rows)


def webhook_rows(store: Store) -> list[WebhookRow]:
    """Every webhook, removed ones included (`active` = 0), by id."""
    rows = store.query("SELECT * FROM {db}.webhooks FINAL ORDER BY webhook_id")
    return cast(list[WebhookRow], rows)
