"""Health (the one route without a token), metrics, the OpenAPI document, the audit log and
API tokens."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from core import __version__
from services import auth
from services.api.deps import Admin, Analyst, Audit, Limit, Offset, StoreDep
from services.api.errors import errors
from services.api.schemas import (
    AuditRecord,
    Health,
    Page,
    TokenCreated,
    TokenRequest,
    TokenRevoked,
)
from storage import queries

router = APIRouter()
PROMETHEUS_TEXT: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Prometheus text format.",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    }
}


@router.get(
    "/healthz",
    tags=["health"],
    responses={503: {"model": Health, "description": "Degraded: the store does not answer."}},
)
def health(store: StoreDep, response: Response) -> Health:
    """Liveness and whether the store answers; needs no token. Degraded answers 503 (same
    body), so a probe that reads only the status code sees it."""
    healthy = store.ping()
    if not healthy:
        response.status_code = 503
    return Health(status="ok" if healthy else "degraded", version=__version__)


@router.get(
    "/metrics",
    tags=["health"],
    response_class=Response,  # no media type of its own: errors stay documented as JSON
    responses=PROMETHEUS_TEXT | errors(401, 403),
)
def get_metrics(request: Request, _who: Analyst) -> Response:
    """Prometheus metrics: requests by route and status."""
    return Response(generate_latest(request.app.state.metrics), media_type=CONTENT_TYPE_LATEST)


@router.get("/openapi.json", tags=["health"], include_in_schema=False)
def openapi(request: Request, _who: Analyst) -> dict[str, Any]:
    return request.app.openapi()


@router.get("/v1/audit", tags=["admin"], responses=errors(401, 403, 422))
def list_audit_log(
    _who: Admin,
    store: StoreDep,
    account_id: str | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[AuditRecord]:
    """Who viewed, exported or changed what, newest first."""
    page = queries.audit_page(store, account_id, limit, offset)
    return Page[AuditRecord].of(page, AuditRecord.from_row)


@router.post("/v1/tokens", tags=["admin"], status_code=201, responses=errors(401, 403, 413, 422))
def create_token(body: TokenRequest, _who: Admin, store: StoreDep, audit: Audit) -> TokenCreated:
    """A new token; it is shown once, only its hash is stored."""
    token, created = auth.create_token(store, body.role, body.name)
    audit.note(f"create_token:{created.token_id}")
    return TokenCreated(token=token, token_id=created.token_id, role=created.role)


@router.delete("/v1/tokens/{token_id}", tags=["admin"], responses=errors(401, 403, 404, 422))
def revoke_token(
    token_id: Annotated[str, Path(min_length=1, max_length=64)],
    request: Request,
    _who: Admin,
    store: StoreDep,
    audit: Audit,
) -> TokenRevoked:
    """Revoke a token by id. This API process refuses it from the next request on; other
    processes serving the same store within their token cache's lifetime
    (`services.auth.TOKEN_CACHE_SECONDS`, 30 s)."""
    audit.note(f"revoke_token:{token_id}")
    if not auth.revoke_token(store, token_id):
        raise HTTPException(404, f"no token {token_id!r}")
    request.app.state.verify.forget(token_id)
    return TokenRevoked(token_id=token_id)
