"""Every dependency the routes declare, in one place: the settings, the store, the ingestor,
who is calling (bearer token and role), the audit trail, the shared query parameters and the
ingest body. `create_app` puts the app's parts on `app.state`; routes only ask for them here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

import orjson
from fastapi import Depends, HTTPException, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from core.settings import Settings
from core.timeutil import END_OF_TIME_MS
from services.api.schemas import millis
from services.auth import Principal, Role, audit
from services.ingest import Ingestor
from storage import Store

MAX_PAGE = 500


# --- the app's parts --------------------------------------------------------------------------
def app_settings(request: Request) -> Settings:
    return request.app.state.settings


def app_store(request: Request) -> Store:
    return request.app.state.store


def app_ingestor(request: Request) -> Ingestor:
    ingestor = request.app.state.ingestor
    if ingestor is None:
        raise HTTPException(503, "this API was built without an ingestor: it takes no events")
    return ingestor


SettingsDep = Annotated[Settings, Depends(app_settings)]
StoreDep = Annotated[Store, Depends(app_store)]
IngestorDep = Annotated[Ingestor, Depends(app_ingestor)]


# --- who is calling ---------------------------------------------------------------------------
_bearer = HTTPBearer(auto_error=False)


def principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(401, "a bearer token is required")
    who = request.app.state.verify(credentials.credentials)
    if who is None:
        raise HTTPException(401, "unknown or revoked token")
    return who


def requires(role: Role) -> Callable[..., Principal]:
    def check(who: Annotated[Principal, Depends(principal)]) -> Principal:
        if not who.can(role):
            raise HTTPException(403, f"this route needs the {role!r} role")
        return who

    return check


# Module level, so FastAPI can resolve them from the route functions' string annotations.
Analyst = Annotated[Principal, Depends(requires("analyst"))]
Admin = Annotated[Principal, Depends(requires("admin"))]
Ingest = Annotated[Principal, Depends(requires("ingest"))]


# --- the audit trail --------------------------------------------------------------------------
@dataclass(frozen=True)
class AuditTrail:
    """Appends what a caller did on this request to the append-only audit log."""

    store: Store
    resource: str
    client_ip: str

    def __call__(self, who: Principal, action: str, **subject: str) -> None:
        audit(self.store, who, action, self.resource, 200, self.client_ip, **subject)


def audit_trail(request: Request, store: StoreDep) -> AuditTrail:
    return AuditTrail(store, request.url.path, request.client.host if request.client else "")


Audit = Annotated[AuditTrail, Depends(audit_trail)]


# --- shared query parameters ------------------------------------------------------------------
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE)]
Offset = Annotated[int, Query(ge=0, le=1_000_000)]
LabelFilter = Annotated[str | None, Query(pattern="^(benign|suspicious|extraction)$")]
AlertStatusFilter = Annotated[str | None, Query(pattern="^(pending|delivered|expired)$")]


@dataclass(frozen=True)
class TimeRange:
    """Inclusive, in epoch milliseconds; open ends are the start and the end of time."""

    since_ms: int
    until_ms: int


def time_range(since: datetime | None = None, until: datetime | None = None) -> TimeRange:
    return TimeRange(millis(since) or 0, millis(until) or END_OF_TIME_MS)


Window = Annotated[TimeRange, Depends(time_range)]


# --- the ingest body --------------------------------------------------------------------------
def request_lines(body: bytes, content_type: str) -> list[bytes]:
    """A batch as raw event documents: a JSON array, or one event per line (NDJSON)."""
    if content_type.split(";")[0].strip() == "application/json":
        try:
            documents = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise HTTPException(400, f"body is not JSON: {exc}") from exc
        if not isinstance(documents, list):
            raise HTTPException(400, "a JSON body must be an array of events")
        return [orjson.dumps(document) for document in documents]
    return [line for line in body.split(b"\n") if line.strip()]


async def event_lines(request: Request, settings: SettingsDep) -> list[bytes]:
    """The posted batch, read no further than the size limit (a body without a declared
    length is cut off as it streams in)."""
    limit = settings.max_request_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"request body over {limit} bytes; send smaller batches")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPException(413, f"request body over {limit} bytes; send smaller batches")
    return request_lines(bytes(body), request.headers.get("content-type", ""))


EventLines = Annotated[list[bytes], Depends(event_lines)]
