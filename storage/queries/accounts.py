"""Accounts as the analysts and the demo rank them: each account's latest verdict, its detector
checkpoint, and its activity."""

from __future__ import annotations

import time
from typing import NamedTuple, TypedDict, cast

from storage.base import Store
from storage.queries.dispositions import IN_FORCE_ACCOUNTS
from storage.queries.paging import RowPage, fetch_page


class AccountRiskRow(TypedDict):
    account_id: str
    latest_score: float
    latest_label: str
    most_seen: int
    latest_cluster: str
    last_ms: int


class FlaggedAccountRow(TypedDict):
    account_id: str
    label: str
    score: float
    seen: int
    cluster: str
    reasons: str  # reasons_json of the latest verdict


class BusyAccountRow(TypedDict):
    account_id: str
    n: int
    follow_ups: int
    first: int  # epoch seconds
    last: int


class Checkpoint(NamedTuple):
    """What the detector's checkpoint says of an account (zeros when it has none)."""

    requests_seen: int
    updated_ms: int


def ranked_accounts(
    store: Store,
    label: str | None,
    limit: int,
    offset: int,
    disposition: str | None = None,
    now_ms: int | None = None,
) -> RowPage[AccountRiskRow]:
    """Accounts by their latest score, highest first, optionally only those with `label`, and
    only those whose disposition in force at `now_ms` is `disposition` (`none`: those without
    one in force: never disposed, cleared or expired)."""
    return fetch_page(
        store,
        "SELECT account_id, latest_score, latest_label, most_seen, latest_cluster, last_ms"  # noqa: S608 - fixed SQL
        " FROM (SELECT account_id, argMax(score, verdict_ms) AS latest_score,"
        " argMax(label, verdict_ms) AS latest_label, max(requests_seen) AS most_seen,"
        " argMax(cluster_id, verdict_ms) AS latest_cluster, max(verdict_ms) AS last_ms"
        # No FINAL: a replayed verdict is an identical row, so argMax/max are unchanged,
        # and skipping the merge-on-read keeps the ranking fast at 100k accounts.
        " FROM {db}.verdicts GROUP BY account_id)"
        " WHERE (%(label)s = '' OR latest_label = %(label)s)"
        " AND (%(disposition)s = ''"
        f" OR (account_id IN ({IN_FORCE_ACCOUNTS})) = (%(disposition)s != 'none'))"
        " ORDER BY latest_score DESC, account_id",
        {
            "label": label or "",
            "disposition": disposition or "",
            "at_ms": int(time.time() * 1000) if now_ms is None else now_ms,
        },
        limit,
        offset,
    )


def account_checkpoint(store: Store, account_id: str) -> Checkpoint:
    """How many requests the detector has seen of the account and when it last saved them: the
    checkpoint is keyed by account, whereas counting `events` would scan a table ordered by
    request id."""
    (row,) = store.query(
        "SELECT max(requests_seen) AS seen, max(updated_ms) AS updated"
        " FROM {db}.account_state FINAL WHERE account_id = %(a)s",
        {"a": account_id},
    )
    return Checkpoint(int(row["seen"] or 0), int(row["updated"] or 0))


def flagged_accounts(store: Store, limit: int = 20) -> list[FlaggedAccountRow]:
    """Accounts whose latest verdict is not benign, highest score first (the demo's table)."""
    rows = store.query(
        "SELECT account_id, argMax(label, verdict_ms) AS label, max(score) AS score, "
        "max(requests_seen) AS seen, argMax(cluster_id, verdict_ms) AS cluster, "
        "argMax(reasons_json, verdict_ms) AS reasons FROM {db}.verdicts FINAL "
        "GROUP BY account_id HAVING label != 'benign' ORDER BY score DESC LIMIT %(limit)s",
        {"limit": limit},
    )
    return cast(list[FlaggedAccountRow], rows)


def busiest_accounts(store: Store, limit: int = 8) -> list[BusyAccountRow]:
    """Accounts by stored requests, with follow-ups and first/last request time (the demo)."""
    rows = store.query(
        "SELECT account_id, count() AS n, countIf(turn_count > 1) AS follow_ups, "
        "min(event_time) AS first, max(event_time) AS last "
        "FROM {db}.events FINAL GROUP BY account_id ORDER BY n DESC LIMIT %(limit)s",
        {"limit": limit},
    )
    return cast(list[BusyAccountRow], rows)
