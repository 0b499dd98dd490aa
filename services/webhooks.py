"""Signed webhook alerts through a durable outbox (the `alerts` table).

A new `extraction` verdict for an account, or a campaign scored `extraction` (from `suspicious`
on with `alert_min_label`), becomes one `alerts` row per active webhook (`AlertSink`, a pipeline
sink). The row id is derived from the webhook and the subject (and, for an update, the state it
reports), so an account or campaign alerts each webhook once per state, and it is the
`Idempotency-Key` the receiver sees on every attempt. The `Dispatcher` sends due rows; each
attempt is recorded in the row (a newer version), so a restarted service resumes where the last
one stopped. Retries back off exponentially with jitter for up to 24 hours, then the row is
`expired`.

Sent once by any number of dispatchers (API replicas, `alerts dispatch` processes): ClickHouse
has no transactions or compare-and-set, so a dispatcher claims an alert's current attempt by
inserting a row into `alert_claims` with a lease. It waits `settle_s` for concurrent claims to
land, reads the unexpired claims back, and sends only when its own is the earliest (ties: the
smaller token); every claimant reads the same rows, so they agree on one winner. A claim is used
only while enough of its lease is left to send and record the attempt. A dispatcher killed
mid-send leaves its claim to expire, then another one retries: the receiver may get that alert
twice and de-duplicates on `Idempotency-Key`. Assumes the dispatchers' clocks agree to within
`settle_s / 2` (NTP) and that a read sees every insert completed before it (one server, chDB).

Formats (`services.alert_formats`): the JSON payload itself, a Slack Block Kit message, or a
PagerDuty Events v2 event, whose routing key is the webhook's own secret, stored sealed
(AES-GCM under a key derived from `webhook_secret`), never returned by the API or logged.

Grouping: one campaign raises one alert. A member account's verdict raises none once its campaign
has alerted (or alerts in the same batch); when an alerted campaign grows, or an alerted account
or campaign escalates to a graver label, the same alert is sent again as an update: a new outbox
row (its own id and `Idempotency-Key`, derived from the state it reports, so a replayed batch
adds nothing) with the same `group_key` (also `X-DistillGuard-Alert-Group`, and PagerDuty's
`dedup_key`). Delivery is unchanged: every row, first alert or update, is sent once.

Signature: `X-DistillGuard-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>." + body)>`
with `X-DistillGuard-Timestamp: <unix seconds>`; receivers reject stale timestamps (`verify`).

Targets (SSRF): a URL is checked when it is registered and again before every attempt, since DNS
can change in between. It must be http(s), without credentials, whitespace or control
characters, and every address its host resolves to must be public, unless it lies in
`webhook_allow_networks`. A send connects to the address it checked (no second lookup), with the
host name as `Host` and TLS server name. Analysts see a generic error per alert ("HTTP 500 from
receiver", "connection failed", "refused: address not allowed"), never what a target answered.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import logging
import os
import random
import re
import socket
import threading
import time
import unicodedata
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import httpx
import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from core.batch import Batch
from core.settings import Settings
from core.verdicts import LABEL_RANK, ClusterVerdict, Verdict
from services.alert_formats import dashboard_link, group_key, pagerduty_event, slack_message
from storage import Store, queries
from streaming.sinks import BufferedSink

Format = Literal["json", "slack", "pagerduty"]
RETRY_WINDOW_MS = 24 * 3_600_000
SIGNATURE_HEADER = "X-DistillGuard-Signature"
TIMESTAMP_HEADER = "X-DistillGuard-Timestamp"
GROUP_HEADER = "X-DistillGuard-Alert-Group"
ROUTING_KEY_PATTERN = "^[A-Za-z0-9]{32}$"  # a PagerDuty Events v2 integration key
MAX_URL_CHARS = 2000
# How long a claim holds an alert, and how long a claimant waits for concurrent claims before
# reading them back: the settings' defaults (DG_ALERT_LEASE_S, DG_ALERT_SETTLE_S).
LEASE_S = Settings.model_fields["alert_lease_s"].default
SETTLE_S = Settings.model_fields["alert_settle_s"].default
SEND_TIMEOUT_S = 10.0  # per phase of one send (connect, then the response's headers)
RECORD_S = 2.0  # allowance for recording an attempt after its send
CLAIM_BATCH = 10  # alerts claimed at once; a send starts only while a full send fits the lease
log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


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


class WebhookURLError(ValueError):
    """A webhook URL refused, when registered or before a send. The message tells the admin why;
    `reason` is the short, generic text recorded on alerts, which analysts see. `permanent`: the
    URL itself is bad, so retrying cannot help (an address refusal may pass once DNS changes)."""

    def __init__(self, message: str, reason: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.reason = reason
        self.permanent = permanent


def _invalid(message: str) -> WebhookURLError:
    return WebhookURLError(message, "refused: invalid URL", permanent=True)


def parse_webhook_url(url: str) -> httpx.URL:
    """The URL's form: http(s), a host, no credentials, no whitespace or control characters
    (a CR/LF would otherwise stop httpx deep inside a send)."""
    if len(url) > MAX_URL_CHARS:
        raise _invalid(f"a webhook URL has at most {MAX_URL_CHARS} characters")
    if any(char.isspace() or unicodedata.category(char).startswith("C") for char in url):
        raise _invalid("a webhook URL may not contain whitespace or control characters")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        raise _invalid("not a valid URL") from None
    if parsed.scheme not in ("http", "https"):
        raise _invalid("a webhook URL must be http(s)")
    if parsed.userinfo:
        raise _invalid("a webhook URL may not carry credentials (user:password@)")
    if not parsed.host:
        raise _invalid("a webhook URL needs a host")
    return parsed


def allowed_networks(cidrs: Sequence[str]) -> tuple[IPNetwork, ...]:
    """`webhook_allow_networks` parsed; a bad entry is an error, not silently ignored."""
    try:
        return tuple(ipaddress.ip_network(cidr.strip(), strict=False) for cidr in cidrs)
    except ValueError as error:
        raise ValueError(f"webhook_allow_networks: {error}") from None


def _unmapped(address: IPAddress) -> IPAddress:
    """An IPv4-mapped IPv6 address (::ffff:a.b.c.d) as the IPv4 address it reaches."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def refusal(address: IPAddress, allowed: Sequence[IPNetwork] = ()) -> str | None:
    """Why webhooks may not go to `address` (its kind: "loopback", "private", ...), or None when
    it is public or allowlisted. IPv4 carried inside IPv6 (mapped, 6to4, Teredo) is judged as
    the IPv4 address too."""
    address = _unmapped(address)
    if any(address.version == net.version and address in net for net in allowed):
        return None
    inner: list[IPAddress] = [address]
    if isinstance(address, ipaddress.IPv6Address):
        inner += [v4 for v4 in (address.sixtofour, *(address.teredo or ())) if v4 is not None]
    for candidate in inner:
        for kind in ("loopback", "unspecified", "link_local", "multicast", "reserved", "private"):
            if getattr(candidate, f"is_{kind}"):
                return kind.replace("_", "-")
        if not candidate.is_global:
            return "non-public"  # 100.64.0.0/10 (carrier-grade NAT) and other special ranges
    return None


@dataclass(frozen=True)
class Target:
    """A webhook URL checked down to the addresses a send may connect to."""

    url: httpx.URL
    addresses: tuple[IPAddress, ...]

    def pinned(self) -> Iterator[tuple[httpx.URL, dict[str, str], dict[str, Any]]]:
        """Per checked address: the URL aimed at it, the `Host` header, and the request
        extensions that keep TLS verifying the host name, so no second lookup can redirect it."""
        host = self.url.host
        tls_name = self.url.scheme == "https" and not _is_ip(host)
        extensions: dict[str, Any] = {"sni_hostname": host} if tls_name else {}
        for address in self.addresses:
            url = self.url.copy_with(host=str(address))
            yield url, {"Host": self.url.netloc.decode("ascii")}, extensions


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def check_target(url: str, allow_networks: Sequence[str] = ()) -> Target:
    """The URL's form, then every address its host resolves to; raises `WebhookURLError`."""
    parsed = parse_webhook_url(url)
    allowed = allowed_networks(allow_networks)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(parsed.host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise WebhookURLError(
            f"{parsed.host} does not resolve", "refused: host did not resolve"
        ) from None
    addresses: list[IPAddress] = []
    for info in infos:
        address = _unmapped(ipaddress.ip_address(str(info[4][0]).split("%")[0]))
        kind = refusal(address, allowed)
        if kind is not None:
            raise WebhookURLError(
                f"{parsed.host} resolves to an address webhooks may not reach ({kind}); they "
                "only go to public addresses unless DG_WEBHOOK_ALLOW_NETWORKS lists the network",
                "refused: address not allowed",
            )
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise WebhookURLError(f"{parsed.host} does not resolve", "refused: host did not resolve")
    return Target(parsed, tuple(addresses))


class RoutingKeyError(ValueError):
    """A PagerDuty routing key missing, malformed, or unreadable (sealed under another secret)."""


def _sealing_key(secret: bytes) -> bytes:
    return hmac.new(secret, b"distillguard/webhook-routing-key", hashlib.sha256).digest()


def seal(secret: bytes, webhook_id: str, routing_key: str) -> str:
    """The routing key encrypted for the store (AES-GCM, bound to its webhook's id)."""
    nonce = os.urandom(12)
    sealed = AESGCM(_sealing_key(secret)).encrypt(nonce, routing_key.encode(), webhook_id.encode())
    return base64.b64encode(nonce + sealed).decode()


def unseal(secret: bytes, webhook_id: str, sealed: str) -> str:
    """The routing key back; `RoutingKeyError` when it was sealed under another secret."""
    try:
        raw = base64.b64decode(sealed, validate=True)
        plain = AESGCM(_sealing_key(secret)).decrypt(raw[:12], raw[12:], webhook_id.encode())
    except (InvalidTag, ValueError):
        raise RoutingKeyError("routing key unreadable (DG_WEBHOOK_SECRET changed?)") from None
    return plain.decode()


def add_webhook(
    store: Store,
    url: str,
    fmt: Format = "json",
    allow_networks: Sequence[str] = (),
    routing_key: str | None = None,
    secret: bytes | None = None,
) -> str:
    """Register a webhook after `check_target` (raises `WebhookURLError`, a ValueError). A
    `pagerduty` webhook needs its routing key and the webhook secret that seals it
    (`RoutingKeyError`, a ValueError, without them); other formats take no routing key."""
    check_target(url, allow_networks)
    if (fmt == "pagerduty") != (routing_key is not None):
        raise RoutingKeyError("a routing key goes with the pagerduty format, and only with it")
    webhook_id = uuid.uuid4().hex[:12]
    sealed = ""
    if routing_key is not None:
        if not re.fullmatch(ROUTING_KEY_PATTERN, routing_key):
            raise RoutingKeyError("a PagerDuty routing key is 32 letters and digits")
        if not secret:
            raise RoutingKeyError("set DG_WEBHOOK_SECRET: it seals the routing key")
        sealed = seal(secret, webhook_id, routing_key)
    store.insert(
        "webhooks",
        [
            {
                "webhook_id": webhook_id,
                "url": url,
                "format": fmt,
                "routing_key_sealed": sealed,
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
    """The campaign, with what linked it: the evidence kinds by their share, shared prefixes."""
    evidence = cluster.evidence
    shares = sorted(evidence.get("evidence_share", {}).items(), key=lambda kv: (-kv[1], kv[0]))
    return {
        "kind": "campaign",
        "cluster_id": cluster.cluster_id,
        "score": round(cluster.score, 4),
        "label": cluster.label,
        "members": cluster.members[:100],
        "member_count": len(cluster.members),
        "requests": evidence.get("requests"),
        "updated_at": cluster.updated.isoformat(),
        "reasons": [{"signal": s, "share": round(v, 4)} for s, v in shares[:5]],
        "shared_prefixes": [p[:200] for p in list(evidence.get("shared_prefixes", {}))[:5]],
    }


@dataclass(frozen=True)
class Candidate:
    """An alert the pipeline would raise: an account's verdict (`kind` "extraction") or a
    campaign, with its payload."""

    kind: str
    account_id: str
    cluster_id: str
    payload: dict

    @property
    def subject(self) -> str:
        return self.cluster_id if self.kind == "campaign" else self.account_id

    @property
    def state(self) -> tuple[int, int]:
        """How grave it is: the label's rank, then the campaign's size."""
        return LABEL_RANK.get(self.payload["label"], 0), int(self.payload.get("member_count", 0))


def _alerted(store: Store, candidates: Iterable[Candidate]) -> dict[tuple[str, str, str], dict]:
    """Per (webhook, kind, subject) already in the outbox, any status: the gravest state alerted
    (`label`, `member_count`, as `rank`) and how many alerts (first and updates) it had."""
    accounts = {c.account_id for c in candidates if c.kind != "campaign"}
    clusters = {c.cluster_id for c in candidates if c.cluster_id}
    seen: dict[tuple[str, str, str], dict] = {}
    for row in queries.alert_history(store, sorted(accounts), sorted(clusters)):
        payload = orjson.loads(row["payload_json"])
        subject = row["cluster_id"] if row["kind"] == "campaign" else row["account_id"]
        key = (row["webhook_id"], row["kind"], subject)
        rank = (LABEL_RANK.get(payload.get("label", ""), 0), int(payload.get("member_count", 0)))
        entry = seen.setdefault(key, {"rank": rank, "payload": payload, "alerts": 0})
        entry["alerts"] += 1
        if rank > entry["rank"]:
            entry.update(rank=rank, payload=payload)
    return seen


def enqueue(store: Store, candidates: Sequence[Candidate]) -> int:
    """Outbox rows for these alerts, one per active webhook, grouped (see the module's
    docstring): per account or campaign, the first alert, or an update when it grew or
    escalated past every alert it already has; a member of an alerted campaign raises none, nor
    does an account or campaign an analyst allowlisted (`_not_allowlisted`). An
    alert that already exists (any status) is left alone, so it is never sent twice."""
    hooks = webhooks(store)
    if not hooks or not candidates:
        return 0
    candidates = _not_allowlisted(store, candidates)
    gravest: dict[tuple[str, str], Candidate] = {}
    for candidate in candidates:  # a batch may hold several states of one subject
        key = (candidate.kind, candidate.subject)
        if key not in gravest or candidate.state >= gravest[key].state:
            gravest[key] = candidate
    alerted = _alerted(store, gravest.values())
    campaigns = {c.cluster_id for c in gravest.values() if c.kind == "campaign"}
    rows = []
    for hook in hooks:
        hook_id = hook["webhook_id"]
        for c in gravest.values():
            if (
                c.kind != "campaign"
                and c.cluster_id
                and (c.cluster_id in campaigns or (hook_id, "campaign", c.cluster_id) in alerted)
            ):
                continue  # the campaign's alert speaks for its members
            payload = {"group_key": group_key(c.kind, c.subject), **c.payload}
            before = alerted.get((hook_id, c.kind, c.subject))
            if before is None:
                alert_id = _alert_id(hook_id, c.kind, c.subject)
            elif c.state[0] > before["rank"][0] or c.state[1] > before["rank"][1]:
                revision = "{}:{}".format(*c.state)
                alert_id = _alert_id(hook_id, c.kind, f"{c.subject}\x1f{revision}")
                previous = {k: before["payload"].get(k) for k in ("label", "member_count", "score")}
                payload |= {"update": True, "revision": before["alerts"], "previous": previous}
            else:
                continue
            rows.append(_outbox_row(alert_id, c.kind, c.account_id, c.cluster_id, hook_id, payload))
    return _insert_fresh(store, rows)


def _not_allowlisted(store: Store, candidates: Sequence[Candidate]) -> list[Candidate]:
    """The candidates an analyst's allowlist in force now does not silence
    (`services.dispositions`): an allowlisted account raises no alert, an allowlisted campaign
    none for itself or its members' verdicts, and a campaign whose every member is allowlisted
    none either. An allowlisted member of a campaign that still alerts stays in its member
    list, marked under `allowlisted_members`."""
    if not candidates:
        return []
    now_ms = int(time.time() * 1000)
    members = {m for c in candidates for m in c.payload.get("members", ())}
    accounts = queries.allowlisted(
        store,
        "account",
        sorted(members | {c.account_id for c in candidates if c.account_id}),
        now_ms,
    )
    clusters = queries.allowlisted(
        store, "cluster", sorted({c.cluster_id for c in candidates if c.cluster_id}), now_ms
    )
    kept = []
    for c in candidates:
        if c.cluster_id in clusters or (c.kind != "campaign" and c.account_id in accounts):
            continue
        if c.kind == "campaign":
            quiet = sorted(accounts & set(c.payload.get("members", ())))
            if quiet and len(quiet) == len(c.payload["members"]):
                continue  # only allowlisted accounts (of those listed) link it
            if quiet:
                c = replace(c, payload={**c.payload, "allowlisted_members": quiet})
        kept.append(c)
    return kept


def _outbox_row(
    alert_id: str, kind: str, account_id: str, cluster_id: str, webhook_id: str, payload: dict
) -> dict:
    """A pending outbox row, due now."""
    now_ms = int(time.time() * 1000)
    return {
        "alert_id": alert_id,
        "created_time": now_ms // 1000,
        "kind": kind,
        "account_id": account_id,
        "cluster_id": cluster_id,
        "payload_json": orjson.dumps({"alert_id": alert_id, **payload}).decode(),
        "status": "pending",
        "attempts": 0,
        "next_attempt_ms": now_ms,
        "webhook_id": webhook_id,
        "version": 1,
    }


def _insert_fresh(store: Store, rows: list[dict]) -> int:
    """Insert the rows whose alert is not in the outbox yet (any status): never sent twice."""
    if not rows:
        return 0
    existing = queries.existing_alert_ids(store, [r["alert_id"] for r in rows])
    fresh = {r["alert_id"]: r for r in rows if r["alert_id"] not in existing}
    store.insert("alerts", list(fresh.values()))
    return len(fresh)


def enqueue_acknowledgement(store: Store, alert: Mapping[str, Any]) -> bool:
    """An analyst acknowledged `alert`: when it went to PagerDuty, queue an `acknowledge` event
    for its dedup key (once per alert group and webhook), so the incident stops paging."""
    hook = next((h for h in webhooks(store) if h["webhook_id"] == alert["webhook_id"]), None)
    if hook is None or hook["format"] != "pagerduty" or alert["kind"] == "acknowledge":
        return False
    key = alert_payload(alert)["group_key"]
    payload = {"kind": "acknowledge", "group_key": key, "event_action": "acknowledge"}
    alert_id = _alert_id(hook["webhook_id"], "acknowledge", key)
    row = _outbox_row(
        alert_id,
        "acknowledge",
        alert["account_id"],
        alert["cluster_id"],
        hook["webhook_id"],
        payload,
    )
    return _insert_fresh(store, [row]) == 1


class AlertSink(BufferedSink):
    """Pipeline sink: verdicts and campaigns at `min_label` or graver into the outbox, grouped by
    campaign. Listed after the store sink, so an alert never precedes the verdict it reports."""

    name = "alerts"

    def __init__(self, store: Store, min_label: str = "extraction") -> None:
        super().__init__()
        self.store = store
        self.min_rank = LABEL_RANK[min_label]

    def _write(self, batch: Batch) -> None:
        clusters = [c for c in batch.clusters if LABEL_RANK.get(c.label, -1) >= self.min_rank]
        members = {m for c in clusters for m in c.members}
        alerts = [Candidate("campaign", "", c.cluster_id, campaign_payload(c)) for c in clusters]
        alerts += [
            Candidate("extraction", v.account_id, v.cluster_id or "", verdict_payload(v))
            for v in batch.verdicts
            if LABEL_RANK[v.label] >= self.min_rank and v.account_id not in members
        ]
        if alerts:
            enqueue(self.store, alerts)


def alert_payload(alert: Mapping[str, Any]) -> dict:
    """An outbox row's payload; one queued before grouping gets its group key here."""
    payload = orjson.loads(alert["payload_json"])
    subject = alert["cluster_id"] if alert["kind"] == "campaign" else alert["account_id"]
    payload.setdefault("group_key", group_key(alert["kind"], subject))
    return payload


@dataclass(frozen=True)
class Claim:
    """This dispatcher's claim on one attempt of an alert (its `attempts` when claimed)."""

    alert: dict
    token: str
    claimed_ms: int
    lease_until_ms: int

    @property
    def key(self) -> tuple[str, int]:
        return self.alert["alert_id"], int(self.alert["attempts"])


def claim_winners(claims: Iterable[Mapping[str, Any]]) -> dict[tuple[str, int], str]:
    """The winning token of each (alert, attempt): the earliest claim, ties by the smaller
    token. A pure function of the rows, so every claimant that reads them picks the same one."""
    best: dict[tuple[str, int], tuple[int, str]] = {}
    for claim in claims:
        key = (claim["alert_id"], int(claim["attempt"]))
        candidate = (int(claim["claimed_ms"]), claim["token"])
        if key not in best or candidate < best[key]:
            best[key] = candidate
    return {key: token for key, (_, token) in best.items()}


class Dispatcher:
    """Sends due outbox rows; safe to stop and restart at any point, and to run in any number of
    processes on one store (each alert is claimed first, see the module's docstring). One alert's
    failure, whatever it is, is recorded on that alert and never stops the others."""

    def __init__(
        self,
        store: Store,
        secret: bytes,
        client: httpx.Client | None = None,
        base_delay_s: float = 2.0,
        max_delay_s: float = 3600.0,
        clock: Callable[[], float] = time.time,
        seed: int | None = None,
        allow_networks: Sequence[str] = (),
        lease_s: float = LEASE_S,
        settle_s: float = SETTLE_S,
        send_timeout_s: float = SEND_TIMEOUT_S,
        name: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
        dashboard_url: str | None = None,
    ) -> None:
        if not secret:
            raise ValueError("webhooks are always signed: set DG_WEBHOOK_SECRET")
        # A send may take a connect and a read timeout (the small body's write does not wait on
        # the receiver); with the recording after it, it must end inside the lease, or another
        # dispatcher could retry the alert meanwhile. (A host with several addresses may try
        # each; the receiver's de-duplication covers that rare overrun.)
        self.send_budget_ms = int((2 * send_timeout_s + RECORD_S) * 1000)
        if lease_s * 1000 < settle_s * 1000 + self.send_budget_ms:
            raise ValueError(
                f"lease_s={lease_s} is too short for settle_s={settle_s} and a send of up to "
                f"2 x {send_timeout_s} s plus {RECORD_S} s to record it"
            )
        allowed_networks(allow_networks)  # a bad setting fails at start, not on every send
        self.store = store
        self.secret = secret
        self.allow_networks = tuple(allow_networks)
        # No proxy from the environment (the checked address is the one connected to), no
        # redirects (they could lead anywhere), no kept connections (each send is TLS-checked
        # against its own host name).
        self.client = client or httpx.Client(
            timeout=send_timeout_s,
            trust_env=False,
            follow_redirects=False,
            limits=httpx.Limits(max_keepalive_connections=0),
        )
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.clock = clock
        self.random = random.Random(seed)
        self.lease_ms = int(lease_s * 1000)
        self.settle_s = settle_s
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.sleep = sleep
        self.dashboard_url = dashboard_url

    def backoff_s(self, attempts: int) -> float:
        """Exponential backoff with equal jitter: half the step fixed, half random."""
        step = min(self.max_delay_s, self.base_delay_s * 2 ** max(0, attempts - 1))
        return step / 2 + self.random.uniform(0, step / 2)

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def due(self, limit: int = 100) -> list[dict]:
        return [dict(r) for r in queries.due_alerts(self.store, self._now_ms(), limit)]

    def claim(self, alerts: list[dict]) -> list[Claim]:
        """The alerts this dispatcher won and may send now, as fresh rows: it claims each one no
        live claim holds, waits `settle_s` so near-simultaneous claims all land, then keeps the
        ones whose earliest claim is its own."""
        staked = self._stake(self._unclaimed(alerts))
        if not staked:
            return []
        self.sleep(self.settle_s)
        return self._winners(staked)

    def _unclaimed(self, alerts: list[dict]) -> list[dict]:
        """The alerts whose current attempt no unexpired claim holds (only an optimisation: the
        winner rule alone keeps sends single)."""
        if not alerts:
            return []
        live = queries.live_alert_claims(
            self.store, [a["alert_id"] for a in alerts], self._now_ms()
        )
        held = {(c["alert_id"], int(c["attempt"])) for c in live}
        return [a for a in alerts if (a["alert_id"], int(a["attempts"])) not in held]

    def _stake(self, alerts: list[dict]) -> list[Claim]:
        """Insert a claim per alert. A claim that took over half the settle time to land is not
        used: a rival may have decided without it, and its stamp no longer orders it after theirs
        (it blocks the attempt until its lease expires, then the alert is retried)."""
        if not alerts:
            return []
        now_ms = self._now_ms()
        claims = [
            Claim(alert, f"{self.name}/{uuid.uuid4().hex}", now_ms, now_ms + self.lease_ms)
            for alert in alerts
        ]
        rows = [
            {
                "alert_id": c.alert["alert_id"],
                "attempt": c.key[1],
                "token": c.token,
                "dispatcher": self.name,
                "claimed_time": now_ms // 1000,
                "claimed_ms": now_ms,
                "lease_until_ms": c.lease_until_ms,
            }
            for c in claims
        ]
        started = time.monotonic()
        self.store.insert("alert_claims", rows)
        if time.monotonic() - started > self.settle_s / 2:
            log.warning("claiming %d alerts was too slow to rely on; they wait", len(rows))
            return []
        return claims

    def _winners(self, claims: list[Claim]) -> list[Claim]:
        """The claims that won, each with the alert's current row; one whose alert has moved on
        (delivered, or attempted again since it was read) is dropped."""
        live = queries.live_alert_claims(
            self.store, [c.alert["alert_id"] for c in claims], self._now_ms()
        )
        winners = claim_winners(live)
        won = [c for c in claims if winners.get(c.key) == c.token]
        if not won:
            return []
        fresh: dict[str, dict] = {
            r["alert_id"]: dict(r)
            for r in queries.alert_rows(self.store, [c.alert["alert_id"] for c in won])
        }
        current = []
        for claim in won:
            row = fresh.get(claim.alert["alert_id"])
            if row and row["status"] == "pending" and int(row["attempts"]) == claim.key[1]:
                current.append(replace(claim, alert=row))
        return current

    def render(self, payload: dict, hook: dict) -> dict:
        """The body in the webhook's format (`RoutingKeyError` when a PagerDuty webhook's routing
        key cannot be unsealed)."""
        if hook["format"] == "slack":
            return slack_message(payload, self.dashboard_url)
        if hook["format"] == "pagerduty":
            key = unseal(self.secret, hook["webhook_id"], hook.get("routing_key_sealed") or "")
            action = payload.get("event_action", "trigger")
            return pagerduty_event(payload, key, self.dashboard_url, action)
        link = dashboard_link(self.dashboard_url, payload)
        return payload | {"dashboard_link": link} if link else payload

    def _request(self, alert: dict, hook: dict) -> tuple[bytes, dict[str, str]]:
        payload = alert_payload(alert)
        body = orjson.dumps(self.render(payload, hook))
        timestamp = int(self.clock())
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": alert["alert_id"],
            GROUP_HEADER: payload["group_key"],
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(self.secret, timestamp, body),
        }
        return body, headers

    def _post(self, target: Target, body: bytes, headers: dict[str, str]) -> int:
        """The receiver's status code, from the first checked address that accepts a
        connection; the response body is never read (nothing of it reaches analysts)."""
        refused: httpx.ConnectError | None = None
        for url, host, extensions in target.pinned():
            request = self.client.build_request(
                "POST", url, content=body, headers={**headers, **host}, extensions=extensions
            )
            try:
                response = self.client.send(request, stream=True)
            except httpx.ConnectError as error:
                refused = error
                continue
            response.close()
            return response.status_code
        assert refused is not None  # a Target has at least one address
        raise refused

    def _deliver(self, alert: dict, hook: dict) -> tuple[str, bool]:
        """One send: ("", _) when delivered, else the generic error analysts see and whether
        retrying is pointless."""
        try:
            target = check_target(hook["url"], self.allow_networks)
            status = self._post(target, *self._request(alert, hook))
        except WebhookURLError as refused:
            return refused.reason, refused.permanent
        except RoutingKeyError:
            return "routing key unreadable", True
        except httpx.TimeoutException:
            return "timed out", False
        except httpx.ProtocolError:  # its message quotes what the receiver sent
            return "bad response from receiver", False
        except httpx.TransportError:
            return "connection failed", False
        except Exception:  # noqa: BLE001 - one alert's failure must not stop the others
            log.exception("webhook alert %s could not be sent", alert["alert_id"])
            return "internal error", False
        return ("", False) if 200 <= status < 300 else (f"HTTP {status} from receiver", False)

    def attempt(self, alert: dict, hook: dict | None) -> bool:
        """One delivery attempt, recorded in the outbox; True when delivered."""
        now_ms = int(self.clock() * 1000)
        attempts = int(alert["attempts"]) + 1
        error, permanent = ("webhook removed", True) if hook is None else self._deliver(alert, hook)
        if not error:
            self._record(alert, "delivered", attempts, now_ms, "")
            return True
        next_ms = now_ms + int(self.backoff_s(attempts) * 1000)
        created_ms = int(alert["created_time"]) * 1000
        expired = permanent or next_ms - created_ms > RETRY_WINDOW_MS
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
        """Attempt every due alert this dispatcher wins a claim on, once; returns how many were
        delivered. Alerts another dispatcher holds are left to it."""
        hooks = {h["webhook_id"]: h for h in webhooks(self.store)}
        delivered = 0
        due = self.due()
        for start in range(0, len(due), CLAIM_BATCH):
            for claim in self.claim(due[start : start + CLAIM_BATCH]):
                alert = claim.alert
                if self._now_ms() + self.send_budget_ms > claim.lease_until_ms:
                    continue  # too little lease left to send and record: it lapses, then retried
                try:
                    delivered += self.attempt(alert, hooks.get(alert["webhook_id"]))
                except Exception:  # noqa: BLE001 - recording one alert failed; the others go on
                    log.exception(
                        "webhook alert %s: the attempt was not recorded", alert["alert_id"]
                    )
        return delivered

    def run(self, stop: threading.Event, interval_s: float = 1.0) -> None:
        while not stop.is_set():
            try:
                self.run_once()
            except Exception:  # noqa: BLE001 - a store hiccup must not kill the dispatcher
                log.exception("webhook dispatch failed; retrying")
            stop.wait(interval_s)
