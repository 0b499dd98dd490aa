"""Accounts ranked by risk, and one account's verdicts and activity (both audited: each shows
accounts' data)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from services.api.deps import Analyst, Audit, LabelFilter, Limit, Offset, StoreDep
from services.api.errors import errors
from services.api.schemas import AccountDetail, AccountSummary, Page
from services.dispositions import Disposition
from storage import queries

router = APIRouter(tags=["accounts"])


@router.get("/v1/accounts", responses=errors(401, 403, 422))
def list_accounts(
    _who: Analyst,
    store: StoreDep,
    audit: Audit,
    label: LabelFilter = None,
    disposition: Annotated[
        Disposition | None,
        Query(
            description="Only accounts whose disposition in force is this one (`none`: "
            "accounts without one: never set, cleared or expired)."
        ),
    ] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[AccountSummary]:
    """Accounts ranked by risk: each account's latest score, highest first."""
    audit.note("list_accounts")
    page = queries.ranked_accounts(store, label, limit, offset, disposition)
    return Page[AccountSummary].of(page, AccountSummary.from_row)


@router.get("/v1/accounts/{account_id}", responses=errors(401, 403, 404, 422))
def get_account(account_id: str, _who: Analyst, store: StoreDep, audit: Audit) -> AccountDetail:
    """An account's latest verdict with its signals, its verdict history and activity."""
    audit.note("view_account", account_id=account_id)  # a 404 is audited too: a probe
    detail = AccountDetail.from_rows(
        account_id,
        queries.account_verdicts(store, account_id),
        queries.account_checkpoint(store, account_id),
    )
    if not detail.known:
        raise HTTPException(404, f"no account {account_id!r}")
    return detail
