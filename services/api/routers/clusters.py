"""Campaigns, and one campaign with the evidence that links its accounts (an audited view)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from services.api.deps import Analyst, Audit, LabelFilter, Limit, Offset, StoreDep
from services.api.errors import errors
from services.api.schemas import Cluster, ClusterDetail, Page
from storage import queries

router = APIRouter(tags=["clusters"])


@router.get("/v1/clusters", responses=errors(401, 403, 422))
def list_clusters(
    _who: Analyst,
    store: StoreDep,
    audit: Audit,
    label: LabelFilter = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[Cluster]:
    """Campaigns by score, highest first (their member accounts: an audited view)."""
    audit.note("list_clusters")
    return Page[Cluster].of(queries.cluster_page(store, label, limit, offset), Cluster.from_row)


@router.get("/v1/clusters/{cluster_id}", responses=errors(401, 403, 404, 422))
def get_cluster(cluster_id: str, _who: Analyst, store: StoreDep, audit: Audit) -> ClusterDetail:
    audit.note("view_cluster", cluster_id=cluster_id)
    row = queries.cluster(store, cluster_id)
    if row is None:
        raise HTTPException(404, f"no campaign {cluster_id!r}")
    return ClusterDetail.from_row(row)
