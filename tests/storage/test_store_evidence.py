"""The store contract for hostile data and append-only evidence, on both backends: values that do
not fit are refused row by row (never a whole batch), the first write of a request id wins under
FINAL, and migration 5 adds the content hash to an existing events table (issue 15)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from core.batch import AccountState
from core.events import Event, parse_event
from storage import Store
from storage.base import RowsRejected, complete_rows
from storage.checkpoints import account_states
from storage.queries.events import event_identities
from storage.rows import account_state_row, event_row
from storage.schema import ACCOUNT_STATE_V1, EVENTS, EVENTS_V1, Table

DAY = datetime(2026, 11, 27, tzinfo=UTC)


def event(request_id: str, account: str = "acct", prompt: str = "p", days: int = 0) -> Event:
    ms = int((DAY + timedelta(days=days)).timestamp() * 1000)
    raw = (
        f'{{"request_id": "{request_id}", "account_id": "{account}", "timestamp": {ms},'
        f' "prompt": "{prompt}"}}'
    )
    parsed = parse_event(raw.encode(), "test")
    assert isinstance(parsed, Event)
    return parsed


BAD_VALUES = {
    "prompt_tokens": 2**32,  # the finding: valid JSON, too big for UInt32
    "prompt_chars": -1,
    "prompt_text": "lone \ud800 surrogate",
    "event_ms": "not a number",
    "embedding": [float("nan")],
}


def test_insert_valid_writes_the_good_rows_and_names_each_bad_one(store: Store) -> None:
    rows = [event_row(event(f"r{i}"), ingested_ms=i) for i in range(20)]
    for position, (column, value) in zip((3, 7, 8, 15, 19), BAD_VALUES.items(), strict=True):
        rows[position] = {**rows[position], column: value}
    rejected = store.insert_valid("events", rows)
    assert [(r.index, r.reason.split(":")[0]) for r in rejected] == [
        (3, "prompt_tokens"),
        (7, "prompt_chars"),
        (8, "prompt_text"),
        (15, "event_ms"),
        (19, "embedding"),
    ]
    assert store.count("events") == 15


def test_rows_the_backend_refuses_are_isolated_by_splitting(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the column check, the backend itself refuses the block: the store splits it
    until each bad row is alone, writes the rest, and stays usable."""
    monkeypatch.setattr(Table, "row_problem", lambda _self, _row: None)
    rows = [event_row(event(f"r{i}"), ingested_ms=i) for i in range(40)]
    rows[5] = {**rows[5], "prompt_tokens": 2**32}
    rows[33] = {**rows[33], "turn_count": 70_000}
    with pytest.raises(RowsRejected):
        store.insert("events", rows)
    rejected = store.insert_valid("events", rows, batch_size=16)
    assert [r.index for r in rejected] == [5, 33]
    assert store.count("events") == 38
    assert store.ping()


def test_one_insert_may_span_more_than_a_hundred_days(store: Store) -> None:
    """ClickHouse refuses an INSERT touching more than 100 partitions; a backfill is split."""
    rows = [event_row(event(f"r{i}", days=i)) for i in range(110)]
    store.insert("events", rows)
    assert store.count("events") == 110
    assert len(store.partitions("events")) == 110


def test_lookups_of_long_ids_stay_under_the_query_size_limit(store: Store) -> None:
    """600 ids of 512 characters are ~300 KiB of SQL: one IN list would exceed the server's
    256 KiB `max_query_size` and fail on every retry."""
    ids = [f"{i:05d}" + "é" * 507 for i in range(600)]
    store.insert("events", [event_row(event(rid)) for rid in ids[::50]])
    assert len(event_identities(store, ids)) == 12
    assert account_states(store, "volume", ids) == {}


def test_the_first_write_of_a_request_id_wins_whatever_the_insert_order(store: Store) -> None:
    first = event_row(event("r1", "acct-a", "original"), source="kafka:t/0", ingested_ms=1_000)
    later = event_row(event("r1", "acct-b", "rewritten"), source="http", ingested_ms=2_000)
    other_first = event_row(event("r2", "acct-a", "original"), ingested_ms=1_000)
    other_later = event_row(event("r2", "acct-b", "rewritten"), ingested_ms=2_000)
    store.insert("events", [first])
    store.insert("events", [later, other_later])  # r2: the later write lands first
    store.insert("events", [other_first])
    rows = store.query(
        "SELECT request_id, account_id, prompt_text FROM {db}.events FINAL ORDER BY request_id"
    )
    assert rows == [
        {"request_id": "r1", "account_id": "acct-a", "prompt_text": "original"},
        {"request_id": "r2", "account_id": "acct-a", "prompt_text": "original"},
    ]
    store.execute("OPTIMIZE TABLE {db}.events FINAL")  # after the merge too
    assert store.query("SELECT account_id FROM {db}.events") == [{"account_id": "acct-a"}] * 2
    (identity,) = event_identities(store, ["r1"])
    assert identity["content_hash"] == event("r1", "acct-a", "original").content_hash
    assert (identity["source"], identity["account_id"]) == ("kafka:t/0", "acct-a")


def test_migration_5_adds_the_content_hash_to_an_existing_events_table(store: Store) -> None:
    """A database of the release before content hashes: its events keep "" and stay readable,
    and new rows get their hash."""
    store.execute("DROP DATABASE {db}")
    assert store.migrate(upto=4) == [1, 2, 3, 4]
    old = {k: v for k, v in event_row(event("old")).items() if k in EVENTS_V1.column_types}
    store._insert_rows(EVENTS_V1, complete_rows(EVENTS_V1, [old]))
    assert store.migrate(upto=5) == [5]
    store.insert("events", [event_row(event("new"))])
    rows = store.query("SELECT request_id, content_hash FROM {db}.events FINAL ORDER BY request_id")
    assert rows == [
        {"request_id": "new", "content_hash": event("new").content_hash},
        {"request_id": "old", "content_hash": ""},
    ]
    columns = store.query(
        "SELECT name FROM system.columns WHERE database = %(db)s AND table = 'events'",
        {"db": store.database},
    )
    assert [c["name"] for c in columns] == EVENTS.column_names


def checkpoint_row(account: str, seen: int) -> dict:
    state = AccountState(account, "extraction", seen, {"detector": {"seen": seen}}, 1_000 + seen)
    return account_state_row(state)


def test_migration_9_rebuilds_account_state_in_small_granules_keeping_each_latest_state(
    store: Store,
) -> None:
    """A database of the release before: its checkpoints (several versions of some) come
    through the rebuild as their latest versions, and the table now has 8-row granules."""
    store.execute("DROP DATABASE {db}")
    assert store.migrate(upto=8) == [1, 2, 3, 4, 5, 6, 7, 8]
    rows = [checkpoint_row(f"acct-{i}", seen) for i in range(30) for seen in (1, 2 + i % 3)]
    store._insert_rows(ACCOUNT_STATE_V1, complete_rows(ACCOUNT_STATE_V1, rows))
    (before,) = store.query("SHOW CREATE TABLE {db}.account_state")
    assert not re.search(r"index_granularity = 8\b", before["statement"])
    assert store.migrate() == [9]
    (after,) = store.query("SHOW CREATE TABLE {db}.account_state")
    assert re.search(r"index_granularity = 8\b", after["statement"])
    saved = account_states(store, "extraction", [f"acct-{i}" for i in range(31)])
    assert {a: s.requests_seen for a, s in saved.items()} == {
        f"acct-{i}": 2 + i % 3 for i in range(30)
    }
    names = store.query(
        "SELECT name FROM system.tables WHERE database = %(db)s", {"db": store.database}
    )
    assert not [n["name"] for n in names if n["name"].startswith("account_state_")]
