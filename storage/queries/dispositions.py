"""Analysts' dispositions (`dispositions`): one subject's history, the current disposition of
every subject, the allowlist in force, the accounts marked false positive, and their events as
benign evidence for calibration.

Rows are never revised (each change has its own id), so `FINAL` only folds a row written twice;
a subject's current disposition is its latest row: `at_ms`, then `disposition_id`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TypedDict, cast

from storage.base import Store
from storage.queries.paging import fetch_page


class DispositionRow(TypedDict):
    subject_kind: str  # account | cluster
    subject_id: str
    disposition_id: str
    disposition: str
    reason: str
    expires_ms: int  # 0: never
    assignee: str
    note: str
    actor: str
    token_id: str
    at_ms: int


_COLUMNS = (
    "subject_kind, subject_id, disposition_id, disposition, reason, expires_ms, assignee, note,"
    " actor, token_id, at_ms"
)
# The latest row of each subject (LIMIT BY: ClickHouse 18.16 and chDB alike).
_LATEST = (
    f"SELECT {_COLUMNS} FROM {{db}}.dispositions FINAL"  # noqa: S608 - fixed SQL
    " ORDER BY at_ms DESC, disposition_id DESC LIMIT 1 BY subject_kind, subject_id"
)


# A subquery: the accounts whose disposition in force at `%(at_ms)s` (their current one, not
# cleared, not expired) is `%(disposition)s`, or any one when that is '' or 'none'. A subquery
# rather than a list of ids, so that a filter on it pages in one query.
IN_FORCE_ACCOUNTS = (
    f"SELECT subject_id FROM ({_LATEST})"  # noqa: S608 - fixed SQL
    " WHERE subject_kind = 'account' AND disposition != 'none'"
    " AND (expires_ms = 0 OR expires_ms > %(at_ms)s)"
    " AND (%(disposition)s IN ('', 'none') OR disposition = %(disposition)s)"
)


def disposition_history(store: Store, subject_kind: str, subject_id: str) -> list[DispositionRow]:
    """Every disposition of one account or campaign, newest first (the first is current)."""
    rows = store.query(
        f"SELECT {_COLUMNS} FROM {{db}}.dispositions FINAL"  # noqa: S608 - fixed columns
        " WHERE subject_kind = %(kind)s AND subject_id = %(id)s"
        " ORDER BY at_ms DESC, disposition_id DESC",
        {"kind": subject_kind, "id": subject_id},
    )
    return cast(list[DispositionRow], rows)


def every_disposition(
    store: Store, disposition: str | None = None, subject_kind: str | None = None
) -> list[DispositionRow]:
    """Every disposition ever recorded, oldest first (the order to replay them in elsewhere);
    optionally only `disposition`s, of `subject_kind`."""
    rows = store.query(
        f"SELECT {_COLUMNS} FROM {{db}}.dispositions FINAL"  # noqa: S608 - fixed columns
        " WHERE (%(disposition)s = '' OR disposition = %(disposition)s)"
        " AND (%(kind)s = '' OR subject_kind = %(kind)s)"
        " ORDER BY at_ms, disposition_id",
        {"disposition": disposition or "", "kind": subject_kind or ""},
    )
    return cast(list[DispositionRow], rows)


def current_dispositions(
    store: Store,
    disposition: str | None = None,
    subject_kind: str | None = None,
    active_at_ms: int | None = None,
) -> list[DispositionRow]:
    """The current disposition of every subject, newest first; optionally only those whose
    current one is `disposition`, of `subject_kind`, or in force at `active_at_ms` (not cleared
    to `none`, not expired)."""
    rows = store.query(
        f"SELECT * FROM ({_LATEST})"  # noqa: S608 - fixed SQL
        " WHERE (%(disposition)s = '' OR disposition = %(disposition)s)"
        " AND (%(kind)s = '' OR subject_kind = %(kind)s)"
        " AND (%(at)s = 0 OR (disposition != 'none' AND (expires_ms = 0 OR expires_ms > %(at)s)))"
        " ORDER BY at_ms DESC, disposition_id DESC",
        {"disposition": disposition or "", "kind": subject_kind or "", "at": active_at_ms or 0},
    )
    return cast(list[DispositionRow], rows)


def allowlisted(
    store: Store, subject_kind: str, subject_ids: Sequence[str], now_ms: int
) -> set[str]:
    """Which of these accounts or campaigns are allowlisted at `now_ms` (their current
    disposition is `allowlisted` and has not expired)."""
    if not subject_ids:
        return set()
    rows = store.query_in(
        "SELECT subject_id, disposition, expires_ms FROM ("  # noqa: S608 - fixed SQL
        f"SELECT {_COLUMNS} FROM {{db}}.dispositions FINAL"
        " WHERE subject_kind = %(kind)s AND subject_id IN %(values)s"
        " ORDER BY at_ms DESC, disposition_id DESC LIMIT 1 BY subject_id)"
        " WHERE disposition = 'allowlisted' AND expires_ms > %(now)s",
        subject_ids,
        {"kind": subject_kind, "now": now_ms},
    )
    return {r["subject_id"] for r in rows}


def false_positive_accounts(store: Store) -> list[str]:
    """Accounts whose current disposition is `false_positive`, by id."""
    return sorted(r["subject_id"] for r in current_dispositions(store, "false_positive", "account"))


class StoredEventRow(TypedDict):
    request_id: str
    account_id: str
    event_ms: int
    model: str
    endpoint: str
    prompt_text: str
    turn_count: int
    response_text: str
    prompt_tokens: int | None
    completion_tokens: int | None
    params_json: str
    client_ip: str
    user_agent: str
    api_key_id: str
    org_id: str
    extra_json: str


def stored_events(
    store: Store, accounts: Sequence[str], page: int = 50_000
) -> Iterator[StoredEventRow]:
    """Every stored request of these accounts, per account oldest first (benign evidence to
    calibrate on), read a page at a time so a busy account does not fill memory at once."""
    sql = (
        "SELECT request_id, account_id, event_ms, model, endpoint, prompt_text,"
        " turn_count, response_text, prompt_tokens, completion_tokens, params_json,"
        " client_ip, user_agent, api_key_id, org_id, extra_json"
        " FROM {db}.events FINAL WHERE account_id = %(account)s ORDER BY event_ms, request_id"
    )
    for account in sorted(set(accounts)):
        offset: int | None = 0
        while offset is not None:
            rows = fetch_page(store, sql, {"account": account}, page, offset)
            yield from cast(list[StoredEventRow], rows.rows)
            offset = rows.next_offset
