"""The Kafka worker never stalls on a message (issue 15): poison in the real topic, then 10,000
good events, through real `distillguard worker` processes into the real ClickHouse server."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from tests.streaming.worker_harness import WorkerRun

pytestmark = pytest.mark.integration
GOOD = 10_000
ACCOUNTS = 200
T0 = 1_795_000_000_000


def good(i: int, prompt: str | None = None) -> bytes:
    return orjson.dumps(
        {
            "request_id": f"good-{i}",
            "account_id": f"acct-{i % ACCOUNTS}",
            "timestamp": T0 + i * 100,
            "prompt": prompt or f"question number {i}",
        }
    )


# Same account as good-0, so each lands in the partition ahead of that account's good events.
POISON = {
    "poison-uint32": orjson.dumps(
        {
            "request_id": "poison-uint32",
            "account_id": "acct-0",
            "timestamp": T0,
            "prompt": "p",
            "prompt_tokens": 2**32,
        }
    ),
    "poison-deep": (
        b'{"request_id": "poison-deep", "account_id": "acct-0", "timestamp": 1795000000000,'
        b' "prompt": "p", "params": {"extra": ' + b'{"x":' * 300 + b"1" + b"}" * 300 + b"}}"
    ),
    # Invalid JSON (raw control characters) of 300 KB: its dead letter escapes to 1.8 MB, more
    # than the broker takes in one message, and must not hold up the DLQ topic.
    "poison-escapes": b'{"request_id": "poison-escapes", "prompt": "' + b"\x01" * 300_000 + b'"}',
}


@pytest.fixture
def run(tmp_path: Path):
    deployment = WorkerRun(tmp_path, extra_env={"DG_DETECTOR": "volume"})
    yield deployment
    deployment.close()


def test_poison_then_10000_good_events_never_stall_the_worker(run: WorkerRun) -> None:
    lines = list(POISON.values()) + [good(i) for i in range(GOOD)]
    # Resent identically (not counted again) and rewritten (a conflict), after the originals.
    lines += [good(i) for i in range(0, GOOD, 100)] + [good(7, prompt="rewritten evidence")]
    run.produce(lines)
    run.start_worker()
    run.wait_for(lambda: run.count("events") == GOOD, 240, f"{GOOD} good events stored")
    run.wait_for(lambda: run.count("dead_letters") == 4, 60, "4 dead letters")
    run.wait_for(run.committed_equals_end, 60, "consumer lag back to zero")
    assert run.stop_all() == [0]

    letters = run.store.query(
        "SELECT request_id, reason, raw FROM {db}.dead_letters FINAL ORDER BY request_id"
    )
    assert [r["request_id"] for r in letters] == ["", "good-7", "poison-deep", "poison-uint32"]
    reasons = [r["reason"] for r in letters]
    assert reasons[0].startswith("invalid_json")
    assert letters[0]["raw"] == POISON["poison-escapes"].decode()  # the table keeps it whole
    assert reasons[1] == "conflict: request_id already stored with different content"
    assert reasons[2] == "too_deep: nesting 302 exceeds 64"
    assert reasons[3].startswith("invalid_event: prompt_tokens")
    topic = [orjson.loads(m.value) for m in run.dlq_messages(expected=4)]
    assert sorted(d["reason"] for d in topic) == sorted(reasons)
    assert POISON["poison-uint32"].decode() in {d["raw"] for d in topic}
    (cut,) = [d for d in topic if d.get("raw_truncated")]
    assert cut["raw_length"] == len(POISON["poison-escapes"])
    assert POISON["poison-escapes"].decode().startswith(cut["raw"])

    seen = run.store.query("SELECT sum(requests_seen) AS n FROM {db}.account_state FINAL")
    assert seen == [{"n": GOOD}]  # resends were not counted again
    (row,) = run.store.query(
        "SELECT account_id, prompt_text FROM {db}.events FINAL WHERE request_id = 'good-7'"
    )
    assert row == {"account_id": "acct-7", "prompt_text": "question number 7"}
    assert run.count("events") == GOOD
    assert run.store.count("events", final=False) == GOOD  # resends were not rewritten
