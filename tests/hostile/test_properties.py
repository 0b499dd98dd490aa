"""Property-based hostile input (Hypothesis) through the three entry points: generated batches
of schema-valid events with any text, extreme in-range numbers and odd extras, mixed with broken
ones, identical resends and conflicting rewrites. Each batch: no 5xx, no valid event lost or
altered, every bad one dead-lettered with a reason, nothing counted twice."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from core.settings import Settings
from distillguard.wiring import build_api, store_pipeline
from services.auth import create_token
from storage import Store
from streaming.files import run_file
from tests.hostile.checks import Expected, eventually, verify
from tests.hostile.strategies import broken_line, valid_event
from tests.streaming.worker_harness import WorkerRun

DETECTION = {"detector": "volume", "embedding_tier": "off"}
# No shrinking: each example runs a pipeline and a store, so shrinking takes many minutes; a
# failure prints its reproduction blob instead.
RELAXED = settings(
    deadline=None,
    suppress_health_check=list(HealthCheck),
    print_blob=True,
    max_examples=25,
    phases=(Phase.explicit, Phase.reuse, Phase.generate),
)


PLACEHOLDER = b"hPREFIX-"  # each example gets its own prefix in its place (Hypothesis repeats)


@st.composite
def hostile_batch(draw: st.DrawFn) -> list[tuple[str, bytes]]:
    """(what it must become: valid, dead or conflict; the line), with `PLACEHOLDER` where the
    run's prefix goes."""
    prefix = PLACEHOLDER.decode()
    items: list[tuple[str, bytes]] = []
    valid: list[dict] = []
    for index in range(draw(st.integers(1, 12))):
        if draw(st.integers(0, 3)) == 0:
            items.append(("dead", draw(broken_line(prefix, index)).replace(b"\n", b" ")))
        else:
            document = draw(valid_event(prefix, index))
            valid.append(document)
            items.append(("valid", orjson.dumps(document)))
    if valid and draw(st.booleans()):  # an identical resend
        items.append(("valid", orjson.dumps(draw(st.sampled_from(valid)))))
    if valid and draw(st.booleans()):  # a rewrite of stored evidence
        rewritten = {**draw(st.sampled_from(valid)), "account_id": f"{prefix}impostor"}
        items.append(("conflict", orjson.dumps(rewritten)))
    return items


def materialise(items: list[tuple[str, bytes]]) -> tuple[str, list[bytes], Expected]:
    """A run of its own: (prefix, lines, what the store must hold afterwards)."""
    prefix = f"h{uuid.uuid4().hex[:10]}-"
    expected = Expected()
    lines = [line.replace(PLACEHOLDER, prefix.encode()) for _, line in items]
    for (outcome, _), line in zip(items, lines, strict=True):
        if outcome == "valid":
            expected.add_valid(line)
        elif outcome == "dead":
            expected.add_dead("generated", line)
        else:
            expected.conflicts.append(("rewrite", line))
    expected.first_pass = lines
    return prefix, lines, expected


@RELAXED
@given(batch=hostile_batch())
def test_replay(embedded: Store, tmp_path: Path, batch) -> None:
    """The code `distillguard replay` runs (a new pipeline each time, as a new command)."""
    prefix, lines, expected = materialise(batch)
    path = tmp_path / f"{prefix}.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    pipeline = store_pipeline(Settings(data_dir=tmp_path, **DETECTION), embedded)
    run_file(pipeline, path, batch_size=5, show_progress=False)
    verify(embedded, expected, scope=prefix)


@pytest.fixture
def http(embedded: Store, tmp_path: Path) -> Iterator[tuple[TestClient, str, Store]]:
    settings_ = Settings(data_dir=tmp_path, ingest_to="pipeline", **DETECTION)
    token = create_token(embedded, "ingest", "gateway")[0]
    with TestClient(build_api(settings_, embedded)) as client:
        yield client, token, embedded


@RELAXED
@given(batch=hostile_batch())
def test_http_ingest(http, batch) -> None:
    client, token, store = http
    prefix, lines, expected = materialise(batch)
    response = client.post(
        "/v1/events",
        content=b"\n".join(lines),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"},
    )
    assert response.status_code == 202, response.text[:500]
    assert response.json()["accepted"] + len(response.json()["dead_letters"]) == len(lines)
    verify(store, expected, scope=prefix)


@pytest.mark.integration
@settings(RELAXED, max_examples=8)
@given(batch=hostile_batch())
def test_kafka_worker(worker_run: WorkerRun, batch) -> None:
    """Raw messages into the real topic, one long-running worker, the real server."""
    prefix, lines, expected = materialise(batch)
    originals = [line for line in lines if line not in {c[1] for c in expected.conflicts}]
    worker_run.produce(originals)
    if len(originals) < len(lines):  # a rewrite must come after the original is stored
        first = Expected(stored=expected.stored, dead=expected.dead, first_pass=originals)
        eventually(lambda: verify(worker_run.store, first, scope=prefix), timeout_s=120)
        worker_run.produce([line for line in lines if line not in originals])
    eventually(lambda: verify(worker_run.store, expected, scope=prefix), timeout_s=120)
