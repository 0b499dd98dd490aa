"""The pipeline on files and the embedded store: idempotent replays, resumable state, verdicts,
response fingerprints."""

from __future__ import annotations

import hashlib
from pathlib import Path

import orjson

from core.verdicts import Assessment, Verdict
from detectors.fingerprints import NUM_PERM, signature
from detectors.volume import VolumeDetector
from streaming.files import file_batches, run_file
from streaming.malformed import interleave_malformed
from streaming.pipeline import Pipeline
from streaming.sinks import StoreSink, VerdictFileSink
from streaming.sources import records_from_lines

HOUR_MS = 3_600_000


def request(i: int, account: str, ts_ms: int) -> bytes:
    return orjson.dumps(
        {"request_id": f"r{i}", "account_id": account, "timestamp": ts_ms, "prompt": f"q{i}"}
    )


def traffic(heavy: int = 300, light_accounts: int = 20, per_light: int = 10) -> list[bytes]:
    """One account far above the others' volume, all within the same hour."""
    lines, i, start = [], 0, 1_795_000_000_000
    for n in range(heavy):
        lines.append(request(i, "harvester", start + n * 1000))
        i += 1
    for a in range(light_accounts):
        for n in range(per_light):
            lines.append(request(i, f"user-{a}", start + n * 60_000 + a))
            i += 1
    return lines


def new_pipeline(store) -> Pipeline:
    return Pipeline(VolumeDetector(threshold=50), [StoreSink(store)], store=store)


def test_replaying_a_batch_changes_nothing(embedded) -> None:
    lines, _ = interleave_malformed(traffic(), 40, seed=1)
    records = records_from_lines(lines, "file:t.jsonl")
    pipeline = new_pipeline(embedded)
    first = pipeline.process(records)
    pipeline.checkpoint()
    again = pipeline.process(records)
    pipeline.checkpoint()
    assert (len(first.events), len(first.dead_letters)) == (500, 40)
    assert again.replayed == 500 and again.verdicts == []
    assert embedded.count("events") == 500
    assert embedded.count("dead_letters") == 40
    assert pipeline.cursors["harvester"].requests_seen == 300


def test_a_restarted_pipeline_resumes_from_the_checkpoint(embedded) -> None:
    records = records_from_lines(traffic(), "file:t.jsonl")
    first = new_pipeline(embedded)
    before = first.process(records[:60])
    first.checkpoint()
    assert before.verdicts[-1].label == "suspicious"  # 60 requests: above 50, below 75
    restarted = new_pipeline(embedded)  # a new process: state comes from account_state
    result = restarted.process(records)  # at-least-once: the first 150 arrive again
    restarted.checkpoint()
    assert result.replayed == 60
    cursor = restarted.cursors["harvester"]
    assert cursor.requests_seen == 300
    flagged = [v for v in result.verdicts if v.account_id == "harvester"]
    assert [v.label for v in flagged] == ["extraction"]  # no repeat of its first verdict
    state = embedded.query(
        "SELECT requests_seen FROM {db}.account_state FINAL WHERE account_id = 'harvester'"
    )
    assert state == [{"requests_seen": 300}]


def test_forgetting_revoked_partitions_reloads_from_the_store(embedded) -> None:
    pipeline = new_pipeline(embedded)
    pipeline.process(records_from_lines(traffic(), "kafka:t/0"))
    pipeline.checkpoint()
    assert pipeline.forget_streams({"kafka:t/0"}) == 21
    assert "harvester" not in pipeline.cursors
    pipeline.process(
        records_from_lines(
            [request(9999, "harvester", 1_795_000_400_000)], "kafka:t/0", start=10_000
        )
    )
    assert pipeline.cursors["harvester"].requests_seen == 301


def test_responses_are_fingerprinted_at_ingest_before_redaction(embedded) -> None:
    responses = {
        "r0": "Paris is the capital of France, and it has been for centuries.",
        "r1": "",  # empty: no fingerprint
        "r2": "   \n ",  # blank: no fingerprint
        "r3": "Short answer.",  # two words: one shingle, still a fingerprint
        "r4": "Ünïcødé text — with punctuation! And a 'quote'; DROP TABLE x; --",
    }
    lines = [
        orjson.dumps(
            {
                "request_id": rid,
                "account_id": f"acct-{i % 2}",
                "timestamp": 1_795_000_000_000 + i * 1500,
                "prompt": f"q{i}",
                "response": text,
            }
        )
        for i, (rid, text) in enumerate(responses.items())
    ]
    lines.append(request(5, "acct-0", 1_795_000_009_000))  # no response field at all
    records = records_from_lines(lines, "file:t.jsonl")
    pipeline = Pipeline(
        VolumeDetector(threshold=50), [StoreSink(embedded, redact_policy="hash")], store=embedded
    )
    for _ in range(2):  # the replay writes the same rows again: still one per request
        pipeline.process(records)
        pipeline.checkpoint()
    assert embedded.count("events") == 6
    assert embedded.count("response_fingerprints") == 3
    rows = embedded.query(
        "SELECT request_id, account_id, event_time, response_hash, minhash "
        "FROM {db}.response_fingerprints FINAL ORDER BY request_id"
    )
    assert [r["request_id"] for r in rows] == ["r0", "r3", "r4"]
    for row in rows:
        text = responses[row["request_id"]]
        assert row["response_hash"] == hashlib.sha256(text.encode()).hexdigest()
        assert len(row["minhash"]) == NUM_PERM
        assert row["minhash"] == [int(v) for v in signature(text)]
    assert rows[0]["event_time"] == 1_795_000_000 and rows[0]["account_id"] == "acct-0"
    stored = embedded.query("SELECT response_text FROM {db}.events FINAL WHERE request_id = 'r0'")
    assert stored[0]["response_text"].startswith("sha256:")  # the events row kept only a hash


def test_verdicts_are_emitted_on_material_change_only(embedded) -> None:
    pipeline = new_pipeline(embedded)
    records = records_from_lines(traffic(), "file:t.jsonl")
    verdicts = []
    for start in range(0, len(records), 10):
        verdicts += pipeline.process(records[start : start + 10]).verdicts
    pipeline.checkpoint()
    harvester = [v for v in verdicts if v.account_id == "harvester"]
    labels = [v.label for v in harvester]
    assert labels[0] == "benign" and labels[-1] == "extraction" and "suspicious" in labels
    assert len(harvester) < 30  # not one per batch of 10
    assert [v.requests_seen for v in harvester] == sorted(v.requests_seen for v in harvester)
    light = [v for v in verdicts if v.account_id.startswith("user-")]
    assert {v.label for v in light} == {"benign"}
    assert embedded.count("verdicts") == len(verdicts)


def test_score_file_follows_the_verdict_schema(tmp_path: Path) -> None:
    log = tmp_path / "requests.jsonl"
    log.write_bytes(b"\n".join(traffic()) + b"\n")
    out = tmp_path / "verdicts.jsonl"
    sink = VerdictFileSink(out)
    totals = run_file(
        Pipeline(VolumeDetector(threshold=50), [sink]), log, batch_size=64, show_progress=False
    )
    sink.close()
    written = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert len(written) == len(totals.verdicts) > 0
    expected_keys = {
        "account_id",
        "cluster_id",
        "timestamp",
        "requests_seen",
        "score",
        "label",
        "reasons",
        "detector_version",
    }
    for document in written:
        assert set(document) == expected_keys
        Verdict.model_validate(document)
        assert set(document["reasons"][0]) == {"signal", "value", "contribution", "evidence"}
    assert any(d["label"] == "extraction" and d["account_id"] == "harvester" for d in written)


def test_calibration_puts_the_threshold_above_benign_peaks() -> None:
    from core.events import parse_event

    benign = [parse_event(line, "t") for line in traffic(heavy=0)]
    detector = VolumeDetector(target_fpr=0.001).fit(benign)
    assert detector.threshold == 11.0  # busiest benign hour is 10 requests, floor is 10
    assert detector.fitted_accounts_ == 20


class FlagLeftInTheBatch(VolumeDetector):
    """Every account reached `extraction` at its third new request and left it by the batch's
    end (what `ExtractionDetector.update_batch` reports as the assessment's `peak`)."""

    def update(self, account_id: str, events: list) -> Assessment:
        peak = Assessment(score=0.9, label="extraction", requests_at_label=3)
        return Assessment(score=0.1, label="benign", peak=peak)


def test_a_flag_left_within_one_batch_is_still_a_verdict(tmp_path: Path) -> None:
    """A live worker polling a few requests at a time would have emitted the flag, then the
    calm: so does one large batch, the flag dated by the request that reached it."""
    start = 1_795_000_000_000
    lines = [request(i, "burst", start + i * 1000) for i in range(10)]
    pipeline = Pipeline(FlagLeftInTheBatch(), [VerdictFileSink(tmp_path / "v.jsonl")])
    verdicts = pipeline.process(records_from_lines(lines, "file:t.jsonl")).verdicts
    assert [(v.label, v.requests_seen) for v in verdicts] == [("extraction", 3), ("benign", 10)]
    assert verdicts[0].timestamp.timestamp() * 1000 == start + 2000


def test_a_replay_cuts_its_batches_where_one_account_fills_its_share(tmp_path: Path) -> None:
    """A log replayed in batches of 100 still hands the pipeline at most five requests of one
    account at a time (what a live worker's polls hold), malformed lines counting for none."""
    start, lines = 1_795_000_000_000, []
    for i in range(12):
        lines += [request(2 * i, "busy", start + i), request(2 * i + 1, f"quiet-{i}", start + i)]
    lines.insert(3, b"{not json")
    path = tmp_path / "log.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    sizes = [len(records) for records, _ in file_batches(path, 100)]
    assert sizes == [10, 10, 5]  # busy's 5th and 10th requests end a batch; the rest follow
    assert [len(records) for records, _ in file_batches(path, 100, per_account=0)] == [25]
    assert [len(records) for records, _ in file_batches(path, 7, per_account=0)] == [7, 7, 7, 4]
