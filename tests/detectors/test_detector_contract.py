"""The detector contract, on every detector the product and the benchmark run.

Whatever it measures, a detector must: restore an account from its saved state (through JSON)
and then assess that account's next events exactly as if it had never stopped; reload its
calibration from JSON and score as the fitted detector does; give the same verdict for a batch
of events as for the same events one at a time (verdicts must not depend on how events arrive);
and keep scores in [0, 1]. Real traffic from the companion: honest ShareGPT users, a dataset
replay harvester and a small multi-account campaign. Detectors that embed prompts load MiniLM
(`models`); the fused detector also runs with embeddings off, as `embedding_tier="off"` does.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from core.embedder import Embedder
from core.events import Event, group_by_account
from core.verdicts import Assessment
from detectors.base import (
    CalibratedDetector,
    CrossAccountDetector,
    Detector,
    calibration_of,
    cross_account_state,
    load_calibration_into,
    load_cross_account_state,
)
from detectors.baselines import BASELINES
from detectors.campaigns import CampaignLinker, time_batches
from detectors.features import EventFeatures, SimHasher, featurize
from detectors.fusion import ExtractionDetector
from detectors.language import detect_languages
from detectors.volume import VolumeDetector
from students.actors import (
    STRATEGIES,
    AttackConfig,
    benign_users,
    multi_account_campaign,
)
from tests.planned import events_of

LABELS = {"benign", "suspicious", "extraction"}
BATCH = 50


@dataclass(frozen=True)
class Case:
    make: Callable[[Embedder | None], Detector]
    embeds: bool = False  # needs MiniLM
    # How far a score may move (a label never): saved windows keep int8-quantised embeddings,
    # and a saved fused calibration keeps 6 decimals and refits its forest on them.
    state_tolerance: float = 1e-9
    calibration_tolerance: float = 1e-9


def _fused(embedder: Embedder | None) -> Detector:
    return ExtractionDetector(
        embedder=embedder, languages=detect_languages, linker=CampaignLinker()
    )


CASES: dict[str, Case] = {
    "volume": Case(lambda _embedder: VolumeDetector()),
    "extraction_off": Case(lambda _embedder: _fused(None), calibration_tolerance=0.02),
    "extraction_tiered": Case(
        _fused, embeds=True, state_tolerance=0.02, calibration_tolerance=0.02
    ),
    **{
        name: Case(make, embeds=hasattr(make(None), "embedder"))
        for name, make in sorted(BASELINES.items())
    },
}
PARAMS = [
    pytest.param(name, marks=[pytest.mark.models] if case.embeds else [], id=name)
    for name, case in CASES.items()
]


def json_round_trip(value: Any) -> Any:
    return orjson.loads(orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY))


@pytest.fixture(scope="module")
def calibration() -> list[Event]:
    return events_of(benign_users(60, 200, 7, seed=41), "cal", "contract")


@pytest.fixture(scope="module")
def traffic() -> list[Event]:
    plans = benign_users(20, 60, 7, seed=42)
    plans += STRATEGIES["dataset_replay"](AttackConfig(budget=120, seed=3, start_day=1))
    plans += multi_account_campaign(
        AttackConfig(budget=120, seed=4, start_day=1, extra={"accounts": 4, "cover_ratio": 1.0})
    )
    return events_of(plans, "live", "contract")


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    from detectors.embedding import PromptEmbedder

    return PromptEmbedder(max_seq_length=128)


@dataclass
class Fitted:
    case: Case
    detector: Detector
    calibration: dict[str, Any]  # as JSON gives it back
    embedder: Embedder | None

    def fresh(self) -> Detector:
        """A new detector from the saved calibration (FAISS objects do not deep-copy)."""
        detector = self.case.make(self.embedder)
        load_calibration_into(detector, json_round_trip(self.calibration))
        return detector


@pytest.fixture(scope="module", params=PARAMS)
def fitted(request: pytest.FixtureRequest, calibration: list[Event]) -> Fitted:
    case = CASES[request.param]
    embedder = request.getfixturevalue("embedder") if case.embeds else None
    detector = case.make(embedder).fit(calibration)
    return Fitted(case, detector, json_round_trip(calibration_of(detector)), embedder)


def batches(events: list[Event], size: int = BATCH) -> Iterator[dict[str, list[Event]]]:
    """Consecutive slices of the time-ordered log, grouped by account, as the pipeline does."""
    for start in range(0, len(events), size):
        yield group_by_account(events[start : start + size])


def stream(detector: Detector, events: list[Event]) -> list[tuple[str, Assessment]]:
    return [
        (account_id, assessment)
        for updates in batches(events)
        for account_id, assessment in sorted(detector.update_batch(updates).items())
    ]


def same(a: Assessment, b: Assessment, tolerance: float = 1e-9) -> None:
    """The same verdict: the label exactly, the score to `tolerance`; at float rounding
    tolerance, the same reasons with the same values."""
    assert a.label == b.label
    assert a.score == pytest.approx(b.score, abs=tolerance)
    if tolerance <= 1e-9:
        reasons = {r.signal: r.value for r in b.reasons}
        assert {r.signal: r.value for r in a.reasons} == pytest.approx(reasons, abs=1e-9)


def same_stream(
    got: list[tuple[str, Assessment]], expected: list[tuple[str, Assessment]], tolerance: float
) -> None:
    """Every assessment the same, for the same accounts in the same order and campaigns."""
    assert [(account, a.cluster_id) for account, a in got] == [
        (account, a.cluster_id) for account, a in expected
    ]
    for (_, a), (_, b) in zip(got, expected, strict=True):
        same(a, b, tolerance)


def campaigns(assessments: dict[str, Assessment]) -> set[frozenset[str]]:
    """Which accounts share a campaign (cluster ids themselves depend on arrival order: an id is
    minted from the cluster's earliest member when it forms, and kept while it grows)."""
    members: dict[str, set[str]] = defaultdict(set)
    for account_id, assessment in assessments.items():
        if assessment.cluster_id is not None:
            members[assessment.cluster_id].add(account_id)
    return {frozenset(group) for group in members.values()}


def assert_close(got: Any, expected: Any, rel: float = 1e-6) -> None:
    """Equal documents, floats to `rel` (a loaded topic reference is re-normalised: float32
    rounding)."""
    if isinstance(expected, dict):
        assert isinstance(got, dict) and got.keys() == expected.keys()
        for key in expected:
            assert_close(got[key], expected[key], rel)
    elif isinstance(expected, list):
        assert isinstance(got, list) and len(got) == len(expected)
        for item, wanted in zip(got, expected, strict=True):
            assert_close(item, wanted, rel)
    elif isinstance(expected, float):
        assert got == pytest.approx(expected, rel=rel, abs=1e-9)
    else:
        assert got == expected


def test_implements_the_protocols(fitted: Fitted) -> None:
    detector = fitted.detector
    assert isinstance(detector, Detector) and isinstance(detector, CalibratedDetector)
    assert isinstance(detector.name, str) and isinstance(detector.version, str)
    assert isinstance(detector, CrossAccountDetector) == isinstance(detector, ExtractionDetector)
    assert fitted.calibration


def test_scores_stay_in_the_unit_interval(fitted: Fitted, traffic: list[Event]) -> None:
    assessed = stream(fitted.fresh(), traffic)
    assert {account for account, _ in assessed} >= {e.account_id for e in traffic}
    assert all(0.0 <= a.score <= 1.0 and a.label in LABELS for _, a in assessed)
    assert all(0.0 <= r.contribution <= 1.0 for _, a in assessed for r in a.reasons)


def test_state_round_trip_resumes_identically(fitted: Fitted, traffic: list[Event]) -> None:
    """Half the traffic, then every account's state (and the cross-account state) through JSON
    into a fresh detector: the rest of the traffic is assessed as by the detector that ran on."""
    half = len(traffic) // 2
    running = fitted.fresh()
    stream(running, traffic[:half])
    restored = fitted.fresh()
    for account_id in sorted({e.account_id for e in traffic[:half]}):
        restored.load(account_id, json_round_trip(running.state(account_id)))
    shared = cross_account_state(running)
    if shared is not None:
        load_cross_account_state(restored, json_round_trip(shared))
    expected, resumed = stream(running, traffic[half:]), stream(restored, traffic[half:])
    same_stream(resumed, expected, fitted.case.state_tolerance)


def test_calibration_round_trips_through_json(fitted: Fitted, traffic: list[Event]) -> None:
    """A loaded calibration saves as the same document, and scores as the fitted detector."""
    loaded = fitted.fresh()
    assert_close(json_round_trip(calibration_of(loaded)), fitted.calibration)
    expected, got = stream(fitted.detector, traffic), stream(loaded, traffic)
    same_stream(got, expected, fitted.case.calibration_tolerance)


def test_one_batch_gives_the_verdicts_of_one_event_at_a_time(
    fitted: Fitted, traffic: list[Event]
) -> None:
    batched = fitted.fresh().update_batch(group_by_account(traffic))
    single = fitted.fresh()
    latest: dict[str, Assessment] = {}
    for event in traffic:  # each call may also re-assess other accounts (campaign members)
        latest.update(single.update_batch({event.account_id: [event]}))
    assert set(latest) == set(batched)
    assert campaigns(batched) == campaigns(latest)
    for account_id, assessment in latest.items():
        same(batched[account_id], assessment)


def test_every_baseline_is_under_contract() -> None:
    assert set(BASELINES) <= set(CASES)


# --- the campaign linker: cross-account state, calibrated; it has no per-account verdicts -------
@pytest.fixture(scope="module")
def linker_traffic(
    calibration: list[Event], traffic: list[Event]
) -> tuple[CampaignLinker, list[EventFeatures], list[list[EventFeatures]]]:
    """A linker fitted on the benign calibration traffic; the live traffic featurised, whole and
    in ten-minute windows."""
    hasher = SimHasher()
    linker = CampaignLinker().fit(featurize(calibration, hasher))
    features = featurize(traffic, hasher)
    return linker, features, list(time_batches(features, 600_000))


def test_linker_state_round_trip_resumes_identically(linker_traffic) -> None:
    fitted_linker, _, windows = linker_traffic
    running = CampaignLinker().load_calibration(json_round_trip(fitted_linker.calibration()))
    half = len(windows) // 2
    for window in windows[:half]:
        running.observe(window)
    restored = CampaignLinker().load(json_round_trip(running.state()))
    assert restored.clusters() == running.clusters()
    for window in windows[half:]:
        assert restored.observe(window) == running.observe(window)
    assert restored.clusters() == running.clusters() and restored.clusters()


def test_linker_calibration_round_trips_through_json(linker_traffic) -> None:
    fitted_linker, features, _ = linker_traffic
    document = json_round_trip(fitted_linker.calibration())
    loaded = CampaignLinker().load_calibration(document)
    assert json_round_trip(loaded.calibration()) == document
    assert CampaignLinker(**loaded.get_params()).get_params() == fitted_linker.get_params()
    assert loaded.observe(features) == fitted_linker.observe(features)
    assert loaded.clusters() == fitted_linker.clusters()
