"""`bench.linker_scaling` puts several worlds into one population without changing any of them:
ids prefixed by world, each world moved by one offset onto the common origin (its history by
the same offset), so only the crowding of the stream changes."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

from bench.linker_scaling import one_population, per_slice
from bench.scenario import Scenario
from bench.worlds import rag_pipelines, sdk_developers
from core.events import Event
from core.timeutil import DAY_MS
from detectors.registry import events_in_file

ORIGIN_MS = 1_788_000_000_000


@pytest.fixture(scope="module")
def worlds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Scenario]:
    cache = tmp_path_factory.mktemp("worlds")

    def quiet(_: str) -> None:
        pass

    return {
        module.NAME: module.GENERATOR.build_config(module.SMALL, cache_dir=cache, log=quiet)
        for module in (sdk_developers, rag_pipelines)
    }


def by_world(events: list[Event]) -> dict[str, list[Event]]:
    found: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        found[event.account_id.split("/", 1)[0]].append(event)
    return found


def gaps(events: list[Event]) -> list[int]:
    stamps = sorted(event.timestamp_ms for event in events)
    return list(np.diff(stamps))


def test_each_world_keeps_its_requests_and_their_spacing_moved_onto_one_origin(
    worlds: dict[str, Scenario],
) -> None:
    log, history = one_population(worlds, ORIGIN_MS)
    assert [e.timestamp_ms for e in log] == sorted(e.timestamp_ms for e in log)
    assert len({e.request_id for e in log}) == len(log)
    for name, events in by_world(log).items():
        original = list(events_in_file(worlds[name].events_path))
        assert len(events) == len(original)
        assert min(e.timestamp_ms for e in events) == ORIGIN_MS
        assert gaps(events) == gaps(original)
        assert {e.account_id for e in events} == {f"{name}/{e.account_id}" for e in original}
        own_history = list(events_in_file(worlds[name].calibration_path))
        offset = min(e.timestamp_ms for e in original) - ORIGIN_MS
        assert sorted(e.timestamp_ms for e in by_world(history)[name]) == sorted(
            e.timestamp_ms - offset for e in own_history
        )
    assert set(by_world(log)) == set(worlds) == set(by_world(history))


def test_a_world_beside_its_own_copy_doubles_the_requests_of_every_slice(
    worlds: dict[str, Scenario],
) -> None:
    world = worlds["sdk-developers"]
    alone, _ = one_population({"a": world}, ORIGIN_MS)
    twice, _ = one_population({"a": world, "b": world}, ORIGIN_MS)
    assert len({e.account_id for e in twice}) == 2 * len({e.account_id for e in alone})
    assert per_slice(twice) == pytest.approx(2 * per_slice(alone))
    assert per_slice(alone, tick_ms=1) < per_slice(alone)  # wider slices hold more requests


def test_worlds_in_turn_follow_each_other_a_day_apart(worlds: dict[str, Scenario]) -> None:
    log, history = one_population(worlds, ORIGIN_MS, in_turn=True)
    first, second = (by_world(log)[name] for name in worlds)
    assert min(e.timestamp_ms for e in first) == ORIGIN_MS
    assert min(e.timestamp_ms for e in second) == max(e.timestamp_ms for e in first) + DAY_MS
    assert gaps(second) == gaps(list(events_in_file(worlds[list(worlds)[1]].events_path)))
    assert len(history) == sum(
        len(list(events_in_file(s.calibration_path))) for s in worlds.values()
    )
