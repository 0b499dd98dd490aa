"""Signed webhook alerts through a durable outbox (the `alerts` table).

A new `extraction` verdict for an account, or a campaign scored `extraction`, becomes one
`alerts` row per active webhook (`AlertSink`, a pipeline sink). The row id is derived from the
webhook and the subject, so an account or campaign alerts each webhook once, and it is the
`Idempotency-Key` the receiver sees on every attempt. The `Dispatcher` sends due rows; each
attempt is recorded in the row (a newer version), so a restarted service resumes where the last
one stopped. Retries back off exponentially with jitter for up to 24 hours, then the row is
`expired`.

Signature: `X-DistillGuard-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>." + body)>`
with `X-DistillGuard-Timestamp: <unix seconds>`; receivers reject stale timestamps (`verify`).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable
from typing import Literal

import httpx
import orjson

from core.batch import Batch
from core.verdicts import ClusterVerdict, Verdict
from storage import Store, queries
from streaming.sinks import BufferedSink

Format = Literal["json", "slack"]
RETRY_WINDOW_MS = 24 * 3_600_000
SIGNATURE_HEADER = "X-DistillGuard-Signature"
TIMESTAMP_HEADER = "X-DistillGuard-Timestamp"
log = logging.getLogger(__name__)


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(
    secret: bytes,
    body: bytes,
    signature: str,
    timestamp: str,
    tolerance_s: int = 300,
    now: float | None = None,
) -> bool:
    """What a receiver does: the signature matches and the timestamp is fresh (no replays)."""
    if not timestamp.isdigit():
        return False
    if abs((now if now is not None else time.time()) - int(timestamp)) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, int(timestamp), body), signature)


def add_webhook(store: Store, url: str, fmt: Format = "json") -> str:
    if not url.startswith(("https://", "http://")):
        raise ValueError("a webhook URL must be http(s)")
    webhook_id = uuid.uuid4().hex[:12]
    store.insert(
        "webhooks",
        [
            {
                "webhook_id": webhook_id,
                "url": url,
                "format": fmt,
                "created_time": int(time.time()),
                "active": 1,
            }
        ],
    )
    return webhook_id


def webhooks(store: Store, active_only: bool = True) -> list[dict]:
    rows = queries.webhook_rows(store)
    return [dict(r) for r in rows if int(r["active"]) or not active_only]


def remove_webhook(store: Store, webhook_id: str) -> bool:
    rows = [r for r in webhooks(store, active_only=False) if r["webhook_id"] == webhook_id]
    if not rows:
        return False
    store.revise("webhooks", rows[0], active=0)
    return True


def _alert_id(webhook_id: str, kind: str, subject: str) -> str:
    return hashlib.sha256(f"{webhook_id}\x1f{kind}\x1f{subject}".encode()).hexdigest()[:32]


def verdict_payload(verdict: Verdict) -> dict:
    return {
        "kind": "extraction",
        "account_id": verdict.account_id,
        "cluster_id": verdict.cluster_id,
        "score": round(verdict.score, 4),
        "label": verdict.label,
        "requests_seen": verdict.requests_seen,
        "detected_at": verdict.timestamp.isoformat(),
        "detector_version": verdict.detector_version,
        "reasons": [
            {
                "signal": r.signal,
                "contribution": r.contribution,
                "explanation": (r.evidence or {}).get("explanation", ""),
            }
            for r in verdict.reasons[:5]
        ],
    }


def campaign_payload(cluster: ClusterVerdict) -> dict:
    return {
        "kind": "campaign",
        "cluster_id": cluster.cluster_id,
        "score": round(cluster.score, 4),
        "label": cluster.label,
        "members": cluster.members[:100],
        "member_count": len(cluster.members),
    }


def enqueue(store: Store, alerts: list[tuple[str, str, str, dict]]) -> int:
    """Outbox rows for (kind, account_id, cluster_id, payload), one per active webhook; an
    alert that already exists (any status) is left alone, so it is never sent twice."""
    hooks = webhooks(store)
    rows = []
    now_ms = int(time.time() * 1000)
    for hook in hooks:
        for kind, account_id, cluster_id, payload in alerts:
            alert_id = _alert_id(hook["webhook_id"], kind, account_id or cluster_id)
            rows.append(
                {
                    "alert_id": alert_id,
                    "created_time": now_ms // 1000,
                    "kind": kind,
                    "account_id": account_id,
                    "cluster_id": cluster_id,
                    "payload_json": orjson.dumps({"alert_id": alert_id, **payload}).decode(),
                    "status": "pending",
                    "attempts": 0,
                    "next_attempt_ms": now_ms,
                    "webhook_id": hook["webhook_id"],
                    "version": 1,
                }
            )
    if not rows:
        return 0
    existing = queries.existing_alert_ids(store, [r["alert_id"] for r in rows])
    fresh = {r["alert_id"]: r for r in rows if r["alert_id"] not in existing}
    store.insert("alerts", list(fresh.values()))
    return len(fresh)


class AlertSink(BufferedSink):
    """Pipeline sink: extraction verdicts and extraction campaigns into the outbox. Listed after
    the store sink, so an alert never precedes the verdict it reports."""

    name = "alerts"

    def __init__(self, store: Store) -> None:
        super().__init__()
        self.store = store

    def _write(self, batch: Batch) -> None:
        alerts = [
            ("extraction", v.account_id, v.cluster_id or "", verdict_payload(v))
            for v in batch.verdicts
            if v.label == "extraction"
        ]
        alerts += [
            ("campaign", "", cluster.cluster_id, campaign_payload(cluster))
            for cluster in batch.clusters
            if cluster.label == "extraction"
        ]
        if alerts:
            enqueue(self.store, alerts)


def slack_text(payload: dict) -> str:
    """Slack mrkdwn: `&`, `<` and `>` are escaped so prompt-derived text cannot inject links."""

    def escape(text: object) -> str:
        return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

    if payload["kind"] == "campaign":
        return (
            f"*DistillGuard*: campaign `{escape(payload['cluster_id'])}` flagged "
            f"({payload['member_count']} accounts, score {payload['score']})"
        )
    reasons = ", ".join(escape(r["signal"]) for r in payload["reasons"][:3])
    return (
        f"*DistillGuard*: account `{escape(payload['account_id'])}` flagged as extraction "
        f"(score {payload['score']}, {payload['requests_seen']} requests; {reasons})"
    )


class Dispatcher:
    """Sends due outbox rows; safe to stop and restart at any point."""

    def __init__(
        self,
        store: Store,
        secret: bytes,
        client: httpx.Client | None = None,
        base_delay_s: float = 2.0,
        max_delay_s: float = 3600.0,
        clock: Callable[[], float] = time.time,
        seed: int | None = None,
    ) -> None:
        if not secret:
            raise ValueError("webhooks are always signed: set DG_WEBHOOK_SECRET")
        self.store = store
        self.secret = secret
        self.client = client or httpx.Client(timeout=10.0)
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.clock = clock
        self.random = random.Random(seed)

    def backoff_s(self, attempts: int) -> float:
        """Exponential backoff with equal jitter: half the step fixed, half random."""
        step = min(self.max_delay_s, self.base_delay_s * 2 ** max(0, attempts - 1))
        return step / 2 + self.random.uniform(0, step / 2)

    def due(self, limit: int = 100) -> list[dict]:
        return [dict(r) for r in queries.due_alerts(self.store, int(self.clock() * 1000), limit)]

    def _request(self, alert: dict, fmt: str) -> tuple[bytes, dict[str, str]]:
        payload = orjson.loads(alert["payload_json"])
        body = orjson.dumps({"text": slack_text(payload)} if fmt == "slack" else payload)
        timestamp = int(self.clock())
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": alert["alert_id"],
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(self.secret, timestamp, body),
        }
        return body, headers

    def attempt(self, alert: dict, hook: dict | None) -> bool:
        """One delivery attempt, recorded in the outbox; True when delivered."""
        now_ms = int(self.clock() * 1000)
        attempts = int(alert["attempts"]) + 1
        error = ""
        if hook is None:
            error = "webhook removed"
        else:
            body, headers = self._request(alert, hook["format"])
            try:
                response = self.client.post(hook["url"], content=body, headers=headers)
                if 200 <= response.status_code < 300:
                    self._record(alert, "delivered", attempts, now_ms, "")
                    return True
                error = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
        next_ms = now_ms + int(self.backoff_s(attempts) * 1000)
        created_ms = int(alert["created_time"]) * 1000
        expired = hook is None or next_ms - created_ms > RETRY_WINDOW_MS
        self._record(alert, "expired" if expired else "pending", attempts, next_ms, error)
        return False

    def _record(self, alert: dict, status: str, attempts: int, next_ms: int, error: str) -> None:
        self.store.revise(
            "alerts",
            alert,
            status=status,
            attempts=attempts,
            next_attempt_ms=next_ms,
            last_error=error[:500],
        )

    def run_once(self) -> int:
        """Attempt every due alert once; returns how many were delivered."""
        hooks = {h["webhook_id"]: h for h in webhooks(self.store)}
        return sum(self.attempt(alert, hooks.get(alert["webhook_id"])) for alert in self.due())

    def run(self, stop: threading.Event, interval_s: float = 1.0) -> None:
        while not stop.is_set():
            try:
                self.run_once()
            except Exception:  # noqa: BLE001 - a store hiccup must not kill the dispatcher
                log.exception("webhook dispatch failed; retrying")
            stop.wait(interval_s)
