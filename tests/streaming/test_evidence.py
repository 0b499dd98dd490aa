"""Hostile input through the pipeline on the embedded store (issue 15): one bad event never costs
its batch, a failed flush never poisons the next one, and events are append-only evidence (the
first write of a request id wins; identical resends are not counted; conflicts are dead
letters). The Kafka worker's version of this is in test_worker_poison.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from kafka.errors import KafkaTimeoutError, MessageSizeTooLargeError
from typer.testing import CliRunner

from core.batch import Batch
from core.events import DeadLetter, Event, parse_event
from core.settings import get_settings
from detectors.volume import VolumeDetector
from services.ingest import HttpOffsets, PipelineIngestor
from storage import EmbeddedClickHouse, Store, StoreError
from storage.base import RowsRejected, complete_rows
from storage.rows import event_row
from storage.schema import EVENTS_V1
from streaming.pipeline import Pipeline
from streaming.sinks import BufferedSink, StoreSink, dlq_value, is_transient
from streaming.sources import records_from_lines
from tests.conftest import drop_database, unique_database

T0 = 1_795_000_000_000


def line(i: int, account: str = "acct", prompt: str | None = None, **fields: object) -> bytes:
    document = {
        "request_id": f"r{i}",
        "account_id": account,
        "timestamp": T0 + i * 1000,
        "prompt": prompt or f"question {i}",
    }
    return orjson.dumps(document | fields)


def deep(i: int, depth: int = 300) -> bytes:
    """An event whose params nest `depth` levels (deeper than orjson writes: built as text)."""
    return line(i, params={"x": "@"}).replace(b'"@"', b'{"x":' * depth + b"1" + b"}" * depth)


POISON = {
    "tokens_over_uint32": lambda i: line(i, prompt_tokens=2**32),
    "params_depth_300": lambda i: deep(i, 300),
    "params_depth_1000": lambda i: deep(i, 1000),
    "temperature_nan": lambda i: line(i, params={"temperature": "nan"}),
    "seed_over_64_bits": lambda i: line(i, params={"seed": str(2**64)}),
}


def poisoned(good: int = 50) -> tuple[list[bytes], list[int]]:
    """`good` valid lines with each poison kind in between; the poison positions."""
    lines = [line(i) for i in range(good)]
    positions = []
    for k, make in enumerate(POISON.values()):
        position = 7 + 9 * k
        lines.insert(position, make(1000 + k))
        positions.append(position)
    return lines, positions


def pipeline_on(store: Store, *sinks: BufferedSink, embedder=None) -> Pipeline:
    return Pipeline(
        VolumeDetector(threshold=50), [StoreSink(store), *sinks], store=store, embedder=embedder
    )


def requests_seen(store: Store) -> int:
    rows = store.query("SELECT sum(requests_seen) AS n FROM {db}.account_state FINAL")
    return int(rows[0]["n"])


def stored(store: Store) -> list[dict]:
    return store.query(
        "SELECT request_id, account_id, prompt_text, source, source_offset"
        " FROM {db}.events FINAL ORDER BY request_id"
    )


# --- finding 1: one bad value stops the pipeline ----------------------------------------------


def test_poison_events_are_dead_letters_and_the_rest_of_the_batch_is_stored(embedded) -> None:
    lines, positions = poisoned()
    pipeline = pipeline_on(embedded)
    batch = pipeline.process(records_from_lines(lines, "file:t.jsonl"))
    pipeline.checkpoint()
    assert len(batch.events) == 50 and embedded.count("events") == 50
    assert sorted(d.offset for d in batch.dead_letters) == positions
    reasons = embedded.query(
        "SELECT source_offset, reason FROM {db}.dead_letters FINAL ORDER BY source_offset"
    )
    assert [r["source_offset"] for r in reasons] == positions
    assert reasons[0]["reason"].startswith("invalid_event: prompt_tokens")
    assert reasons[1]["reason"] == "too_deep: nesting 302 exceeds 64"
    assert reasons[2]["reason"] == "too_deep: nesting 1002 exceeds 64"
    assert requests_seen(embedded) == 50


def nan_for_poison(texts: list[str]) -> list[list[float]]:
    """An embedder that returns a NaN vector for one prompt: a value only the store refuses."""
    return [[float("nan")] if "poison" in t else [0.5, 0.25] for t in texts]


def test_a_row_the_store_refuses_at_flush_is_dead_lettered_alone(embedded) -> None:
    lines = [line(i, prompt="poison" if i == 4 else None) for i in range(10)]
    pipeline = pipeline_on(embedded, embedder=nan_for_poison)
    pipeline.process(records_from_lines(lines, "kafka:t/0"))
    pipeline.checkpoint()  # does not raise: the refused row became a dead letter
    assert embedded.count("events") == 9
    (letter,) = embedded.query("SELECT request_id, reason, raw FROM {db}.dead_letters FINAL")
    assert letter["request_id"] == "r4" and letter["raw"] == lines[4].decode()
    assert letter["reason"].startswith("unstorable: embedding: element nan")
    pipeline.process(records_from_lines([line(20)], "kafka:t/0", start=10))
    pipeline.checkpoint()  # the next batch is not held up
    assert embedded.count("events") == 10


class Flaky(BufferedSink):
    """A sink that fails its next flushes with the errors given, then writes."""

    name = "flaky"

    def __init__(self, *errors: Exception) -> None:
        super().__init__()
        self.errors = list(errors)
        self.written: list[Batch] = []

    def _write(self, batch: Batch) -> None:
        if self.errors:
            raise self.errors.pop(0)
        self.written.append(batch)


def letter(n: int) -> Batch:
    return Batch(dead_letters=[DeadLetter.from_bytes(b"x", "empty: x", "t", n)])


def test_a_flush_failing_on_the_store_keeps_its_batch_and_one_failing_on_data_drops_it() -> None:
    sink = Flaky(StoreError("server down"), ValueError("bad value"))
    sink.write(letter(1))
    with pytest.raises(StoreError):
        sink.flush()  # unavailable: kept for the retry
    sink.write(letter(2))
    with pytest.raises(ValueError):
        sink.flush()  # the data: dropped, or every later flush would fail the same way
    sink.write(letter(3))
    sink.flush()
    assert [[d.offset for d in b.dead_letters] for b in sink.written] == [[3]]


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (StoreError("connection refused"), True),
        (OSError("disk full"), True),
        (KafkaTimeoutError(), True),
        (RowsRejected("events: value too large"), False),
        (MessageSizeTooLargeError(), False),
        (TypeError("a bug"), False),
    ],
)
def test_only_unavailability_is_worth_retrying(error: Exception, transient: bool) -> None:
    assert is_transient(error) is transient


def test_a_failed_flush_never_poisons_http_ingest(embedded) -> None:
    """The reported failure: after one bad batch every later request failed until restart."""
    flaky = Flaky(TypeError("a bug in a sink"))
    ingestor = PipelineIngestor(pipeline_on(embedded, flaky))
    with pytest.raises(TypeError):
        ingestor.ingest([line(1)])
    result = ingestor.ingest([line(2), line(3)])
    assert result.accepted == 2 and not result.dead_letters
    assert len(flaky.written) == 1 and len(flaky.written[0].events) == 2


# --- finding 2: evidence can be overwritten ---------------------------------------------------


def test_an_identical_resend_is_neither_counted_nor_written_again(embedded) -> None:
    lines = [line(i) for i in range(30)]
    first = pipeline_on(embedded)
    batch = first.process(records_from_lines(lines + lines[:5], "http", start=100))
    first.checkpoint()
    assert (len(batch.events), batch.duplicates) == (30, 5)  # repeats inside one batch
    again = first.process(records_from_lines(lines, "http", start=500))
    first.checkpoint()
    assert (len(again.events), again.duplicates, again.replayed) == (0, 30, 0)
    reordered = [orjson.dumps(dict(reversed(json.loads(x).items()))) for x in lines[:10]]
    restarted = pipeline_on(embedded)  # a new process: the store answers
    later = restarted.process(records_from_lines(reordered, "http", start=900))
    restarted.checkpoint()
    assert (len(later.events), later.duplicates, later.dead_letters) == (0, 10, [])
    assert embedded.count("events") == 30
    assert embedded.count("events", final=False) == 30  # not even rewritten
    assert requests_seen(embedded) == 30
    assert {r["source_offset"] for r in stored(embedded)} == set(range(100, 130))


def test_a_conflicting_write_is_a_dead_letter_and_the_first_write_stays(embedded) -> None:
    pipeline = pipeline_on(embedded)
    originals = [line(i) for i in range(5)]
    impostor = line(0, account="acct-impostor")
    rewritten = line(1, prompt="rewritten evidence")
    same_batch = pipeline.process(records_from_lines([*originals, impostor], "http", start=0))
    pipeline.checkpoint()
    later = pipeline_on(embedded).process(records_from_lines([impostor, rewritten], "http", 10))
    letters = same_batch.dead_letters + later.dead_letters
    assert [(d.request_id, d.offset) for d in letters] == [("r0", 5), ("r0", 10), ("r1", 11)]
    assert [d.reason for d in letters] == [
        "conflict: request_id already stored with another account",
        "conflict: request_id already stored with another account",
        "conflict: request_id already stored with different content",
    ]
    assert [d.original_bytes() for d in letters] == [impostor, impostor, rewritten]
    rows = stored(embedded)
    assert [(r["account_id"], r["prompt_text"]) for r in rows[:2]] == [
        ("acct", "question 0"),
        ("acct", "question 1"),
    ]
    assert requests_seen(embedded) == 5  # the impostor's account counted nothing


def test_a_record_redelivered_after_a_crash_is_counted_once(embedded) -> None:
    """Kafka redelivers what was not committed: a crash after the events were written but
    before the account states were. Same record, same position: still counted exactly once."""
    records = records_from_lines([line(i) for i in range(40)], "kafka:t/0")
    crashed = pipeline_on(embedded)
    crashed.process(records)
    crashed.sinks[0].flush()  # the events reach the store; the checkpoint never happens
    assert embedded.count("events") == 40 and embedded.count("account_state") == 0
    restarted = pipeline_on(embedded)
    batch = restarted.process(records)
    restarted.checkpoint()
    assert (len(batch.events), batch.duplicates, batch.replayed) == (40, 0, 0)
    assert requests_seen(embedded) == 40
    replayed = pipeline_on(embedded).process(records)  # redelivered once more, now counted
    assert (replayed.replayed, replayed.duplicates) == (40, 0)
    assert embedded.count("events") == 40


@pytest.fixture
def legacy_store(chdb_path: Path) -> Iterator[Store]:
    """A database of the release before content hashes, holding one event, then migrated."""
    store = EmbeddedClickHouse(chdb_path, database=unique_database())
    store.migrate(upto=4)
    event = parse_event(line(0), "http")
    assert isinstance(event, Event)
    old = {k: v for k, v in event_row(event, "http", 7).items() if k in EVENTS_V1.column_types}
    store._insert_rows(EVENTS_V1, complete_rows(EVENTS_V1, [old]))
    store.migrate()
    yield store
    drop_database(store)


def test_events_stored_before_content_hashes_are_still_recognised(legacy_store: Store) -> None:
    pipeline = pipeline_on(legacy_store)
    batch = pipeline.process(
        records_from_lines([line(0), line(0, prompt="rewritten")], "http", start=50)
    )
    assert batch.duplicates == 1 and not batch.events
    (conflict,) = batch.dead_letters
    assert conflict.reason == "conflict: request_id already stored with different content"


def test_http_ingest_in_process_resent_three_times_counts_once(embedded) -> None:
    """The reported failure: a batch posted three times read as 9 requests."""
    ingestor = PipelineIngestor(pipeline_on(embedded))
    lines = [line(0), POISON["tokens_over_uint32"](100), line(1), deep(101), line(2)]
    results = [ingestor.ingest(lines) for _ in range(3)]
    assert [(r.accepted, r.duplicates) for r in results] == [(3, 0), (3, 3), (3, 3)]
    assert [d["index"] for r in results for d in r.dead_letters] == [1, 3] * 3
    conflict = ingestor.ingest([line(2, account="acct-impostor"), line(9)])
    assert conflict.accepted == 1 and conflict.dead_letters[0]["index"] == 0
    assert conflict.dead_letters[0]["reason"].startswith("conflict:")
    assert embedded.count("events") == 4 and requests_seen(embedded) == 4


def test_http_batches_never_share_stream_positions() -> None:
    offsets = HttpOffsets()
    starts = [offsets.take(1000) for _ in range(50)]
    assert all(b - a >= 1000 for a, b in zip(starts, starts[1:], strict=False))


# --- entry point: `distillguard replay` -------------------------------------------------------


def test_replay_with_poison_lines_stores_the_good_ones_and_exits_0(
    tmp_path: Path, chdb_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from distillguard.cli import app

    lines, positions = poisoned()
    log = tmp_path / "requests.jsonl"
    log.write_bytes(b"\n".join(lines) + b"\n")
    data = chdb_path.parent / "replay-poison"
    monkeypatch.setenv("DG_DATA_DIR", str(data))
    monkeypatch.setenv("DG_DATABASE", "replay_poison")
    monkeypatch.setenv("DG_DETECTOR", "volume")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["replay", str(log), "--batch-size", "16"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert "50 events, 5 dead letters" in result.output
    store = EmbeddedClickHouse(data / "chdb", database="replay_poison")
    try:
        assert store.count("events") == 50
        letters = store.query("SELECT source_offset, reason FROM {db}.dead_letters FINAL")
        assert sorted(r["source_offset"] for r in letters) == positions
        assert all(r["reason"].split(":")[0] in {"invalid_event", "too_deep"} for r in letters)
    finally:
        store.close()


@pytest.mark.parametrize("raw", [b"\x01" * 300_000, b"\xff\xfe" * 600_000, b'"' * 1_000_000])
def test_a_dead_letter_always_fits_one_dlq_message(raw: bytes) -> None:
    """Escaping makes 300 KB of control characters 1.8 MB of JSON: more than the broker takes,
    so the DLQ sink would fail (and the worker retry) forever."""
    letter = DeadLetter.from_bytes(raw, "invalid_json: x", "kafka:t/0", 5)
    document = orjson.loads(dlq_value(letter, 900_000))
    assert len(dlq_value(letter, 900_000)) <= 900_000
    assert document["raw_truncated"] is True and document["raw_length"] == len(letter.raw)
    kept = DeadLetter(**{**letter.model_dump(), "raw": document["raw"]}).original_bytes()
    assert raw.startswith(kept) and len(kept) > 100_000
    small = DeadLetter.from_bytes(b"{}", "invalid_event: x", "kafka:t/0", 6)
    assert orjson.loads(dlq_value(small)) == small.model_dump(mode="json")
