"""The store contract: every backend passes the same tests with the same SQL."""

from __future__ import annotations

import random
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from core.events import DeadLetter, Event, parse_event
from storage import EmbeddedClickHouse, Store, StoreError, queries
from storage.rows import dead_letter_row, event_row, stored_event
from storage.schema import MIGRATIONS, TABLES

HOSTILE = "'; DROP TABLE verdicts; --"
STRING_SAMPLES = ["ascii", "ünïcødé ✓", "quote ' and \\ backslash", HOSTILE, "nul\x00byte"]
DAY = datetime(2026, 11, 27, 12, 30, 15, tzinfo=UTC)


def sample_value(ch_type: str, rng: random.Random, index: int) -> object:
    """A non-default value of a column type, exactly representable so round-trips compare equal."""
    if ch_type.startswith("Nullable("):
        return sample_value(ch_type[9:-1], rng, index)
    if ch_type == "Array(String)":
        return [f"m{index}-{i}" for i in range(rng.randint(1, 4))]
    if ch_type == "Array(Float32)":
        return [rng.randint(-64, 64) / 8 for _ in range(8)]
    if ch_type == "Array(UInt64)":
        return [rng.randrange(2**64) for _ in range(16)]
    if ch_type == "String":
        return rng.choice(STRING_SAMPLES) + f"#{index}"
    if ch_type == "DateTime":
        return int((DAY + timedelta(days=index % 3, seconds=index)).timestamp())
    if ch_type.startswith("Float"):
        return rng.randint(0, 1000) / 4
    if ch_type == "Int64":
        return rng.randint(-(2**62), 2**62)
    bits = int(ch_type.removeprefix("UInt"))
    return rng.randrange(1, 2**bits)


def sample_rows(table_name: str, count: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    table = TABLES[table_name]
    return [
        {name: sample_value(ch_type, rng, i) for name, ch_type in table.columns}
        for i in range(count)
    ]


def read_all(store: Store, table_name: str) -> list[dict]:
    key = ", ".join(TABLES[table_name].order_by)
    return store.query(f"SELECT * FROM {store.table(table_name)} FINAL ORDER BY {key}")


def test_a_store_closes_when_its_with_block_ends(chdb_path: Path) -> None:
    """`with open_store(settings) as store:` (every CLI command): closed however it ends."""
    with EmbeddedClickHouse(chdb_path) as store:
        assert store.ping()
    assert store._closed
    with pytest.raises(RuntimeError, match="mid-command"), EmbeddedClickHouse(chdb_path) as failed:
        raise RuntimeError("mid-command")
    assert failed._closed


def test_migrations_are_recorded_and_idempotent(store: Store) -> None:
    assert store.applied_migrations() == [m.number for m in MIGRATIONS]
    assert store.migrate() == []
    names = {
        r["name"]
        for r in store.query(
            "SELECT name FROM system.tables WHERE database = %(db)s", {"db": store.database}
        )
    }
    assert set(TABLES) <= names


def test_checkpoints_sit_in_small_index_granules(store: Store) -> None:
    """A checkpoint is read by account, and a read decompresses a whole granule of every part:
    `account_state` keeps 8 rows to a granule (on a cluster, its per-shard table does)."""
    names = {
        r["name"]
        for r in store.query(
            "SELECT name FROM system.tables WHERE database = %(db)s", {"db": store.database}
        )
    }
    table = "account_state_local" if "account_state_local" in names else "account_state"
    (row,) = store.query(f"SHOW CREATE TABLE {{db}}.{table}")
    assert re.search(r"index_granularity = 8\b", row["statement"])
    (events,) = store.query("SHOW CREATE TABLE {db}.events")
    assert not re.search(r"index_granularity = 8\b", events["statement"])


@pytest.mark.parametrize("table_name", sorted(set(TABLES) - {"schema_migrations"}))
def test_every_table_round_trips(store: Store, table_name: str) -> None:
    rows = sample_rows(table_name, 25, seed=len(table_name))
    assert store.insert(table_name, rows) == 25
    key = TABLES[table_name].order_by
    expected = sorted(rows, key=lambda r: tuple(r[k] for k in key))
    assert read_all(store, table_name) == expected


def test_omitted_columns_take_defaults(store: Store) -> None:
    store.insert("verdicts", [{"verdict_id": "v", "account_id": "a", "verdict_time": DAY}])
    (row,) = read_all(store, "verdicts")
    assert row["label"] == "" and row["score"] == 0.0 and row["cluster_id"] == ""
    assert row["verdict_time"] == int(DAY.timestamp())


def test_unknown_column_is_an_error_not_silence(store: Store) -> None:
    with pytest.raises(StoreError, match="unknown columns"):
        store.insert("verdicts", [{"verdict_id": "v", "nonsense": 1}])


def _events(count: int, days: int = 1) -> list[Event]:
    events = []
    for i in range(count):
        ts = DAY + timedelta(days=i % days, milliseconds=i)
        raw = (
            f'{{"request_id": "req-{i}", "account_id": "acct-{i % 7}", '
            f'"timestamp": {int(ts.timestamp() * 1000)}, "prompt": "prompt {i}"}}'
        )
        event = parse_event(raw.encode(), "test")
        assert isinstance(event, Event)
        events.append(event)
    return events


def test_reinserting_the_same_request_ids_is_idempotent(store: Store) -> None:
    rows = [event_row(e, source="test", offset=i) for i, e in enumerate(_events(3000, days=2))]
    store.insert("events", rows, batch_size=1000)
    store.insert("events", rows[:1500], batch_size=700)
    store.insert("events", rows, batch_size=3000)
    assert store.count("events") == 3000
    assert store.count("events", final=False) >= 3000


def test_retention_drops_whole_days(store: Store) -> None:
    rows = [event_row(e) for e in _events(300, days=3)]
    store.insert("events", rows)
    assert store.partitions("events") == ["20261127", "20261128", "20261129"]
    dropped = store.drop_partitions_before("events", date(2026, 11, 29))
    assert dropped == ["20261127", "20261128"]
    assert store.partitions("events") == ["20261129"]
    assert store.count("events") == 100
    with pytest.raises(StoreError):
        store.drop_partitions_before("account_state", date(2026, 11, 29))


def test_hostile_strings_are_stored_verbatim_and_run_nothing(store: Store) -> None:
    nasty = [HOSTILE, "a\\'b", "tab\tnewline\nnul\x00end", "emoji 🙂 and 中文", "%(x)s {x:String}"]
    rows = [
        {"verdict_id": f"v{i}", "account_id": text, "label": text, "verdict_time": DAY}
        for i, text in enumerate(nasty)
    ]
    store.insert("verdicts", rows)
    for text in nasty:
        found = store.query(
            "SELECT account_id, label FROM {db}.verdicts FINAL WHERE account_id = %(account)s",
            {"account": text},
        )
        assert found == [{"account_id": text, "label": text}]
    assert store.count("verdicts") == len(nasty)  # the table still exists and holds them all


def test_events_and_dead_letters_from_the_parser(store: Store) -> None:
    event = parse_event(
        b'{"request_id":"r1","account_id":"acct","timestamp":"2026-11-27T10:00:00.250Z",'
        b'"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"hello"},'
        b'{"role":"user","content":"' + HOSTILE.encode() + b'"}],'
        b'"params":{"temperature":0,"logprobs":true},"client":{"ip":"10.0.0.1"},"tier":"gold"}',
        "test",
        offset=7,
    )
    assert isinstance(event, Event)
    letter = parse_event(b'\xff\xfe{"x":', "kafka:api-requests/0", offset=8)
    assert isinstance(letter, DeadLetter)
    store.insert("events", [event_row(event, source="test", offset=7)])
    store.insert("dead_letters", [dead_letter_row(letter)] * 2)
    (row,) = read_all(store, "events")
    assert row["prompt_text"] == HOSTILE and row["turn_count"] == 2
    assert row["event_ms"] == event.timestamp_ms and row["event_ms"] % 1000 == 250
    assert row["extra_json"] == '{"tier":"gold"}'
    assert row["params_json"] == '{"logprobs":true,"temperature":0.0}'
    (dead,) = read_all(store, "dead_letters")
    assert dead["raw_encoding"] == "base64" and dead["source_offset"] == 8
    restored = DeadLetter(**{**letter.model_dump(), "raw": dead["raw"]})
    assert restored.original_bytes() == b'\xff\xfe{"x":'


def _disposition(kind: str, subject: str, disposition: str, at_ms: int, **more: object) -> dict:
    return {
        "subject_kind": kind,
        "subject_id": subject,
        "disposition_id": f"{at_ms:013d}-{subject}",
        "disposition": disposition,
        "at_ms": at_ms,
        "at_time": at_ms // 1000,
        "actor": "analyst-1",
        **more,
    }


def test_dispositions_history_current_and_allowlist(store: Store) -> None:
    now = 1_800_000_000_000
    rows = [
        _disposition("account", "a", "false_positive", now - 5000, reason="honest power user"),
        _disposition("account", "a", "allowlisted", now - 4000, expires_ms=now + 60_000),
        _disposition("account", "b", "allowlisted", now - 3000, expires_ms=now - 1),  # expired
        _disposition("account", "c", "allowlisted", now - 2000, expires_ms=now + 60_000),
        _disposition("account", "c", "none", now - 1000),  # cleared
        _disposition("account", "d", "false_positive", now - 900, assignee="eve", note=HOSTILE),
        _disposition("cluster", "a", "confirmed_extraction", now - 800),  # same id, other kind
    ]
    store.insert("dispositions", rows)
    store.insert("dispositions", rows[:2])  # written twice: still one row each
    history = queries.disposition_history(store, "account", "a")
    assert [h["disposition"] for h in history] == ["allowlisted", "false_positive"]
    assert history[1]["reason"] == "honest power user"
    current = queries.current_dispositions(store)
    assert [(r["subject_kind"], r["subject_id"], r["disposition"]) for r in current] == [
        ("cluster", "a", "confirmed_extraction"),
        ("account", "d", "false_positive"),
        ("account", "c", "none"),
        ("account", "b", "allowlisted"),
        ("account", "a", "allowlisted"),
    ]
    assert current[1]["note"] == HOSTILE and current[1]["assignee"] == "eve"
    active = queries.current_dispositions(store, "allowlisted", active_at_ms=now)
    assert [r["subject_id"] for r in active] == ["a"]
    ids = ["a", "b", "c", "d", "nobody"]
    assert queries.allowlisted(store, "account", ids, now) == {"a"}
    assert queries.allowlisted(store, "account", ids, now + 60_000) == set()  # lapsed
    assert queries.allowlisted(store, "cluster", ids, now) == set()
    assert queries.false_positive_accounts(store) == ["d"]
    every = queries.every_disposition(store)  # oldest first, each change once
    assert [r["disposition_id"] for r in every] == [r["disposition_id"] for r in rows]
    chosen = queries.every_disposition(store, "false_positive", "account")
    assert [(r["subject_id"], r["note"]) for r in chosen] == [("a", ""), ("d", HOSTILE)]


def test_ranked_accounts_filter_by_the_disposition_in_force(store: Store) -> None:
    now = 1_800_000_000_000
    scores = {"a": 0.9, "b": 0.8, "c": 0.7, "d": 0.6, "e": 0.5, HOSTILE: 0.4}
    store.insert(
        "verdicts",
        [
            {
                "verdict_id": f"v-{a}",
                "account_id": a,
                "score": s,
                "label": "suspicious",
                "verdict_ms": now - 10_000,
                "verdict_time": DAY,
            }
            for a, s in scores.items()
        ],
    )
    store.insert(
        "dispositions",
        [
            _disposition("account", "a", "false_positive", now - 5000),
            _disposition("account", "b", "allowlisted", now - 3000, expires_ms=now + 60_000),
            _disposition("account", "c", "allowlisted", now - 3000, expires_ms=now - 1),  # lapsed
            _disposition("account", "d", "false_positive", now - 2000),
            _disposition("account", "d", "none", now - 1000),  # cleared
            _disposition("cluster", "e", "false_positive", now - 900),  # a campaign, not e
            _disposition("account", HOSTILE, "confirmed_extraction", now - 800),
        ],
    )

    def ranked(disposition: str | None, limit: int = 10, offset: int = 0) -> list[str]:
        page = queries.ranked_accounts(store, None, limit, offset, disposition, now_ms=now)
        return [r["account_id"] for r in page.rows]

    assert ranked(None) == list(scores)
    assert ranked("false_positive") == ["a"]
    assert ranked("allowlisted") == ["b"]
    assert ranked("confirmed_extraction") == [HOSTILE]
    assert ranked("none") == ["c", "d", "e"]
    assert ranked("none", limit=1, offset=1) == ["d"]  # pages in the database
    assert ranked(HOSTILE) == []  # not a disposition: nothing, not an error
    later = queries.ranked_accounts(store, "suspicious", 10, 0, "allowlisted", now + 60_000)
    assert later.rows == []  # the allowlist has lapsed by then


def test_stored_events_come_back_as_events(store: Store) -> None:
    events = _events(40)  # acct-0 .. acct-6
    store.insert("events", [event_row(e) for e in events])
    raw = parse_event(
        b'{"request_id":"r1","account_id":"acct-0","timestamp":1700000000000,'
        b'"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"hello"},'
        b'{"role":"user","content":"more"}],"params":{"temperature":0},"tier":"gold"}',
        "test",
    )
    assert isinstance(raw, Event)
    hashed = raw.model_copy(update={"request_id": "r2", "account_id": "acct-3"})
    store.insert("events", [event_row(raw), event_row(hashed, redact_policy="hash")])
    rows = list(queries.stored_events(store, ["acct-0", "acct-3"], page=3))
    expected = sorted(
        [e for e in events if e.account_id in ("acct-0", "acct-3")] + [raw, hashed],
        key=lambda e: (e.account_id, e.timestamp_ms, e.request_id),
    )
    assert [r["request_id"] for r in rows] == [e.request_id for e in expected]
    back = {r["request_id"]: stored_event(r) for r in rows}
    assert back.pop("r2") is None  # hashed at ingest: nothing to learn from
    restored = back.pop("r1")
    assert restored is not None and restored.prompt_text == "more" and restored.turn_count == 2
    assert restored.params.temperature == 0 and restored.extra_fields == {"tier": "gold"}
    for event in expected:
        if event.request_id in back:
            again = back[event.request_id]
            assert again is not None and again.prompt_text == event.prompt_text
            assert (again.account_id, again.timestamp) == (event.account_id, event.timestamp)
