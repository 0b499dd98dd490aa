"""Calibration on a real benign history: thresholds from out-of-fold peaks (a power user is
scored against the others, not against itself), the held-out report and its interval maths,
and the history-vs-live comparison."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from core.events import Event
from detectors.base import fit_with_reviewed
from detectors.drift import wilson
from detectors.fusion import ExtractionDetector, benign, calibration
from detectors.fusion.benign import IsolationSurprise, Snapshot
from detectors.fusion.detector import REVIEW_MARGIN
from detectors.fusion.scoring import distinct_prompts, fused
from detectors.registry import load_calibration, save_calibration
from detectors.signals import SIGNALS
from students.actors import benign_users
from tests.planned import events_of, harvesters

WINDOW_SIGNALS = [s for s in SIGNALS if not s.needs_embeddings and not s.lifetime]
CONTENT = next(s.name for s in WINDOW_SIGNALS if s.content)
BEHAVIOUR = next(s.name for s in WINDOW_SIGNALS if not s.content)


@pytest.fixture(scope="module")
def history() -> list[Event]:
    return events_of(benign_users(150, 600, 7, seed=4), "cal")


@pytest.fixture(scope="module")
def fitted(history: list[Event]) -> ExtractionDetector:
    return ExtractionDetector().fit(history)


def in_sample_peaks(snapshots: list[Snapshot], seed: int = 0) -> dict[str, float]:
    """What calibration did before cross-fitting: every account against all accounts."""
    pooled = benign.pool(snapshots)
    vectors = np.stack([benign.surprises(pooled, v, c, e) for _, v, c, e in snapshots])
    distinct = np.array([distinct_prompts(v, c) for _, v, c, _ in snapshots])
    raw = fused(vectors, IsolationSurprise.fit(vectors, seed)(vectors), distinct, 1.0)
    return benign.lifetime_maxima([a for a, *_ in snapshots], raw)


def synthetic_history(rng: np.random.Generator) -> list[Snapshot]:
    """60 ordinary accounts and one power user far out on a content and a behaviour signal."""
    snapshots: list[Snapshot] = []
    for account in [f"user-{i}" for i in range(60)] + ["power-user"]:
        for count in range(4, 16):
            if account == "power-user":
                values = {CONTENT: 0.9, BEHAVIOUR: 0.9}
            else:
                values = {CONTENT: rng.uniform(0, 0.3), BEHAVIOUR: rng.uniform(0, 0.3)}
            snapshots.append((account, values, count, 0))
    return snapshots


def test_out_of_fold_peaks_do_not_let_a_power_user_vouch_for_itself() -> None:
    snapshots = synthetic_history(np.random.default_rng(0))
    held_out, _, folds = calibration.cross_fitted_peaks(snapshots, seed=0)
    in_sample = in_sample_peaks(snapshots)
    assert len(set(folds.values())) == calibration.FOLDS
    # In-sample, the power user's own windows make its values look ordinary; held out, they
    # are beyond every other benign value.
    assert held_out["power-user"] > 2 * in_sample["power-user"]
    ordinary = [a for a in held_out if a != "power-user"]
    gaps = np.array([held_out[a] - in_sample[a] for a in ordinary])
    assert np.median(np.abs(gaps)) < 0.5
    fprs = {"suspicious": 0.01}
    assert (
        calibration.thresholds(held_out, fprs)["suspicious"]
        > calibration.thresholds(in_sample, fprs)["suspicious"]
    )


def test_accounts_too_short_to_score_count_in_the_share_a_threshold_flags(
    history: list[Event], fitted: ExtractionDetector
) -> None:
    """A threshold promises a share of honest *accounts*; one that sends three requests is never
    scored but is one of them, so it peaks at 0 and the quantile is taken over everyone."""
    snapshots = synthetic_history(np.random.default_rng(1))
    silent = [f"brief-{i}" for i in range(300)]
    scored, *_ = calibration.cross_fitted_peaks(snapshots, seed=0)
    everyone, _, folds = calibration.cross_fitted_peaks(snapshots, seed=0, silent=silent)
    assert {a: everyone[a] for a in scored} == scored
    assert all(everyone[a] == 0.0 and a in folds for a in silent)
    fprs = {"suspicious": 0.01}
    # 61 scored accounts: 1 % is below one account, so the threshold sits above the top peak;
    # among 361 accounts it is the 3rd-highest peak.
    assert (
        calibration.thresholds(everyone, fprs)["suspicious"]
        < calibration.thresholds(scored, fprs)["suspicious"]
    )
    ranked = sorted(scored.values(), reverse=True)
    assert calibration.thresholds(everyone, fprs)["suspicious"] == pytest.approx(ranked[2] + 1e-6)
    # The fitted detector counts every account of its history.
    assert fitted.calibration_report_["accounts"] == len({e.account_id for e in history})


def test_folds_are_stable_and_balanced() -> None:
    accounts = [f"acct-{i}" for i in range(5000)]
    folds = calibration.fold_assignment(accounts)
    assert folds == calibration.fold_assignment(reversed(accounts))
    sizes = np.bincount(list(folds.values()))
    assert len(sizes) == calibration.FOLDS and sizes.min() > 900
    assert calibration.fold_assignment(["a", "b"]) == {"a": 0, "b": 1}


def test_vectorised_surprises_equal_the_detectors(
    fitted: ExtractionDetector, history: list[Event]
) -> None:
    snapshots = calibration.live_snapshots(fitted, history)
    table = calibration.SnapshotTable.of(snapshots)
    matrix = calibration.surprise_matrix(fitted.benign_values_, table, np.arange(len(snapshots)))
    expected = np.stack(
        [benign.surprises(fitted.benign_values_, v, c, e) for _, v, c, e in snapshots]
    )
    assert matrix.shape == expected.shape and expected.max() > 1.0
    np.testing.assert_allclose(matrix, expected, atol=1e-9)


def test_fit_sets_thresholds_from_held_out_peaks_and_reports_them(
    fitted: ExtractionDetector, tmp_path
) -> None:
    report = fitted.calibration_report_
    levels = report["levels"]
    assert fitted.thresholds_ == {label: level["threshold"] for label, level in levels.items()}
    assert report["accounts"] >= 50 and report["folds"] == calibration.FOLDS
    for level in levels.values():
        low, high = level["interval"]
        assert 0.0 <= low <= level["measured_fpr"] <= high <= 1.0
        assert level["per_1000_accounts"][0] == pytest.approx(1000 * level["measured_fpr"])
    # ~100 accounts cannot measure a 0.1% rate: the report says the threshold is extrapolated.
    assert levels["extraction"]["extrapolated"]
    assert any("extraction threshold" in w and "extrapolated" in w for w in report["warnings"])
    save_calibration(fitted, tmp_path)
    restored = load_calibration(ExtractionDetector(), tmp_path)
    assert restored.calibration_report_ == orjson.loads(orjson.dumps(report))
    assert restored.thresholds_ == fitted.thresholds_


def test_wilson_interval_matches_the_textbook_and_covers() -> None:
    assert wilson(0, 100) == pytest.approx((0.0, 1.959964**2 / (100 + 1.959964**2)), abs=1e-6)
    assert wilson(5, 100) == pytest.approx((0.02154, 0.11175), abs=1e-4)
    assert wilson(0, 0) == (0.0, 1.0)
    rng = np.random.default_rng(1)
    draws = rng.binomial(300, 0.01, size=4000)
    covered = np.mean([low <= 0.01 <= high for low, high in (wilson(k, 300) for k in draws)])
    assert 0.93 <= covered <= 0.99


def test_the_threshold_promises_the_target_at_most_and_as_close_as_the_history_allows() -> None:
    peaks = np.random.default_rng(2).exponential(1.0, size=2000)
    step = 1 / (len(peaks) + 1)  # the finest rate a history of n accounts can promise
    for fpr in (0.05, 0.01, 0.001):
        promised = calibration.tail_probability(peaks, benign.tail_threshold(peaks, fpr))
        assert fpr - step < promised <= fpr
    # Beyond what the history can measure, the exponential tail takes over.
    extrapolated = benign.tail_threshold(peaks, 1e-5)
    assert extrapolated > peaks.max()
    assert calibration.tail_probability(peaks, extrapolated) == pytest.approx(1e-5, rel=1e-6)


def test_one_power_user_sets_the_threshold_only_where_the_history_cannot_speak() -> None:
    peaks = np.append(np.random.default_rng(2).exponential(1.0, size=200), 50.0)
    # 201 accounts cannot show a 0.1% rate: never below the highest honest peak (and the tail
    # then promises less than asked).
    clamped = benign.tail_threshold(peaks, 0.001)
    assert clamped == pytest.approx(50.0 + 1e-6)
    assert calibration.tail_probability(peaks, clamped) < 0.001
    # They can show 1%: the power user is one of the ~2 honest accounts above that threshold.
    assert benign.tail_threshold(peaks, 0.01) < 50.0


def test_report_measures_an_exact_tail_within_its_interval() -> None:
    """Exponential peaks are what the tail assumes: the held-out rate agrees with the target,
    and a big enough history measures every threshold without warnings."""
    rng = np.random.default_rng(3)
    peaks = {f"a{i}": float(p) for i, p in enumerate(rng.exponential(1.0, size=6000))}
    folds = calibration.fold_assignment(peaks)
    fprs = {"suspicious": 0.01, "extraction": 0.001}
    report = calibration.calibration_report(
        peaks, peaks, folds, fprs, dict.fromkeys(peaks, 300), history_days=30.0
    )
    for label, fpr in fprs.items():
        level = report["levels"][label]
        low, high = level["interval"]
        assert not level["extrapolated"] and low <= fpr <= high
        assert level["predicted_fpr"] == pytest.approx(fpr, rel=1e-3)
    assert report["warnings"] == []
    assert [check["fpr"] for check in report["tail_check"]][:3] == [0.05, 0.02, 0.01]


def test_report_warns_on_a_small_history_and_a_promise_held_out_accounts_break() -> None:
    rng = np.random.default_rng(4)
    # Peaks that are not exchangeable across folds: one fold holds every heavy account, so the
    # thresholds chosen on the other folds flag far more of it than they promised.
    light = rng.exponential(1.0, size=3800)
    heavy = 20.0 + rng.exponential(1.0, size=200)
    peaks = {f"a{i}": float(p) for i, p in enumerate(np.concatenate([light, heavy]))}
    folds = {a: (0 if i >= len(light) else 1 + i % 4) for i, a in enumerate(peaks)}
    report = calibration.calibration_report(
        peaks, peaks, folds, {"suspicious": 0.01}, dict.fromkeys(peaks, 5), history_days=3.0
    )
    assert any(
        "held-out check" in w and "more honest accounts will be flagged" in w
        for w in report["warnings"]
    )
    assert any("few benign accounts reach large windows" in w for w in report["warnings"])
    few = {f"a{i}": float(i) for i in range(30)}
    small = calibration.calibration_report(
        few, few, calibration.fold_assignment(few), {"suspicious": 0.01}, {}, 1.0
    )
    assert small["warnings"][0].startswith("only 30 benign accounts")


def test_live_traffic_like_the_history_does_not_move_and_shifted_traffic_does(
    fitted: ExtractionDetector, history: list[Event]
) -> None:
    same = calibration.compare_live(fitted, history)
    assert same["accounts"] >= 50 and max(same["psi"].values()) < 0.01
    assert not any("differs" in w for w in same["warnings"])
    other = calibration.compare_live(fitted, events_of(benign_users(150, 600, 7, seed=9), "o"))
    assert max(other["psi"].values()) < calibration.PSI_SHIFT  # other honest users: no shift
    snapshots = calibration.live_snapshots(fitted, history)
    top = max(v[-1] for v in fitted.benign_values_[BEHAVIOUR].values())
    shifted = [(a, {**v, BEHAVIOUR: top + 1.0}, c, e) for a, v, c, e in snapshots]
    psi = calibration.signal_shift(fitted.benign_values_, shifted)
    assert psi[BEHAVIOUR] > 1.0 and psi[CONTENT] < 0.01
    warnings = calibration.live_warnings(psi, live_accounts=80)
    assert len(warnings) == 1 and BEHAVIOUR in warnings[0] and CONTENT not in warnings[0]
    assert "too few" in calibration.live_warnings({}, live_accounts=3)[0]


def test_a_reviewed_false_positive_gets_a_ceiling_and_moves_no_threshold(
    history: list[Event], fitted: ExtractionDetector, tmp_path
) -> None:
    """An internal batch job marked false positive is not flagged again for the same traffic,
    while the same traffic from an account nobody reviewed still is; the thresholds, the
    distributions and the forest stay those of the ordinary accounts (counted in, the job
    would raise the thresholds for everyone)."""
    job = events_of(harvesters(1, 300), "job")
    account = job[0].account_id
    merged = sorted([*history, *job], key=lambda e: e.timestamp_ms)
    reviewed = ExtractionDetector()
    assert fit_with_reviewed(reviewed, merged, [account, "never-seen"]) is reviewed
    assert reviewed.thresholds_ == fitted.thresholds_  # the ordinary population's, unchanged
    assert set(reviewed.reviewed_peaks_) == {account}
    assert reviewed.calibration_report_["reviewed_accounts"] == 1
    peak = reviewed.reviewed_peaks_[account]
    assert peak > fitted.thresholds_["extraction"]  # the job is what the detector flags
    assert reviewed.thresholds_for(account) == {"suspicious": peak + 1, "extraction": peak + 1}
    assert REVIEW_MARGIN == 1 and reviewed.thresholds_for("anyone") == reviewed.thresholds_
    stranger = [e.model_copy(update={"account_id": "stranger"}) for e in job]
    assert reviewed.update("stranger", stranger).label == "extraction"  # the same, unvouched
    assert reviewed.update(account, job).label == "benign"
    save_calibration(reviewed, tmp_path)
    restored = load_calibration(ExtractionDetector(), tmp_path)
    assert restored.reviewed_peaks_ == pytest.approx(reviewed.reviewed_peaks_, abs=1e-6)
