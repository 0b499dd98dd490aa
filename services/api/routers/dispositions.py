"""Analysts' dispositions of accounts and campaigns: set one (confirmed extraction, false
positive, allowlisted until a date, or cleared; with an assignee and a note), read a subject's
history, list the current ones. Every change is audited; reading a history is an audited view.
The request and response models live here, beside their routes (`services.dispositions` holds
the rules)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated, Self

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field, model_validator

from core.events import MAX_ID_CHARS
from services.api.deps import Analyst, Audit, Limit, Offset, StoreDep
from services.api.errors import errors
from services.api.schemas import Page
from services.dispositions import (
    Disposition,
    DispositionError,
    SubjectKind,
    audit_note,
    set_disposition,
    subject_of,
)
from storage import queries
from storage.queries.dispositions import DispositionRow

router = APIRouter(tags=["dispositions"])
MAX_TEXT = 4000  # a reason or a note: a paragraph, not a document


def _ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _moment(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


class DispositionRequest(BaseModel):
    """A new disposition of an account or a campaign; it replaces the current one."""

    subject_kind: SubjectKind
    subject_id: str = Field(min_length=1, max_length=MAX_ID_CHARS)
    disposition: Disposition = Field(
        description="`none` clears the current disposition (the history keeps it)."
    )
    reason: str = Field("", max_length=MAX_TEXT)
    expires_at: datetime | None = Field(
        None, description="Required for `allowlisted`: when the allowlist lapses (future, UTC)."
    )
    assignee: str = Field("", max_length=200)
    note: str = Field("", max_length=MAX_TEXT)

    @model_validator(mode="after")
    def _expiry(self) -> Self:
        if self.disposition == "allowlisted" and self.expires_at is None:
            raise ValueError("an allowlisted disposition needs expires_at")
        if self.expires_at is not None and _ms(self.expires_at) <= time.time() * 1000:
            raise ValueError("expires_at is in the past")
        return self


class DispositionRecord(BaseModel):
    """One disposition as recorded: what, about whom, by whom and when, until when."""

    disposition_id: str
    subject_kind: SubjectKind
    subject_id: str
    disposition: Disposition
    reason: str
    expires_at: datetime | None
    assignee: str
    note: str
    actor: str = Field(description="The name of the token that set it.")
    at: datetime
    active: bool = Field(
        description="In force now: the subject's latest, not cleared (`none`), not expired."
    )

    @classmethod
    def from_row(cls, row: DispositionRow, latest: bool, now_ms: int) -> DispositionRecord:
        expires = int(row["expires_ms"])
        return cls(
            disposition_id=row["disposition_id"],
            subject_kind=row["subject_kind"],  # type: ignore[arg-type]
            subject_id=row["subject_id"],
            disposition=row["disposition"],  # type: ignore[arg-type]
            reason=row["reason"],
            expires_at=_moment(expires) if expires else None,
            assignee=row["assignee"],
            note=row["note"],
            actor=row["actor"],
            at=_moment(int(row["at_ms"])),
            active=latest and row["disposition"] != "none" and (expires == 0 or expires > now_ms),
        )


@router.post("/v1/dispositions", status_code=201, responses=errors(401, 403, 413, 422))
def create_disposition(
    body: DispositionRequest, who: Analyst, store: StoreDep, audit: Audit
) -> DispositionRecord:
    """Set an account's or a campaign's disposition. `allowlisted` (until `expires_at`) stops
    its alerts; `false_positive` makes its traffic benign evidence for the next calibration."""
    expires = _ms(body.expires_at) if body.expires_at is not None else None
    try:
        row = set_disposition(
            store,
            body.subject_kind,
            body.subject_id,
            body.disposition,
            who,
            reason=body.reason,
            expires_ms=expires,
            assignee=body.assignee,
            note=body.note,
            audited=False,  # the edge writes the note below with the response's status
        )
    except DispositionError as refused:
        raise HTTPException(422, str(refused)) from None
    audit.note(audit_note(row)[0], **subject_of(row))
    return DispositionRecord.from_row(row, latest=True, now_ms=int(time.time() * 1000))


def _history(store: StoreDep, kind: SubjectKind, subject_id: str) -> Page[DispositionRecord]:
    now_ms = int(time.time() * 1000)
    rows = queries.disposition_history(store, kind, subject_id)
    return Page[DispositionRecord].whole(
        [DispositionRecord.from_row(row, i == 0, now_ms) for i, row in enumerate(rows)]
    )


@router.get("/v1/accounts/{account_id}/dispositions", responses=errors(401, 403, 422))
def account_dispositions(
    account_id: str, _who: Analyst, store: StoreDep, audit: Audit
) -> Page[DispositionRecord]:
    """An account's dispositions, newest (the current one) first."""
    audit.note("view_dispositions", account_id=account_id)
    return _history(store, "account", account_id)


@router.get("/v1/clusters/{cluster_id}/dispositions", responses=errors(401, 403, 422))
def cluster_dispositions(
    cluster_id: str, _who: Analyst, store: StoreDep, audit: Audit
) -> Page[DispositionRecord]:
    """A campaign's dispositions, newest (the current one) first."""
    audit.note("view_dispositions", cluster_id=cluster_id)
    return _history(store, "cluster", cluster_id)


@router.get("/v1/dispositions", responses=errors(401, 403, 422))
def list_dispositions(
    _who: Analyst,
    store: StoreDep,
    audit: Audit,
    disposition: Disposition | None = None,
    subject_kind: SubjectKind | None = None,
    active: Annotated[
        bool, Query(description="Only those in force now (not cleared, not expired).")
    ] = False,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[DispositionRecord]:
    """The current disposition of every account and campaign that has one, newest first."""
    audit.note("list_dispositions")
    now_ms = int(time.time() * 1000)
    rows = queries.current_dispositions(
        store, disposition, subject_kind, active_at_ms=now_ms if active else None
    )
    items = [DispositionRecord.from_row(row, True, now_ms) for row in rows]
    more = len(items) > offset + limit
    return Page[DispositionRecord](
        items=items[offset : offset + limit],
        limit=limit,
        offset=offset,
        next_offset=offset + limit if more else None,
    )
