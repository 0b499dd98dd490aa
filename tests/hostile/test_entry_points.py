"""The hostile-input catalogue through every entry point, each in two passes (the second resends
everything and brings the late conflicts): `distillguard replay` into the real ClickHouse server,
HTTP ingest on the embedded store, HTTP ingest into the real Kafka topic consumed by a real
worker, and raw messages straight into the topic. No 5xx, no valid event lost or altered,
every bad one dead-lettered with a reason and its bytes, nothing counted twice."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from core.settings import Settings
from distillguard.wiring import build_api, store_pipeline
from services.auth import create_token
from storage import ClickHouseServer, Store
from streaming.files import run_file
from tests.conftest import CLICKHOUSE_URL, KAFKA_BOOTSTRAP, drop_database, unique_database
from tests.hostile.catalogue import CATALOGUE, Entry, kinds_for
from tests.hostile.checks import Expected, eventually, expect, verify
from tests.streaming.worker_harness import WorkerRun

DETECTION = {"detector": "volume", "embedding_tier": "off"}  # delivery, not detection


def test_the_catalogue_holds_at_least_40_kinds() -> None:
    names = [kind.name for kind in CATALOGUE]
    assert len(set(names)) == len(names) >= 40
    assert {kind.outcome for kind in CATALOGUE} == {"stored", "dead", "resend", "conflict"}


def _expected(entry: Entry) -> Expected:
    return expect(kinds_for(entry), uuid.uuid4().hex[:8])


def _chunks(lines: list[bytes], size: int) -> Iterator[list[bytes]]:
    for start in range(0, len(lines), size):
        yield lines[start : start + size]


def _post_all(client: TestClient, token: str, lines: list[bytes]) -> int:
    """NDJSON bodies of 9 lines: never a 5xx, and every line accounted for in the answer;
    returns how many the API reported as resends."""
    duplicates = 0
    for chunk in _chunks(lines, 9):
        response = client.post(
            "/v1/events",
            content=b"\n".join(chunk),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"},
        )
        assert response.status_code == 202, response.text[:500]
        answer = response.json()
        assert answer["accepted"] + len(answer["dead_letters"]) == len(chunk)
        assert all(d["reason"] for d in answer["dead_letters"])
        duplicates += answer["duplicates"]
    return duplicates


@pytest.mark.integration
def test_replay_into_the_server(tmp_path: Path) -> None:
    expected = _expected("replay")
    store = ClickHouseServer(CLICKHOUSE_URL, database=unique_database())
    store.migrate()
    env = os.environ | {
        "DG_STORE": "server",
        "DG_CLICKHOUSE_URL": CLICKHOUSE_URL,
        "DG_DATABASE": store.database,
        "DG_DETECTOR": "volume",
        "DG_EMBEDDING_TIER": "off",
    }
    try:
        # two files, so the second pass is new to the offsets: only request ids can tell
        for name, lines in (("first", expected.first_pass), ("second", expected.second_pass)):
            path = tmp_path / f"{name}.jsonl"
            path.write_bytes(b"\n".join(lines) + b"\n")
            result = subprocess.run(
                [sys.executable, "-m", "distillguard.cli", "replay", str(path)]
                + ["--batch-size", "7"],
                capture_output=True,
                env=env,
                timeout=600,
            )
            assert result.returncode == 0, result.stderr[-3000:]
        verify(store, expected)
    finally:
        drop_database(store)


def test_http_ingest_on_the_embedded_store(embedded: Store, tmp_path: Path) -> None:
    expected = _expected("http")
    settings = Settings(data_dir=tmp_path, ingest_to="pipeline", **DETECTION)
    token = create_token(embedded, "ingest", "gateway")[0]
    with TestClient(build_api(settings, embedded)) as client:
        assert _post_all(client, token, expected.first_pass) == 1  # `identical_resend`
        # every stored event again, the conflicts' originals and the resend's copy included
        assert _post_all(client, token, expected.second_pass) == len(expected.stored) + 1
    verify(embedded, expected)


@pytest.mark.models
def test_the_default_detector_takes_every_kind(embedded: Store, tmp_path: Path) -> None:
    """The fused `extraction` detector with every prompt embedded (MiniLM): no hostile text or
    number makes a feature, the embedder or the campaign linker raise (a detector that raised
    would stop the worker on that message after every restart)."""
    expected = _expected("replay")
    settings = Settings(data_dir=tmp_path, detector="extraction", embedding_tier="full")
    for name, lines in (("first", expected.first_pass), ("second", expected.second_pass)):
        path = tmp_path / f"{name}.jsonl"
        path.write_bytes(b"\n".join(lines) + b"\n")
        run_file(store_pipeline(settings, embedded), path, batch_size=7, show_progress=False)
    verify(embedded, expected)


def _settle(run: WorkerRun, expected: Expected) -> None:
    """The worker has consumed everything, and what it stored is right."""
    eventually(lambda: verify(run.store, expected), timeout_s=180)
    eventually(lambda: _assert(run.committed_equals_end()), timeout_s=60)


def _assert(condition: bool) -> None:
    assert condition


@pytest.mark.integration
def test_http_ingest_through_kafka_and_the_worker(worker_run: WorkerRun, tmp_path: Path) -> None:
    expected = _expected("http_kafka")
    settings = Settings(
        store="server",
        clickhouse_url=CLICKHOUSE_URL,
        database=worker_run.database,
        kafka_bootstrap=KAFKA_BOOTSTRAP,
        topic=worker_run.topic,
        dlq_topic=worker_run.dlq_topic,
        ingest_to="kafka",
        data_dir=tmp_path,
        **DETECTION,
    )
    token = create_token(worker_run.store, "ingest", "gateway")[0]
    with TestClient(build_api(settings, worker_run.store)) as client:
        _post_all(client, token, expected.first_pass)
        # the late conflicts must come after the originals are stored, on any partition
        eventually(lambda: verify(worker_run.store, _without_late(expected)), timeout_s=180)
        _post_all(client, token, expected.second_pass)
    _settle(worker_run, expected)
    dead_in_topic = worker_run.dlq_messages(len(expected.dead))
    assert len({m.value for m in dead_in_topic}) >= len(expected.dead)


@pytest.mark.integration
def test_raw_messages_into_the_topic(worker_run: WorkerRun) -> None:
    expected = _expected("kafka")
    worker_run.produce(expected.first_pass)
    eventually(lambda: verify(worker_run.store, _without_late(expected)), timeout_s=180)
    worker_run.produce(expected.second_pass)
    _settle(worker_run, expected)
    dead_in_topic = worker_run.dlq_messages(len(expected.dead) + len(expected.conflicts))
    assert len(dead_in_topic) >= len(expected.dead) + len(expected.conflicts)


def _without_late(expected: Expected) -> Expected:
    """What the store holds after the first pass: the late conflicts not yet sent."""
    late = set(expected.later)
    return Expected(
        stored=expected.stored,
        dead=expected.dead,
        conflicts=[c for c in expected.conflicts if c[1] not in late],
        first_pass=expected.first_pass,
    )
