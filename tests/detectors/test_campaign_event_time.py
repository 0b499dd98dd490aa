"""The campaign linker in event time: the same traffic gives the same clusters however it arrives
(one time-ordered file, one partition, eight partitions read in long runs as a worker catching
up on a backlog reads them)."""

from __future__ import annotations

import random
import zlib
from collections.abc import Iterator

import pytest

from detectors.campaigns import CampaignLinker
from detectors.campaigns.eventtime import EventTime
from detectors.campaigns.feed import LinkEvent, ProfileUpdate, decode
from detectors.campaigns.skeletons import skeleton_keys
from detectors.features import EventFeatures
from tests.detectors.test_campaigns import campaign, features_of, honest, with_office

Arrival = list[tuple[str, list[EventFeatures]]]  # (stream, a run of its requests) in order


@pytest.fixture(scope="module")
def fitted() -> CampaignLinker:
    return CampaignLinker().fit(features_of(honest(seed=101), "cal"))


@pytest.fixture(scope="module")
def traffic() -> list[EventFeatures]:
    return features_of(with_office(honest(seed=202)) + campaign(seed=7), "live")


def fresh(fitted: CampaignLinker) -> CampaignLinker:
    calibration = fitted.calibration()
    assert calibration is not None
    return CampaignLinker().load_calibration(calibration)


def partition_of(account: str, partitions: int) -> int:
    return zlib.crc32(account.encode()) % partitions


def file_order(traffic: list[EventFeatures], batch: int = 2000) -> Arrival:
    return [("file", traffic[i : i + batch]) for i in range(0, len(traffic), batch)]


def partition_runs(traffic: list[EventFeatures], partitions: int, seed: int) -> Arrival:
    """Each partition in time order (keyed by account), read in long runs of random length:
    one partition's days arrive before another's minutes."""
    queues = [
        [f for f in traffic if partition_of(f.account_id, partitions) == p]
        for p in range(partitions)
    ]
    rng = random.Random(seed)
    arrival: Arrival = []
    while any(queues):
        p = rng.choice([i for i, q in enumerate(queues) if q])
        run = rng.randint(200, 3000)
        arrival.append((f"p{p}", queues[p][:run]))
        queues[p] = queues[p][run:]
    return arrival


def over_the_wire(run: list[EventFeatures]) -> Iterator[LinkEvent]:
    """What a worker publishes for these requests, as the linker decodes it."""
    for f in run:
        update = ProfileUpdate(
            f.account_id, 0, 0.0, "benign", [LinkEvent(f, skeleton_keys(f.prompt))]
        )
        decoded = decode(*update.message())
        assert isinstance(decoded, ProfileUpdate)
        yield from decoded.events


def link(fitted: CampaignLinker, arrival: Arrival, streams: list[str]) -> CampaignLinker:
    linker = fresh(fitted)
    buffer = EventTime(streams=streams)
    for stream, run in arrival:
        buffer.add(over_the_wire(run), stream)
        for events in buffer.release():
            linker.observe_events(events)
    for events in buffer.flush():
        linker.observe_events(events)
    assert buffer.late == 0
    return linker


def clusters(linker: CampaignLinker) -> list[tuple[str, tuple[str, ...]]]:
    return sorted((c.cluster_id, tuple(c.members)) for c in linker.clusters())


def test_the_same_clusters_from_a_file_one_partition_and_eight(fitted, traffic) -> None:
    from_file = clusters(link(fitted, file_order(traffic), ["file"]))
    one = clusters(link(fitted, partition_runs(traffic, 1, seed=3), ["p0"]))
    eight_streams = [f"p{p}" for p in range(8)]
    eight = clusters(link(fitted, partition_runs(traffic, 8, seed=3), eight_streams))
    campaign_members = {a for _, members in from_file for a in members if a.startswith("campaign-")}
    assert len(campaign_members) >= 30  # the campaign is found, so the comparison means something
    assert one == from_file
    assert eight == from_file


def test_arrival_order_alone_would_change_the_clusters(fitted, traffic) -> None:
    """Without event time, the same eight-partition runs fed as they arrive link differently:
    the test above is not comparing a linker that happens to be order-blind."""
    linker = fresh(fitted)
    for _stream, run in partition_runs(traffic, 8, seed=3):
        linker.observe_events(list(over_the_wire(run)))
    naive = clusters(linker)
    assert naive != clusters(link(fitted, file_order(traffic), ["file"]))
