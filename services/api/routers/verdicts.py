"""Verdicts, filtered by account, label and time (an audited view)."""

from __future__ import annotations

from fastapi import APIRouter

from services.api.deps import Analyst, Audit, LabelFilter, Limit, Offset, StoreDep, Window
from services.api.errors import errors
from services.api.schemas import Page, Verdict
from storage import queries

router = APIRouter(tags=["verdicts"])


@router.get("/v1/verdicts", responses=errors(401, 403, 422))
def list_verdicts(
    _who: Analyst,
    store: StoreDep,
    audit: Audit,
    window: Window,
    account_id: str | None = None,
    label: LabelFilter = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[Verdict]:
    """Verdicts, newest first."""
    audit.note("view_verdicts", account_id=account_id or "")
    page = queries.verdict_page(
        store, account_id, label, window.since_ms, window.until_ms, limit, offset
    )
    return Page[Verdict].of(page, Verdict.from_row)
