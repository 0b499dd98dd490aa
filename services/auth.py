"""API tokens (stored as SHA-256 hashes only), roles, and the append-only audit log.

A token is `dg_<token_id>_<secret>`: the id names it in the audit log and for revocation, the
secret is 32 random bytes. Only `sha256(token)` is stored, so a copy of the database does not
hand out access. Tokens carry high entropy, so a plain SHA-256 (no slow KDF) is the right hash.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Literal

from storage import Store, queries

Role = Literal["analyst", "admin", "ingest"]
ROLES: tuple[Role, ...] = ("analyst", "admin", "ingest")
# What each role may do: `ingest` is the provider's gateway posting events and nothing else.
PERMITS: dict[str, set[str]] = {
    "analyst": {"analyst"},
    "ingest": {"ingest"},
    "admin": {"analyst", "admin", "ingest"},
}
TOKEN_CACHE_SECONDS = 30.0


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's id, name and role."""

    token_id: str
    name: str
    role: Role

    def can(self, role: Role) -> bool:
        return role in PERMITS[self.role]


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def create_token(store: Store, role: Role, name: str) -> tuple[str, Principal]:
    """A new token (returned once, never stored) and whom it names."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, not {role!r}")
    token_id = uuid.uuid4().hex[:12]
    token = f"dg_{token_id}_{secrets.token_urlsafe(32)}"
    store.insert(
        "api_tokens",
        [
            {
                "token_id": token_id,
                "token_hash": token_hash(token),
                "name": name,
                "role": role,
                "created_time": int(time.time()),
                "revoked": 0,
            }
        ],
    )
    return token, Principal(token_id, name, role)


def revoke_token(store: Store, token_id: str) -> bool:
    """Revoke by id (a newer row version replaces the old one); False when there is none."""
    row = queries.token_by_id(store, token_id)
    if row is None:
        return False
    store.revise("api_tokens", dict(row), revoked=1)
    return True


class TokenVerifier:
    """Looks tokens up by hash, with a short cache so each request does not query the store;
    a revocation takes effect at once in the process that made it (`forget`), and in the others
    within `TOKEN_CACHE_SECONDS`."""

    def __init__(self, store: Store, cache_seconds: float = TOKEN_CACHE_SECONDS) -> None:
        self.store = store
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        self._revoked: set[str] = set()  # revoked through this process (few: an admin's acts)

    def __call__(self, token: str) -> Principal | None:
        digest = token_hash(token)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached and now - cached[0] < self.cache_seconds:
            return self._unless_revoked(cached[1])
        row = queries.token_by_hash(self.store, digest)
        principal = None
        if row and not int(row["revoked"]) and row["role"] in ROLES:
            principal = Principal(str(row["token_id"]), str(row["name"]), row["role"])
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[digest] = (now, principal)
        return self._unless_revoked(principal)

    def _unless_revoked(self, principal: Principal | None) -> Principal | None:
        return None if principal and principal.token_id in self._revoked else principal

    def forget(self, token_id: str) -> None:
        """A token this process just revoked is refused here at once, even by a lookup already
        under way (other processes answer from their cache for up to `cache_seconds`)."""
        self._revoked.add(token_id)


@dataclass(frozen=True)
class Access:
    """One audited request: who (None: no valid token), what, on which resource and subject,
    from which client address, and the HTTP status it ended with."""

    principal: Principal | None
    action: str
    resource: str
    status: int
    client_ip: str = ""
    account_id: str = ""
    cluster_id: str = ""


def audit(store: Store, *accesses: Access) -> None:
    """Append audit records (a new random id each: rows are never replaced)."""
    now_ms = int(time.time() * 1000)
    store.insert(
        "audit_log",
        [
            {
                "audit_id": uuid.uuid4().hex,
                "audit_time": now_ms // 1000,
                "audit_ms": now_ms,
                "token_id": access.principal.token_id if access.principal else "",
                "role": access.principal.role if access.principal else "",
                "action": access.action,
                "resource": access.resource,
                "account_id": access.account_id,
                "cluster_id": access.cluster_id,
                "status": access.status,
                "client_ip": access.client_ip,
            }
            for access in accesses
        ],
    )
