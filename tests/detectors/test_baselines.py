"""Clean-room baselines: fitted on benign traffic, each flags an obvious attacker built from real
prompts and leaves a typical benign account alone; state and calibration survive a round trip."""

from __future__ import annotations

import random
from collections import Counter

import orjson
import pytest

from core.events import Event, parse_event
from detectors.base import Detector
from detectors.baselines import BASELINES
from detectors.embedding import PromptEmbedder
from students.actors import (
    STRATEGIES,
    AttackConfig,
    PlannedRequest,
    benign_users,
    request_record,
)
from students.prompts import attack_pool

pytestmark = pytest.mark.models


def as_events(plans: list[PlannedRequest]) -> list[Event]:
    ordered = sorted(plans, key=lambda p: p.timestamp_ms)
    events = [
        parse_event(orjson.dumps(request_record(p, f"r{i}")), "t") for i, p in enumerate(ordered)
    ]
    assert all(isinstance(e, Event) for e in events)
    return events  # type: ignore[return-value]


def perturbation_sweep(seeds: int, variants: int, seed: int) -> list[PlannedRequest]:
    """A JbDA-style synthetic-query attacker, what PRADA was designed against, from real prompts:
    each public prompt followed by near-copies of it with one word dropped."""
    rng = random.Random(seed)
    plans, moment = [], 1_795_000_000_000
    for prompt in rng.sample([p for p in attack_pool() if len(p.split()) > 8], seeds):
        words = prompt.split()
        for variant in range(variants + 1):
            kept = (
                words
                if variant == 0
                else words[: (i := rng.randrange(len(words)))] + words[i + 1 :]
            )
            moment += 2000
            plans.append(
                PlannedRequest("attack:sweep", "sweep", moment, (("user", " ".join(kept)),))
            )
    return plans


ATTACKERS = {  # the attacker each baseline exists to catch
    "prada": lambda: perturbation_sweep(30, 3, seed=5),
    "mmd": lambda: STRATEGIES["templated_enumeration"](AttackConfig(budget=120, seed=11)),
    "volume_z": lambda: STRATEGIES["dataset_replay"](AttackConfig(budget=120, seed=11)),
}


@pytest.fixture(scope="module")
def embedder() -> PromptEmbedder:
    return PromptEmbedder()


@pytest.fixture(scope="module")
def calibration() -> list[Event]:
    return as_events(benign_users(150, 400, 14, seed=21))


@pytest.fixture(scope="module")
def typical() -> list[Event]:
    """A benign account from other seeds with the median request count of accounts with 20+."""
    plans = benign_users(150, 400, 14, seed=22)
    counts = Counter(p.account_id for p in plans)
    active = sorted((n, a) for a, n in counts.items() if n >= 20)
    _, account = active[len(active) // 2]
    return as_events([p for p in plans if p.account_id == account])


@pytest.fixture(scope="module", params=sorted(BASELINES))
def fitted(
    request: pytest.FixtureRequest, embedder: PromptEmbedder, calibration: list[Event]
) -> tuple[str, Detector]:
    return request.param, BASELINES[request.param](embedder).fit(calibration)


def test_flags_its_attacker_and_not_a_typical_benign_account(
    fitted: tuple[str, Detector], typical: list[Event]
) -> None:
    name, detector = fitted
    attack = detector.update("attacker", as_events(ATTACKERS[name]()))
    assert attack.label == "extraction" and attack.score > 0.5
    benign = detector.update("typical", typical)
    assert benign.label == "benign" and benign.score < 0.5


def test_state_and_calibration_round_trip(
    fitted: tuple[str, Detector], embedder: PromptEmbedder
) -> None:
    name, detector = fitted
    events = as_events(ATTACKERS[name]())
    half = len(events) // 2

    def restored() -> Detector:
        fresh = BASELINES[name](embedder)
        fresh.load_calibration(orjson.loads(orjson.dumps(detector.calibration())))
        return fresh

    whole = restored()
    whole.update("a", events[:half])
    expected = whole.update("a", events[half:])
    first = restored()
    first.update("a", events[:half])
    second = restored()
    second.load("a", orjson.loads(orjson.dumps(first.state("a"))))
    resumed = second.update("a", events[half:])
    assert resumed.label == expected.label
    assert resumed.score == pytest.approx(expected.score)
    assert resumed.reasons[0].value == pytest.approx(expected.reasons[0].value)
