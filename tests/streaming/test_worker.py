"""The Kafka worker against the real broker and the real ClickHouse 18.16 server."""

from __future__ import annotations

import os
import random
import subprocess
import time
from pathlib import Path

import httpx
import orjson
import pytest

from bench.deployment import consumed, free_port
from streaming.kafka import make_producer
from streaming.malformed import interleave_malformed
from tests.conftest import KAFKA_BOOTSTRAP, SCRIPT_ENV
from tests.streaming.worker_harness import ROOT, WorkerRun, real_prompt_lines

pytestmark = pytest.mark.integration
EVENTS = 20_000


@pytest.fixture
def run(tmp_path: Path):
    deployment = WorkerRun(tmp_path)
    yield deployment
    deployment.close()


@pytest.fixture(scope="module")
def lines() -> list[bytes]:
    return real_prompt_lines(EVENTS)


def assert_exactly_once(run: WorkerRun, expected: int) -> None:
    assert run.count("events") == expected
    distinct = run.store.query("SELECT uniqExact(request_id) AS n FROM {db}.events")
    assert distinct == [{"n": expected}]
    # Detector state counted every event once: replays after crashes were not re-counted.
    seen = run.store.query("SELECT sum(requests_seen) AS n FROM {db}.account_state FINAL")
    assert seen == [{"n": expected}]


def test_every_event_is_stored_once_with_verdicts(run: WorkerRun, lines: list[bytes]) -> None:
    run.produce(lines)
    run.start_worker(metrics_port=19464)
    run.wait_for(lambda: run.count("events") == EVENTS, 240, "all events stored")
    run.wait_for(run.committed_equals_end, 30, "offsets committed")
    metrics = httpx.get("http://127.0.0.1:19464/metrics", timeout=5).text
    assert f"distillguard_events_consumed_total {float(EVENTS)}" in metrics
    assert "distillguard_batch_seconds_count" in metrics
    assert "distillguard_consumer_lag 0.0" in metrics or "distillguard_consumer_lag" in metrics
    health = httpx.get("http://127.0.0.1:19464/healthz", timeout=5).json()
    assert health["status"] == "ok" and health["role"] == "worker"
    assert run.stop_all() == [0]  # SIGTERM: graceful
    assert "finishing the batch in flight" in run.logs()
    assert_exactly_once(run, EVENTS)
    accounts = {orjson.loads(line)["account_id"] for line in lines}
    with_verdicts = run.store.query("SELECT uniqExact(account_id) AS n FROM {db}.verdicts FINAL")
    assert with_verdicts == [{"n": len(accounts)}]


def test_kill_9_three_times_loses_and_duplicates_nothing(
    run: WorkerRun, lines: list[bytes]
) -> None:
    run.produce(lines)
    rng = random.Random(42)
    for kill_after in sorted(rng.sample(range(2_000, EVENTS - 2_000), 3)):
        worker = run.start_worker()
        run.wait_for(lambda n=kill_after: run.count("events") >= n, 240, f"{kill_after} events")
        worker.kill()
        worker.wait()
    run.start_worker()
    run.wait_for(lambda: run.count("events") == EVENTS, 240, "all events after kills")
    run.wait_for(run.committed_equals_end, 60, "offsets committed")
    run.stop_all()
    assert_exactly_once(run, EVENTS)


@pytest.mark.serial  # stops the ClickHouse server every other test is using
def test_clickhouse_outage_of_30_s_loses_nothing(run: WorkerRun, lines: list[bytes]) -> None:
    run.produce(lines)
    run.start_worker()
    run.wait_for(lambda: run.count("events") >= 3_000, 240, "3000 events before the outage")
    env = {**os.environ, **SCRIPT_ENV}
    subprocess.run([str(ROOT / "scripts/clickhouse-down")], check=True, env=env)
    try:
        time.sleep(30)
    finally:
        up = [str(ROOT / "scripts/clickhouse-up")]
        subprocess.run(up, check=True, stdout=subprocess.DEVNULL, env=env)
    run.wait_for(lambda: run.count("events") == EVENTS, 240, "all events after the outage")
    run.wait_for(run.committed_equals_end, 60, "offsets committed")
    assert run.stop_all() == [0]
    logs = run.logs()
    assert logs.count("sinks unavailable") == 1, logs
    assert logs.count("sinks back after") == 1, logs
    assert_exactly_once(run, EVENTS)


def test_malformed_messages_go_to_the_dlq_topic_and_table(run: WorkerRun) -> None:
    good = real_prompt_lines(5_000, seed=9)
    mixed, _ = interleave_malformed(good, 1_000, seed=4)
    run.produce(mixed)
    # Three valid events keyed by something else than their account: counted and warned about.
    producer = make_producer(KAFKA_BOOTSTRAP)
    for index, key in enumerate((b"gateway-7", b"gateway-7", None)):
        event = {**orjson.loads(good[index]), "request_id": f"miskeyed-{index}"}
        producer.send(run.topic, key=key, value=orjson.dumps(event))
    producer.close()
    port = free_port()
    run.start_worker(metrics_port=port)
    run.wait_for(lambda: run.count("dead_letters") == 1_000, 240, "1000 dead letters")
    run.wait_for(lambda: run.count("events") == 5_003, 120, "5003 good events")
    metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    assert "distillguard_miskeyed_messages_total 3.0" in metrics
    assert "keyed by something other than their account_id" in run.logs()
    messages = run.dlq_messages(expected=1_000)
    assert len({m.key for m in messages}) == 1_000
    for message in messages[:50]:
        letter = orjson.loads(message.value)
        assert letter["reason"] and letter["source"].startswith("kafka:")
        assert dict(message.headers)["reason"] in {
            b"invalid_json",
            b"invalid_event",
            b"empty",
            b"not_an_object",
            b"invalid_utf8",
        }
    reasons = run.store.query(
        "SELECT splitByChar(':', reason)[1] AS kind, count() AS n FROM {db}.dead_letters FINAL "
        "GROUP BY kind ORDER BY kind"
    )
    assert sum(r["n"] for r in reasons) == 1_000 and len(reasons) >= 4
    assert run.stop_all() == [0]


def test_two_workers_split_the_partitions(run: WorkerRun, lines: list[bytes]) -> None:
    first, second = run.start_worker(), run.start_worker()
    time.sleep(8)  # both join the group before traffic arrives
    run.produce(lines)
    run.wait_for(lambda: run.count("events") == EVENTS, 240, "all events with two workers")
    run.wait_for(run.committed_equals_end, 60, "offsets committed")
    assert run.stop_all() == [0, 0]
    counts = []
    for process in (first, second):
        text = Path(process.log_path).read_text()
        assert "partitions assigned: kafka:" in text
        counts.append(consumed(text))
    assert min(counts) > 0 and sum(counts) == EVENTS
    assert_exactly_once(run, EVENTS)
