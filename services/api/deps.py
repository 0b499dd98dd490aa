"""Every dependency the routes declare, in one place: the settings, the store, the ingestor,
who is calling (bearer token and role), the audit trail, the shared query parameters and the
ingest body. `create_app` puts the app's parts on `app.state`; routes only ask for them here."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

import orjson
from fastapi import Depends, HTTPException, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from core.events import MAX_ID_CHARS
from core.formats import NATIVE, FormatError, LogFormat, log_format
from core.settings import Settings
from services.api.edge import Exchange, exchange_of
from services.api.schemas import window_ms
from services.auth import Principal, Role
from services.ingest import Ingestor
from storage import Store

MAX_PAGE = 500
FORMAT_HELP = (
    "Log format of the body: distillguard (schema v1), litellm, otel, openai-batch (with "
    "`account`), or mapping:NAME (a field mapping in the server's mapping_dir)."
)
START_HELP = "openai-batch: the batch's submission time, every line's timestamp (default: now)."


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
# Declares the bearer scheme in the OpenAPI document; the edge has checked the token already.
_bearer = HTTPBearer(auto_error=False)


def current_exchange(request: Request) -> Exchange:
    """This request as the edge saw it: client address, caller, audit notes."""
    return exchange_of(request.scope)


ExchangeDep = Annotated[Exchange, Depends(current_exchange)]


def principal(
    exchange: ExchangeDep,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller the edge authenticated before the body was read."""
    if exchange.principal is None:  # only on a route the edge leaves public
        raise HTTPException(401, "a bearer token is required")
    return exchange.principal


def requires(role: Role) -> Callable[..., Principal]:
    def check(who: Annotated[Principal, Depends(principal)], exchange: ExchangeDep) -> Principal:
        if not who.can(role):
            exchange.note("forbidden")  # audited with the 403
            raise HTTPException(403, f"this route needs the {role!r} role")
        return who

    return check


# Module level, so FastAPI can resolve them from the route functions' string annotations.
Analyst = Annotated[Principal, Depends(requires("analyst"))]
Admin = Annotated[Principal, Depends(requires("admin"))]
Ingest = Annotated[Principal, Depends(requires("ingest"))]

# The audit trail: `audit.note("view_account", account_id=...)` before the data is read; the
# edge writes the row with the response's real status before the response leaves.
Audit = ExchangeDep


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
    return TimeRange(*window_ms(since, until))


Window = Annotated[TimeRange, Depends(time_range)]


# --- the ingest body --------------------------------------------------------------------------
MAPPING_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


def request_format(
    settings: SettingsDep,
    format: Annotated[str, Query(max_length=110, description=FORMAT_HELP)] = NATIVE,
    account: Annotated[str | None, Query(min_length=1, max_length=MAX_ID_CHARS)] = None,
    start: Annotated[datetime | None, Query(description=START_HELP)] = None,
) -> LogFormat:
    """The batch's log format (`core.formats`). A mapping is named, never given by path: it is
    read from the `mapping_dir` the operator set."""
    if format.startswith("mapping:"):
        name = format.removeprefix("mapping:")
        if settings.mapping_dir is None or not MAPPING_NAME.fullmatch(name):
            raise HTTPException(400, "format=mapping:NAME needs mapping_dir and a plain NAME")
        format = f"mapping:{settings.mapping_dir / name}.toml"
    try:
        return log_format(format, account=account, start=start or datetime.now(UTC))
    except FormatError as exc:
        raise HTTPException(400, str(exc)) from exc


LogFormatDep = Annotated[LogFormat, Depends(request_format)]


def request_lines(body: bytes, content_type: str, one_document: bool = False) -> list[bytes]:
    """A batch as raw event documents: a JSON array, or one event per line (NDJSON). With
    `one_document` (a foreign format) a JSON object is one document (an OTLP export)."""
    if content_type.split(";")[0].strip() == "application/json":
        try:
            documents = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise HTTPException(400, f"body is not JSON: {exc}") from exc
        if one_document and isinstance(documents, dict):
            return [orjson.dumps(documents)]
        if not isinstance(documents, list):
            raise HTTPException(400, "a JSON body must be an array of events")
        return [orjson.dumps(document) for document in documents]
    return [line for line in body.split(b"\n") if line.strip()]


async def event_lines(request: Request, fmt: LogFormatDep) -> list[bytes]:
    """The posted batch; the edge refuses a body past the size limit as it streams in."""
    body = await request.body()
    return request_lines(body, request.headers.get("content-type", ""), not fmt.native)


EventLines = Annotated[list[bytes], Depends(event_lines)]
