"""The harvest arm (detectors/fusion/harvest.py): whole-history harvest evidence reaches the
thresholds on its own when the fused sum dilutes it, and calibration still holds honest
accounts to the target rate with both arms."""

from __future__ import annotations

import numpy as np
import orjson

from detectors.fusion import ExtractionDetector, benign, calibration
from detectors.fusion.benign import Snapshot
from detectors.fusion.harvest import HarvestArm
from detectors.fusion.scoring import (
    ACTIVE_DAYS,
    HARVEST_SIGNALS,
    active_days,
    distinct_prompts,
    fused,
    harvest,
    output_budget,
    output_weight,
)
from detectors.registry import load_calibration, save_calibration
from detectors.signals import SIGNALS
from students.actors import benign_users
from tests.planned import events_of

DISTINCT, BREADTH = HARVEST_SIGNALS
WINDOW = [s.name for s in SIGNALS if not s.lifetime and not s.needs_embeddings][:6]


def honest_history(rng: np.random.Generator, accounts: int = 300) -> list[Snapshot]:
    """Honest accounts: noisy window signals, and whole-history counts that grow together with
    their size (a heavy user sends many prompts, on somewhat more topics), over five days."""
    snapshots = []
    for index in range(accounts):
        size = int(rng.integers(8, 40))
        breadth_rate = rng.uniform(0.05, 0.3)
        for count in range(4, size):
            values = {name: rng.uniform(0, 1) for name in WINDOW}
            values[DISTINCT] = float(count)
            values[BREADTH] = float(1 + int(breadth_rate * count))
            values[ACTIVE_DAYS] = 5.0
            snapshots.append((f"user-{index:03d}", values, count, 0))
    return snapshots


def test_the_arm_maps_only_the_tail_and_is_monotone() -> None:
    arm = HarvestArm(np.arange(100.0), np.arange(100.0) * 10)
    mapped = arm(np.array([0.0, 50.0, 80.0, 95.0, 99.0, 120.0, 200.0]))
    assert mapped[0] == mapped[1] == 0.0  # the honest bulk adds nothing
    assert np.all(np.diff(mapped[2:]) > 0)
    assert mapped[-2] > 990  # beyond every honest harvest: beyond every honest fused peak
    assert arm.combined_peaks({"a": 99.0, "b": 10.0}, {"a": 5.0, "b": 500.0}) == {
        "a": float(mapped[4]),
        "b": 500.0,
    }


def test_a_harvester_with_honest_window_signals_is_flagged_and_honest_accounts_are_not() -> None:
    rng = np.random.default_rng(3)
    snapshots = honest_history(rng)
    fused_peaks, harvest_peaks, folds = calibration.cross_fitted_peaks(snapshots, seed=0)
    arm = HarvestArm.fit(harvest_peaks, fused_peaks)
    peaks = arm.combined_peaks(harvest_peaks, fused_peaks)
    threshold = calibration.thresholds(peaks, {"suspicious": 0.01})["suspicious"]

    # held out: the threshold chosen on the other folds flags about 1 % of honest accounts
    flagged, accounts = calibration.held_out_rate(peaks, folds, 0.01)
    assert accounts == 300 and flagged <= 6

    # a harvester: honest-looking window signals, a little beyond every honest account in both
    # distinct prompts (48) and topics (15)
    pooled = benign.pool(snapshots)
    values = {name: 0.5 for name in WINDOW} | {DISTINCT: 48.0, BREADTH: 15.0}
    surprises = benign.surprises(pooled, values, 48, 0)[None, :]
    weight = output_weight(output_budget(values))  # no max_tokens logged: the full weight
    alone = fused(surprises, np.float64(0.0), np.array([distinct_prompts(values, 48)]), weight)
    assert alone[0] < threshold  # the fused sum dilutes it
    assert arm(harvest(surprises, active_days(values), weight))[0] >= threshold  # the arm does not

    # the same prompts sent on one day: a burst, which the window signals judge alone
    burst = values | {ACTIVE_DAYS: 1.0}
    on_one_day = benign.surprises(pooled, burst, 48, 0)[None, :]
    assert arm(harvest(on_one_day, active_days(burst), weight))[0] == 0


def test_one_day_histories_give_the_arm_no_peaks_and_accounts_count_their_active_days() -> None:
    """Honest one-day batch jobs in the history set no harvest peak (so they do not stretch the
    arm's scale), and a window's values carry the account's active days, whatever its window
    holds."""
    rng = np.random.default_rng(5)
    spread = honest_history(rng, accounts=60)
    bursts = [(f"batch-{a}", v | {ACTIVE_DAYS: 1.0}, c, e) for a, v, c, e in spread[:200]]
    _, harvest_peaks, _ = calibration.cross_fitted_peaks(spread + bursts, seed=0)
    assert all(harvest_peaks[a] == 0.0 for a, *_ in bursts)
    assert max(harvest_peaks[a] for a, *_ in spread) > 0.0

    detector = ExtractionDetector()
    events = events_of(benign_users(1, 6, 3, seed=4), "days")
    days = {e.timestamp_ms // 86_400_000 for e in events}
    account = events[0].account_id
    detector.update_batch({account: [e for e in events if e.account_id == account]})
    values, _, _ = detector._values(detector.accounts[account])
    assert len(days) >= 2 and values[ACTIVE_DAYS] == len(days)


def test_a_saved_calibration_keeps_the_arm_and_an_older_file_loads_without_it(
    tmp_path, caplog
) -> None:
    """A worker scores with the calibration it loads: the arm's honest peaks are saved with it,
    and a file saved before the arm existed still loads (the fused score alone), as does one an
    older version made, with a warning to calibrate again (its arm's scale differs)."""
    fitted = ExtractionDetector().fit(events_of(benign_users(60, 300, 5, seed=2), "cal"))
    assert fitted.harvest_arm_ is not None
    saved = save_calibration(fitted, tmp_path)
    with caplog.at_level("WARNING", logger="detectors.registry"):
        restored = load_calibration(ExtractionDetector(), tmp_path)
    assert "calibrate" not in caplog.text
    assert restored.harvest_arm_ is not None
    for field in ("harvest_peaks", "fused_peaks"):
        np.testing.assert_allclose(
            getattr(restored.harvest_arm_, field), getattr(fitted.harvest_arm_, field), atol=1e-6
        )
    assert restored.thresholds_ == fitted.thresholds_
    older = orjson.loads(saved.read_bytes())
    del older["calibration"]["harvest_arm"]
    older["version"] = "fusion-3"
    saved.write_bytes(orjson.dumps(older))
    with caplog.at_level("WARNING", logger="detectors.registry"):
        assert load_calibration(ExtractionDetector(), tmp_path).harvest_arm_ is None
    assert "made by fusion-3" in caplog.text and "distillguard calibrate" in caplog.text


def test_beyond_every_honest_harvest_rarer_maps_higher_past_an_outlying_honest_peak() -> None:
    """One power user's fused peak far above the rest (50 against an exponential bulk): a harvest
    beyond every honest one used to map to that one peak however far beyond (so the arm's top
    was one honest account's peak, a knife edge against thresholds set among the top peaks);
    now the tail continues from it."""
    rng = np.random.default_rng(4)
    fused_peaks = np.append(rng.exponential(1.0, size=200), 50.0)
    arm = HarvestArm(np.arange(100.0), fused_peaks)
    mapped = arm(np.array([99.0, 100.0, 120.0, 200.0, 400.0]))
    assert mapped[0] < 50.0  # measured by the history: an honest account's rank
    assert np.all(np.diff(mapped) > 0)
    assert mapped[1] > 50.0
    for p in (0.05, 0.01, 1 / 202):  # where the history measures the rate: the threshold itself
        assert benign.tail_value(fused_peaks, p) == benign.tail_threshold(fused_peaks, p)
