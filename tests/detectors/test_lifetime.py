"""Whole-history evidence: the lifetime sketch outlives the 256-request window, survives a
checkpoint, pools across a campaign, and turns into a surprise only for accounts whose history
is unlike honest histories."""

from __future__ import annotations

from collections import deque

import numpy as np
import orjson
import pytest

from core.events import Event, parse_event
from detectors.features import SimHasher, featurize
from detectors.fusion import ExtractionDetector
from detectors.fusion.pooling import pooled_window
from detectors.fusion.window import AccountWindow
from detectors.signals import SIGNALS

HOUR_MS = 3_600_000
START_MS = 1_790_000_000_000
WORDS = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "zeta",
    "theta",
    "kappa",
    "lambda",
    "sigma",
    "omega",
]


def event(account: str, number: int, at_ms: int, prompt: str) -> Event:
    record = {"request_id": f"{account}-{number}", "account_id": account, "timestamp": at_ms}
    parsed = parse_event(orjson.dumps(record | {"prompt": prompt}), "test")
    assert isinstance(parsed, Event)
    return parsed


def question(index: int) -> str:
    """Distinct prompts of ordinary length (a different word mix for every index)."""
    picked = [WORDS[(index // 11**k) % 11] for k in range(3)]
    return f"Question {index}: how does {' and '.join(picked)} relate to item {index * 7}?"


def test_window_drops_requests_but_the_lifetime_keeps_their_count_and_topics() -> None:
    centroids = np.eye(3, 8, dtype=np.float32)
    account = AccountWindow(deque(maxlen=4))
    features = featurize(
        [event("a", i, START_MS + i * HOUR_MS, question(i)) for i in range(6)], SimHasher()
    )
    for i, item in enumerate(features):
        item.embedding = centroids[i % 3]
    account.extend(features[:4], centroids)
    account.extend(features[4:], centroids)
    assert len(account.features) == 4 and account.seen == 6
    assert account.lifetime.distinct_prompts() == 6
    assert dict(account.lifetime.topics) == {0: 1, 1: 1}  # the two that left the window
    restored = AccountWindow.from_state("a", account.to_state(), maxlen=4)
    assert restored.lifetime.distinct_prompts() == 6
    assert restored.lifetime.topics == account.lifetime.topics
    assert restored.lifetime.active_days() == account.lifetime.active_days()


def test_a_campaign_pools_its_members_histories() -> None:
    hasher, accounts = SimHasher(), {}
    for member in range(3):
        account = AccountWindow(deque(maxlen=256))
        prompts = [question(member * 1000 + i) for i in range(40)]
        account.extend(
            featurize([event(f"m{member}", i, START_MS, p) for i, p in enumerate(prompts)], hasher),
            None,
        )
        accounts[f"m{member}"] = account
    pooled = pooled_window(sorted(accounts), accounts)
    assert pooled.lifetime.distinct_prompts() == 120
    assert all(account.lifetime.distinct_prompts() == 40 for account in accounts.values())


def test_a_slow_harvest_beyond_the_window_is_surprising_a_busy_honest_account_is_not() -> None:
    benign = [
        event(f"user-{u}", i, START_MS + (u * 37 + i * 5) * HOUR_MS, question(u * 100 + i % 12))
        for u in range(40)
        for i in range(30 + u)
    ]
    detector = ExtractionDetector(tiered=False).fit(benign)
    lifetime = [s.name for s in SIGNALS].index("lifetime_distinct_prompts")
    slow = [event("slow", i, START_MS + i * 4 * HOUR_MS, question(50_000 + i)) for i in range(400)]
    busy = [event("busy", i, START_MS + i * HOUR_MS, question(60_000 + i % 10)) for i in range(400)]
    for account, events in (("slow", slow), ("busy", busy)):
        for start in range(0, len(events), 50):
            assessment = detector.update_batch({account: events[start : start + 50]})[account]
        window = detector.accounts[account]
        values, count, embedded = detector._values(window)
        surprise = detector._surprises(values, count, embedded)[lifetime]
        if account == "slow":
            assert len(window.features) == 256 and values["lifetime_distinct_prompts"] > 350
            assert surprise >= 2.0
            assert "lifetime_distinct_prompts" in {r.signal for r in assessment.reasons}
        else:
            assert values["lifetime_distinct_prompts"] == 10 and surprise < 0.5


def test_a_calibration_made_for_other_signals_is_refused_with_what_to_do() -> None:
    benign = [
        event(f"user-{u}", i, START_MS + (u * 37 + i * 5) * HOUR_MS, question(u * 100 + i))
        for u in range(12)
        for i in range(10)
    ]
    saved = ExtractionDetector(tiered=False).fit(benign).calibration()
    ExtractionDetector(tiered=False).load_calibration(saved)  # the same version loads
    older = saved | {"signals": [s.name for s in SIGNALS if not s.lifetime]}
    with pytest.raises(ValueError, match="run `distillguard calibrate` again"):
        ExtractionDetector(tiered=False).load_calibration(older)
