"""Verdicts: filtered pages for the API, an account's history, and a report's window."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypedDict, cast

from storage.base import Store
from storage.queries.paging import RowPage, fetch_page


class ReportVerdictRow(TypedDict):
    account_id: str
    cluster_id: str
    verdict_ms: int
    requests_seen: int
    score: float
    label: str
    reasons_json: str
    detector_version: str


class VerdictRow(ReportVerdictRow):
    """A whole `verdicts` row: what a report reads, plus the row's identity and version."""

    verdict_id: str
    verdict_time: int
    version: int


def verdict_page(
    store: Store,
    account_id: str | None,
    label: str | None,
    since_ms: int,
    until_ms: int,
    limit: int,
    offset: int,
) -> RowPage[VerdictRow]:
    """Verdicts in `[since_ms, until_ms]`, newest first, optionally of one account or label."""
    return fetch_page(
        store,
        "SELECT * FROM {db}.verdicts FINAL"
        " WHERE (%(account)s = '' OR account_id = %(account)s)"
        " AND (%(label)s = '' OR label = %(label)s)"
        " AND verdict_ms >= %(since)s AND verdict_ms <= %(until)s"
        " ORDER BY verdict_ms DESC, verdict_id",
        {"account": account_id or "", "label": label or "", "since": since_ms, "until": until_ms},
        limit,
        offset,
    )


def account_verdicts(store: Store, account_id: str, limit: int = 200) -> list[VerdictRow]:
    """An account's verdicts, newest first."""
    rows = store.query(
        "SELECT * FROM {db}.verdicts FINAL WHERE account_id = %(a)s "
        "ORDER BY verdict_ms DESC, requests_seen DESC LIMIT %(limit)s",
        {"a": account_id, "limit": limit},
    )
    return cast(list[VerdictRow], rows)


def verdicts_of(
    store: Store, accounts: Sequence[str], since_ms: int, until_ms: int
) -> list[ReportVerdictRow]:
    """The accounts' verdicts in `[since_ms, until_ms]`, oldest first (a report's timeline)."""
    rows = store.query_in(
        "SELECT account_id, cluster_id, verdict_ms, requests_seen, score, label, reasons_json,"
        " detector_version FROM {db}.verdicts FINAL WHERE account_id IN %(values)s"
        " AND verdict_ms >= %(since)s AND verdict_ms <= %(until)s",
        accounts,
        {"since": since_ms, "until": until_ms},
    )
    rows.sort(key=lambda r: (r["verdict_ms"], r["account_id"]))
    return cast(list[ReportVerdictRow], rows)


def extraction_accounts(store: Store, since_ms: int, until_ms: int) -> list[str]:
    """Accounts with an `extraction` verdict in `[since_ms, until_ms]`, sorted."""
    rows = store.query(
        "SELECT DISTINCT account_id FROM {db}.verdicts FINAL WHERE label = 'extraction' "
        "AND verdict_ms >= %(since)s AND verdict_ms <= %(until)s",
        {"since": since_ms, "until": until_ms},
    )
    return sorted(r["account_id"] for r in rows)
