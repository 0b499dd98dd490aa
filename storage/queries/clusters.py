"""Campaigns (`clusters`): pages, one campaign, its members, and those touching some accounts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypedDict, cast

from storage.base import Store
from storage.queries.paging import RowPage, fetch_page


class ClusterSummaryRow(TypedDict):
    cluster_id: str
    updated_time: int  # epoch seconds
    members: list[str]
    score: float
    label: str


class ClusterRow(ClusterSummaryRow):
    evidence_json: str
    version: int


class ClusterEvidenceRow(TypedDict):
    cluster_id: str
    members: list[str]
    score: float
    label: str
    evidence_json: str


def cluster_page(
    store: Store, label: str | None, limit: int, offset: int
) -> RowPage[ClusterSummaryRow]:
    """Campaigns by score, highest first, optionally only those with `label`."""
    return fetch_page(
        store,
        "SELECT cluster_id, updated_time, members, score, label FROM {db}.clusters FINAL"
        " WHERE %(label)s = '' OR label = %(label)s"
        " ORDER BY score DESC, cluster_id",
        {"label": label or ""},
        limit,
        offset,
    )


def cluster(store: Store, cluster_id: str) -> ClusterRow | None:
    rows = store.query(
        "SELECT * FROM {db}.clusters FINAL WHERE cluster_id = %(c)s", {"c": cluster_id}
    )
    return cast(ClusterRow, rows[0]) if rows else None


def cluster_members(store: Store, cluster_id: str) -> list[str]:
    """The campaign's member accounts, sorted (empty when there is no such campaign)."""
    rows = store.query(
        "SELECT members FROM {db}.clusters FINAL WHERE cluster_id = %(c)s", {"c": cluster_id}
    )
    return sorted(rows[0]["members"]) if rows else []


def clusters_touching(
    store: Store, accounts: Sequence[str], cluster_id: str
) -> list[ClusterEvidenceRow]:
    """Campaigns with any of `accounts` as a member, and the campaign `cluster_id` itself."""
    rows = store.query(
        "SELECT cluster_id, members, score, label, evidence_json FROM {db}.clusters FINAL"
        " WHERE hasAny(members, %(members)s) OR cluster_id = %(cluster)s",
        {"members": list(accounts) or [""], "cluster": cluster_id},
    )
    return cast(list[ClusterEvidenceRow], rows)
