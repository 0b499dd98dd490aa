"""An account's logged requests (an audited view), and HTTP ingest of new ones."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from services.api.deps import (
    Analyst,
    Audit,
    EventLines,
    Ingest,
    IngestorDep,
    Limit,
    LogFormatDep,
    Offset,
    SettingsDep,
    StoreDep,
    Window,
)
from services.api.errors import errors
from services.api.schemas import IngestReceipt, LoggedEvent, Page, Rejected
from storage import queries

router = APIRouter()


@router.get("/v1/events", tags=["events"], responses=errors(401, 403, 422))
def list_events(
    _who: Analyst,
    store: StoreDep,
    settings: SettingsDep,
    audit: Audit,
    account_id: Annotated[str, Query(min_length=1)],
    window: Window,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[LoggedEvent]:
    """An account's requests; prompt text as the redaction setting allows."""
    audit.note("view_events", account_id=account_id)
    page = queries.account_event_page(
        store, account_id, window.since_ms, window.until_ms, limit, offset
    )
    return Page[LoggedEvent].of(page, lambda row: LoggedEvent.from_row(row, settings))


@router.post(
    "/v1/events", tags=["ingest"], status_code=202, responses=errors(400, 401, 403, 413, 422, 503)
)
async def ingest_events(
    _who: Ingest, lines: EventLines, log_format: LogFormatDep, ingestor: IngestorDep
) -> IngestReceipt:
    """A batch of request events (NDJSON, or a JSON array) in the log format `format` names.
    Malformed events become dead letters (topic and table) with their reason; the rest go on.
    202 once durable. A dead letter's `index` counts the batch's events (an OTLP export holds
    one per model-call span)."""
    result = await run_in_threadpool(ingestor.ingest, lines, log_format)
    return IngestReceipt(
        accepted=result.accepted,
        dead_letters=[Rejected.model_validate(d) for d in result.dead_letters],
        duplicates=result.duplicates,
    )
