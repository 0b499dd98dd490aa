"""API tokens (looked up by hash or id) and the audit log."""

from __future__ import annotations

from typing import TypedDict, cast

from storage.base import Store
from storage.queries.paging import RowPage, fetch_page


class TokenRow(TypedDict):
    token_id: str
    name: str
    role: str
    revoked: int


class StoredTokenRow(TypedDict):
    token_id: str
    token_hash: str
    name: str
    role: str
    created_time: int
    version: int


class AuditRow(TypedDict):
    audit_ms: int
    token_id: str
    role: str
    action: str
    resource: str
    account_id: str
    cluster_id: str
    status: int
    client_ip: str


def token_by_hash(store: Store, token_hash: str) -> TokenRow | None:
    rows = store.query(
        "SELECT token_id, name, role, revoked FROM {db}.api_tokens FINAL "
        "WHERE token_hash = %(hash)s",
        {"hash": token_hash},
    )
    return cast(TokenRow, rows[0]) if rows else None


def token_by_id(store: Store, token_id: str) -> StoredTokenRow | None:
    """The token's stored row with its version (what a revocation revises)."""
    rows = store.query(
        "SELECT token_id, token_hash, name, role, created_time, version FROM {db}.api_tokens FINAL "
        "WHERE token_id = %(id)s",
        {"id": token_id},
    )
    return cast(StoredTokenRow, rows[0]) if rows else None


def audit_page(store: Store, account_id: str | None, limit: int, offset: int) -> RowPage[AuditRow]:
    """Audit records, newest first, optionally only those about one account."""
    return fetch_page(
        store,
        "SELECT audit_ms, token_id, role, action, resource, account_id, cluster_id, status,"
        " client_ip FROM {db}.audit_log"
        " WHERE %(account)s = '' OR account_id = %(account)s"
        " ORDER BY audit_ms DESC, audit_id",
        {"account": account_id or ""},
        limit,
        offset,
    )
