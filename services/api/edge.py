"""The edge every HTTP request passes before any route runs: a pure ASGI middleware, so that
nothing is read, parsed or looked up for a caller who has not shown a valid token.

In order: the client address (the TCP peer; an `X-Forwarded-For` hop only behind a configured
trusted proxy), the failed-authentication limit (429), the bearer token (401, before one byte of
the body is received), the declared body size (413), then the app, whose body is counted as it
streams in (413 past the limit; nothing buffers it whole). On the way out every response gets
the security headers and a metric, and the audit notes the route took are written with the
response's real status before the response leaves. A failure nobody expected becomes the JSON
error shape with a generic message. Health and the static dashboard need no token.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from typing import NamedTuple

from anyio import to_thread
from prometheus_client import Counter
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.api.errors import UNEXPECTED, error_response
from services.auth import Access, Principal, audit
from storage import Store

Network = IPv4Network | IPv6Network
EXCHANGE = "distillguard.exchange"  # the scope key of the request's `Exchange`
PUBLIC_PATHS = frozenset({"/", "/healthz", "/dashboard"})
PUBLIC_PREFIX = "/dashboard/"  # static files only: every data call needs the token
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]
CLOSE = (b"connection", b"close")


# --- who is calling, from where ---------------------------------------------------------------
def trusted_networks(entries: Sequence[str]) -> tuple[Network, ...]:
    """`settings.trusted_proxies` as networks (a bare address is a /32 or /128)."""
    return tuple(ip_network(entry.strip(), strict=False) for entry in entries)


def _address(text: str) -> IPv4Address | IPv6Address | None:
    try:
        parsed = ip_address(text.strip())
    except ValueError:
        return None
    mapped = parsed.ipv4_mapped if isinstance(parsed, IPv6Address) else None
    return mapped or parsed  # a dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d


def _trusted(address: IPv4Address | IPv6Address | None, trusted: Sequence[Network]) -> bool:
    return address is not None and any(address in network for network in trusted)


def client_address(scope: Scope, trusted: Sequence[Network]) -> str:
    """The caller's address, for the audit log and the failed-authentication limit alike: the
    TCP peer, unless the peer is a trusted proxy. Then it is the nearest `X-Forwarded-For` hop
    that is not a trusted proxy: each proxy appends the address it saw, so everything left of
    that hop is the client's own text and may be forged."""
    client = scope.get("client")
    peer = client[0] if client else ""
    current = _address(peer)
    if not _trusted(current, trusted):
        return str(current) if current else peer
    forwarded = Headers(scope=scope).getlist("x-forwarded-for")
    for hop in reversed([hop for value in forwarded for hop in value.split(",")]):
        parsed = _address(hop)
        if parsed is None:
            break  # garbage: keep the last address a trusted proxy vouched for
        current = parsed
        if not _trusted(current, trusted):
            break
    return str(current)


# --- failed authentication --------------------------------------------------------------------
@dataclass
class _Window:
    start: float
    failures: int = 0
    throttle_audited: bool = False


class FailureLimiter:
    """Failed authentications per client address in fixed windows (a minute), in this process.
    Once an address has `per_minute` failures it is answered 429 until its window ends, and its
    tokens are not even looked up.

    Memory is bounded: at most `max_addresses` windows; expired ones are dropped first, then the
    oldest (windows are kept in the order they opened, so both are at the front). So is the
    audit log: each failure under the limit is audited, then one row per address and window
    says it is throttled, and across all addresses at most `audits_per_window` failure rows are
    written per window (past that, failures show only in the request metric)."""

    def __init__(
        self,
        per_minute: int,
        *,
        window_s: float = 60.0,
        max_addresses: int = 65_536,
        audits_per_window: int = 1_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_minute = per_minute
        self.window_s = window_s
        self.max_addresses = max_addresses
        self.audits_per_window = audits_per_window
        self.clock = clock
        self._windows: dict[str, _Window] = {}
        self._audits = _Window(start=-math.inf)  # the audit budget, shared by all addresses

    def retry_after(self, address: str) -> int | None:
        """Seconds until `address` may try again; None while it is under the limit."""
        window = self._current(address, self.clock())
        if window is None or window.failures < self.per_minute:
            return None
        return max(1, math.ceil(window.start + self.window_s - self.clock()))

    def failed(self, address: str) -> bool:
        """Count one failed authentication; whether it may be audited."""
        now = self.clock()
        window = self._current(address, now) or self._open(address, now)
        window.failures += 1
        return self._audit_budget(now)

    def throttled(self, address: str) -> bool:
        """A refused (429) request; whether to audit it: the first in the address's window."""
        now = self.clock()
        window = self._current(address, now)
        if window is None or window.throttle_audited:
            return False
        window.throttle_audited = True
        return self._audit_budget(now)

    def __len__(self) -> int:
        return len(self._windows)

    def _current(self, address: str, now: float) -> _Window | None:
        window = self._windows.get(address)
        if window is not None and now - window.start >= self.window_s:
            del self._windows[address]
            return None
        return window

    def _open(self, address: str, now: float) -> _Window:
        while self._windows:
            oldest, window = next(iter(self._windows.items()))
            if now - window.start < self.window_s and len(self._windows) < self.max_addresses:
                break
            del self._windows[oldest]
        window = self._windows[address] = _Window(start=now)
        return window

    def _audit_budget(self, now: float) -> bool:
        if now - self._audits.start >= self.window_s:
            self._audits = _Window(start=now)
        self._audits.failures += 1
        return self._audits.failures <= self.audits_per_window


# --- one request ------------------------------------------------------------------------------
class Note(NamedTuple):
    action: str
    account_id: str
    cluster_id: str


@dataclass
class Exchange:
    """One request as the edge sees it: the client address, the authenticated caller, and the
    audit notes taken while it was handled (written once its status is known)."""

    client_ip: str
    resource: str
    principal: Principal | None = None
    notes: list[Note] = field(default_factory=list)

    def note(self, action: str, *, account_id: str = "", cluster_id: str = "") -> None:
        """Audit this request as `action`, about an account or a campaign, with whatever status
        it ends with (a 404, a 500 or a 403 is written as such)."""
        self.notes.append(Note(action, account_id, cluster_id))

    def accesses(self, status: int) -> list[Access]:
        """The notes taken so far as audit records with `status`; each is handed out once."""
        notes, self.notes = self.notes, []
        return [
            Access(
                self.principal,
                note.action,
                self.resource,
                status,
                self.client_ip,
                account_id=note.account_id,
                cluster_id=note.cluster_id,
            )
            for note in notes
        ]


def exchange_of(scope: Scope) -> Exchange:
    return scope[EXCHANGE]


class BodyTooLarge(HTTPException):
    """Raised from `receive` once a body passes the limit: FastAPI re-raises it from body
    parsing, and the error handler answers 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body over {limit} bytes")


def _public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIX)


def _bearer(headers: Headers) -> str | None:
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _declared_length(headers: Headers) -> int | None:
    declared = headers.get("content-length", "")
    return int(declared) if declared.isdigit() else None


class Edge:
    """The middleware (see the module's docstring); `create_app` adds it."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        store: Store,
        verify: Callable[[str], Principal | None],
        max_request_bytes: int,
        trusted_proxies: Sequence[str],
        auth_failures_per_minute: int,
        requests_total: Counter,
    ) -> None:
        self.app = app
        self.store = store
        self.verify = verify
        self.limit = max_request_bytes
        self.trusted = trusted_networks(trusted_proxies)
        self.limiter = FailureLimiter(auth_failures_per_minute)
        self.requests_total = requests_total

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        exchange = scope[EXCHANGE] = Exchange(client_address(scope, self.trusted), scope["path"])
        declared = _declared_length(headers)
        body_done = not (declared or "transfer-encoding" in headers)
        received = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal body_done, received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                body_done = not message.get("more_body", False)
                if received > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        async def edge_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                status = int(message["status"])
                accesses = exchange.accesses(status)
                if accesses:  # before the response leaves: no audit row, no data
                    await to_thread.run_sync(audit, self.store, *accesses)
                # A body left unread closes the connection: the server reads no more of it.
                extra = [*SECURITY_HEADERS, *([] if body_done else [CLOSE])]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
                route = getattr(scope.get("route"), "path", "unmatched")
                self.requests_total.labels(route, str(status)).inc()
                started = True
            await send(message)

        try:
            refusal = await self._refusal(scope, headers, exchange, declared)
            if refusal is not None:
                await refusal(scope, counted_receive, edge_send)
            else:
                await self.app(scope, counted_receive, edge_send)
        except HTTPException as refused:  # one no handler answered (413 outside a route)
            if started:
                raise
            await error_response(refused.status_code, refused.detail)(scope, receive, edge_send)
        except Exception:
            if started:
                raise
            await error_response(500, UNEXPECTED)(scope, receive, edge_send)
            raise  # for the server's log; the client already has its JSON 500

    async def _refusal(
        self, scope: Scope, headers: Headers, exchange: Exchange, declared: int | None
    ) -> Response | None:
        """The answer that ends the request before the app sees it, if any."""
        address = exchange.client_ip
        if not _public(scope["path"]):
            retry = self.limiter.retry_after(address)
            if retry is not None:
                if self.limiter.throttled(address):
                    exchange.note("throttled")
                message = f"too many failed authentications from this address; retry in {retry} s"
                return error_response(429, message, {"Retry-After": str(retry)})
            token = _bearer(headers)
            if token is not None:
                exchange.principal = await to_thread.run_sync(self.verify, token)
            if exchange.principal is None:
                if self.limiter.failed(address):
                    exchange.note("authentication_failed")
                detail = "unknown or revoked token" if token else "a bearer token is required"
                return error_response(401, detail)
        if declared is not None and declared > self.limit:
            return error_response(413, f"request body over {self.limit} bytes")
        return None
