"""One campaign view, in process: the same traffic through one pipeline reading a time-ordered
file, and through several worker pipelines (each reading its partitions in long runs, publishing
profile updates) feeding one `CampaignView`, gives the same clusters and member labels."""

from __future__ import annotations

import random
import zlib
from collections.abc import Iterator

import orjson
import pytest

from core.batch import Batch
from core.events import Event
from core.records import SourceRecord
from detectors.campaigns import CampaignLinker
from detectors.campaigns.eventtime import EventTime
from detectors.campaigns.feed import decode
from detectors.fusion import ExtractionDetector
from detectors.fusion.campaigns import CampaignUpdate, CampaignView
from streaming.loop import run
from streaming.pipeline import Pipeline
from streaming.profiles import MemoryPublisher
from streaming.sources import Revoked
from students.actors import request_record
from tests.detectors.test_campaigns import campaign, honest, with_office

PARTITIONS = 4


class Collect:
    def __init__(self) -> None:
        self.batches: list[Batch] = []

    def write(self, batch: Batch) -> None:
        self.batches.append(batch)

    def flush(self) -> None:
        pass


class ListSource:
    def __init__(self, batches: list[list[SourceRecord]]) -> None:
        self._batches = batches

    def batches(self) -> Iterator[list[SourceRecord]]:
        yield from self._batches

    def commit(self) -> None:
        pass

    def on_revoked(self, callback: Revoked) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def calibration() -> dict:
    plans = sorted(honest(seed=101), key=lambda p: p.timestamp_ms)
    events = [Event.model_validate(request_record(p, f"cal-{i}")) for i, p in enumerate(plans)]
    detector = ExtractionDetector(linker=CampaignLinker(), tiered=False).fit(events)
    return orjson.loads(orjson.dumps(detector.calibration(), option=orjson.OPT_SERIALIZE_NUMPY))


@pytest.fixture(scope="module")
def lines() -> list[bytes]:
    plans = sorted(with_office(honest(seed=202)) + campaign(seed=7), key=lambda p: p.timestamp_ms)
    return [orjson.dumps(request_record(p, f"live-{i}")) for i, p in enumerate(plans)]


def detector(calibration: dict) -> ExtractionDetector:
    fresh = ExtractionDetector(linker=CampaignLinker(), tiered=False)
    fresh.load_calibration(calibration)
    return fresh


def account(line: bytes) -> str:
    return orjson.loads(line)["account_id"]


def final(update: CampaignUpdate) -> tuple[dict, dict]:
    clusters = {c.cluster_id: (tuple(c.members), c.label) for c in update.clusters}
    members = {m: (a.label, a.cluster_id) for m, a in update.members.items()}
    return clusters, members


def from_file(calibration: dict, lines: list[bytes]) -> tuple[dict, dict, list[Batch]]:
    """One pipeline over the time-ordered file (in-process linking), batches of 1000."""
    records = [SourceRecord(line, "file:live", i) for i, line in enumerate(lines)]
    sink = Collect()
    pipeline = Pipeline(detector(calibration), [sink])
    run(ListSource([records[i : i + 1000] for i in range(0, len(records), 1000)]), pipeline)
    view = pipeline.detector.campaign_view()  # type: ignore[attr-defined]
    return (*final(view.advance(final=True)), sink.batches)


def through_workers(calibration: dict, lines: list[bytes], workers: int, seed: int):
    """`workers` pipelines over PARTITIONS partitions read in long runs, publishing profile
    updates; one view links them (member windows read from the workers, as the linker role
    reads their checkpoints)."""
    partitions: list[list[SourceRecord]] = [[] for _ in range(PARTITIONS)]
    for line in lines:
        p = zlib.crc32(account(line).encode()) % PARTITIONS
        partitions[p].append(SourceRecord(line, f"kafka:t/{p}", len(partitions[p])))
    publishers = [MemoryPublisher() for _ in range(workers)]
    pipelines = [
        Pipeline(detector(calibration), [Collect()], publisher=publishers[w])
        for w in range(workers)
    ]

    def windows(members):
        found = {}
        for pipeline in pipelines:
            found.update(pipeline.detector.accounts)  # type: ignore[attr-defined]
        return found

    view = CampaignView(
        detector(calibration),
        windows,
        EventTime(streams=[f"kafka:t/{p}" for p in range(PARTITIONS)]),
    )
    rng = random.Random(seed)
    read = [0] * PARTITIONS
    while any(read[p] < len(partitions[p]) for p in range(PARTITIONS)):
        p = rng.choice([p for p in range(PARTITIONS) if read[p] < len(partitions[p])])
        run_length = rng.randint(300, 1500)
        records = partitions[p][read[p] : read[p] + run_length]
        read[p] += len(records)
        w = p % workers
        pipelines[w].process(records)
        pipelines[w].checkpoint()
        view.ingest(decode(k, v) for k, v in publishers[w].messages)  # type: ignore[misc]
        publishers[w].messages.clear()
        view.advance()
    return final(view.advance(final=True))


def test_a_file_and_three_workers_link_the_same(calibration, lines):
    """(1, 2 and 3 workers as separate processes on the real services: tests/streaming/
    test_linker.py.)"""
    clusters, members, batches = from_file(calibration, lines)
    campaign_members = [m for m in members if m.startswith("campaign-")]
    assert len(campaign_members) >= 30, clusters
    assert {label for label, _ in members.values()} & {"suspicious", "extraction"}
    assert through_workers(calibration, lines, 3, seed=3) == (clusters, members)
    # The file run's own output reached the sinks: the finishing step scored every campaign.
    written = {c.cluster_id for b in batches for c in b.clusters}
    assert written == set(clusters)
