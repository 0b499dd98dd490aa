"""Calibration that survives a real benign history: cross-fitted thresholds, a held-out report of
the false-positive rate they give, and checks of the history against a sample of live traffic
(`distillguard calibrate --live`). The worker's drift monitor, which reads the report, is
`detectors.drift`.

Why cross-fitting: an honest account scored against benign distributions (and a forest) that
contain its own windows looks more ordinary than a new honest account will. A power user who is
the only one with 256-request windows is compared with itself and scores ~0 in-sample, while in
production the next power user is compared with everyone else. So each benign account's lifetime
peak is computed *out of fold*: benign accounts are split into `FOLDS` folds by a stable hash of
their id, and a fold's accounts are scored against distributions pooled from, and a forest
fitted on, the other folds only. Thresholds are conformal quantiles of those out-of-fold peaks
(an exponential tail where the history is too small: `benign.tail_threshold`); the
distributions used in production are still fitted on every account.

Why a nested check: choosing a quantile on the same peaks it is measured on says nothing about
the tail extrapolation. The report therefore measures each threshold's false-positive rate once
more out of fold (a fold's accounts against the threshold chosen on the other folds' peaks) and
puts it, with a Wilson 95% interval, next to what the threshold promised (`tail_probability`).

>>> wilson(0, 100)[1] < 0.04 < wilson(1, 100)[1]
True
>>> fold_of("user-1", 5) == fold_of("user-1", 5)
True
>>> round(tail_probability(np.arange(100.0), benign.tail_threshold(np.arange(100.0), 0.01)), 4)
0.0099
"""

from __future__ import annotations

import copy
import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from core.events import Event, account_histories
from detectors.drift import percent, wilson
from detectors.fusion import benign
from detectors.fusion.benign import (
    BUCKETS,
    MIN_BUCKET_ACCOUNTS,
    MIN_BUCKET_VALUES,
    BenignValues,
    IsolationSurprise,
    Snapshot,
)
from detectors.fusion.scoring import (
    active_days,
    distinct_prompts,
    fused,
    harvest,
    output_budget,
    output_weight,
)
from detectors.signals import SIGNALS

if TYPE_CHECKING:
    from detectors.fusion.detector import ExtractionDetector

FOLDS = 5
FOREST_SAMPLE = 4000  # IsolationSurprise trains on at most this many vectors anyway
MIN_ACCOUNTS = 50  # below this, no threshold is more than a guess
MEASURABLE = 3  # a rate is measured (not extrapolated) when ≥ this many accounts lie above it
THIN_BUCKET = 3 * MIN_BUCKET_ACCOUNTS  # a window size this few accounts reach is thinly known
PSI_SHIFT = 0.25  # population stability index: above 0.25 is the usual "major shift"
TAIL_CHECK_FPRS = (0.05, 0.02, 0.01, 0.005, 0.002, 0.001, 0.0005, 0.0002, 0.0001)


# --- cross-fitting -----------------------------------------------------------------------------
def fold_of(account_id: str, folds: int) -> int:
    """The account's fold: a stable hash (Python's `hash` is salted per process), so the same
    history always gives the same thresholds."""
    digest = hashlib.blake2b(account_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % folds


def fold_assignment(accounts: Iterable[str], folds: int = FOLDS) -> dict[str, int]:
    """Each account's fold; fewer accounts than folds give one account a fold."""
    unique = sorted(set(accounts))
    k = max(1, min(folds, len(unique)))
    if k < folds:
        return {account_id: i for i, account_id in enumerate(unique)}
    return {account_id: fold_of(account_id, k) for account_id in unique}


def cross_fitted_peaks(
    snapshots: list[Snapshot], seed: int, folds: int = FOLDS, silent: Iterable[str] = ()
) -> tuple[dict[str, float], dict[str, float], dict[str, int]]:
    """Each benign account's lifetime peak fused raw score and harvest evidence
    (`scoring.harvest`), out of fold, and its fold; `silent` accounts (never scored: too few
    requests) peak at 0 (`benign.lifetime_maxima`).

    The snapshot values are computed once by `fit`; cross-fitting only re-pools them, recomputes
    surprises (vectorised: `surprise_matrix`) and refits the forest (on a sample of at most
    `FOREST_SAMPLE` other-fold vectors, as production does), so it costs about one forest fit
    per fold. With a single account there is nothing to hold out: the peaks are in-sample."""
    table = SnapshotTable.of(snapshots)
    assignment = fold_assignment([*table.accounts, *silent], folds)
    fold = np.array([assignment[a] for a in table.accounts])
    everything = np.arange(len(snapshots))
    held_folds = sorted(set(assignment.values()))
    raw = np.zeros(len(snapshots))
    harvested = np.zeros(len(snapshots))
    rng = np.random.default_rng(seed)
    for held in held_folds if len(held_folds) > 1 else [None]:
        inside = everything if held is None else np.flatnonzero(fold != held)
        outside = everything if held is None else np.flatnonzero(fold == held)
        pooled = benign.pool(snapshots[i] for i in inside)
        if len(inside) > FOREST_SAMPLE:
            inside = np.sort(rng.choice(inside, FOREST_SAMPLE, replace=False))
        training = surprise_matrix(pooled, table, inside)
        scored = surprise_matrix(pooled, table, outside)
        forest = IsolationSurprise.fit(training, seed)(scored) if len(training) > 1 else 0.0
        weights = table.output_weights[outside]
        raw[outside] = fused(scored, forest, table.distinct_prompts[outside], weights)
        harvested[outside] = harvest(scored, table.active_days[outside], weights)
    return (
        benign.lifetime_maxima(table.accounts, raw, silent),
        benign.lifetime_maxima(table.accounts, harvested, silent),
        assignment,
    )


@dataclass(frozen=True)
class SnapshotTable:
    """Snapshots as arrays: each signal's value (NaN where the snapshot has none) and the window
    size it is compared at (`benign.compared_at`)."""

    accounts: list[str]
    values: np.ndarray  # (snapshots, signals)
    sizes: np.ndarray  # (snapshots, signals)
    distinct_prompts: np.ndarray  # (snapshots,): what `scoring.credibility` weighs by
    active_days: np.ndarray  # (snapshots,): what `scoring.harvest` needs
    output_weights: np.ndarray  # (snapshots,): `scoring.output_weight` of each

    @classmethod
    def of(cls, snapshots: list[Snapshot]) -> SnapshotTable:
        values = np.full((len(snapshots), len(SIGNALS)), np.nan)
        sizes = np.zeros((len(snapshots), len(SIGNALS)), dtype=np.int64)
        for row, (_, by_signal, count, embedded) in enumerate(snapshots):
            for column, signal in enumerate(SIGNALS):
                if signal.name in by_signal:
                    values[row, column] = by_signal[signal.name]
                sizes[row, column] = benign.compared_at(signal, count, embedded)
        distinct = np.array([distinct_prompts(v, c) for _, v, c, _ in snapshots], np.float64)
        days = np.array([active_days(v) for _, v, _, _ in snapshots], np.float64)
        weights = output_weight(np.array([output_budget(v) for _, v, _, _ in snapshots]))
        accounts = [account_id for account_id, *_ in snapshots]
        return cls(accounts, values, sizes, distinct, days, weights)


def surprise_matrix(pooled: BenignValues, table: SnapshotTable, rows: np.ndarray) -> np.ndarray:
    """`benign.surprises` of many snapshots at once (same bucket fallback, tail extension and
    cap; a test holds the two equal): cross-fitting computes surprises five times over, and one
    Python call per value would make it the slowest part of calibration."""
    out = np.zeros((len(rows), len(SIGNALS)))
    if not len(rows):
        return out
    for column, signal in enumerate(SIGNALS):
        by_bucket = pooled.get(signal.name, {})
        values = table.values[rows, column]
        sizes = table.sizes[rows, column]
        present = ~np.isnan(values)
        index = _bucket_index(sizes)
        for size_bucket in {benign.bucket_of(int(n)) for n in np.unique(sizes[present])}:
            if size_bucket is None:
                continue
            bucket = benign.reference_bucket(by_bucket, size_bucket)
            if bucket is None:
                continue
            chosen = present & (index == BUCKETS.index(size_bucket))
            out[chosen, column] = -np.log10(benign.tail_p(by_bucket[bucket], values[chosen]))
    return out


def _bucket_index(sizes: np.ndarray) -> np.ndarray:
    """Index in BUCKETS of `bucket_of` each size (−1 below the smallest)."""
    return np.searchsorted(np.asarray(BUCKETS), sizes, side="right") - 1


def thresholds(peaks: Mapping[str, float], fprs: Mapping[str, float]) -> dict[str, float]:
    """Each label's threshold: the tail quantile of the (out-of-fold) peaks at its FPR."""
    values = np.asarray(list(peaks.values()))
    return {label: benign.tail_threshold(values, fpr) for label, fpr in fprs.items()}


# --- the report --------------------------------------------------------------------------------
def tail_probability(maxima: np.ndarray, value: float) -> float:
    """What `benign.tail_threshold` promises at `value`: the chance that a new honest account's
    peak reaches it. Inside the history, the conformal rate (peaks at or above + 1) / (n + 1);
    beyond the highest peak, the smaller of 1 / (n + 1) and the exponential tail fitted above
    the 90th percentile (the extrapolation the held-out check tests)."""
    maxima = np.asarray(maxima, dtype=np.float64)
    if not len(maxima):
        return 0.0
    above = int(np.sum(maxima >= value))
    conformal = (above + 1) / (len(maxima) + 1)
    if above:
        return round(conformal, 12)
    q90 = float(np.quantile(maxima, 0.9))
    excess = maxima[maxima > q90] - q90
    scale = float(excess.mean()) if len(excess) else float(maxima.std() or 1.0)
    return round(min(conformal, 0.1 * math.exp(-(value - q90) / scale)), 12)


def held_out_rate(
    peaks: Mapping[str, float], assignment: Mapping[str, int], fpr: float
) -> tuple[int, int]:
    """(flagged, accounts): each fold's accounts against the threshold chosen at `fpr` on the
    other folds' peaks, summed over folds: the false-positive rate of the threshold-choosing
    procedure on accounts it never saw."""
    folds = sorted(set(assignment[a] for a in peaks))
    if len(folds) < 2:
        values = np.asarray(list(peaks.values()))
        return int(np.sum(values >= benign.tail_threshold(values, fpr))), len(values)
    flagged = 0
    for held in folds:
        others = np.asarray([p for a, p in peaks.items() if assignment[a] != held])
        threshold = benign.tail_threshold(others, fpr)
        flagged += sum(1 for a, p in peaks.items() if assignment[a] == held and p >= threshold)
    return flagged, len(peaks)


def calibration_report(
    peaks: Mapping[str, float],
    in_sample: Mapping[str, float],
    assignment: Mapping[str, int],
    fprs: Mapping[str, float],
    sizes: Mapping[str, int],
    history_days: float,
) -> dict[str, Any]:
    """What the thresholds will do on honest traffic like this history, and why to doubt it.

    Per label: the threshold, the in-sample one it replaces, the FPR the exponential tail
    predicts at it, the held-out FPR measured with its Wilson interval, and flagged accounts per
    1,000 over a history as long as this one. `tail_check` compares the tail with held-out rates
    at every FPR this history can measure. Warnings say when the history is too small (to
    measure the target FPR, to trust any threshold, to know large windows) or when the
    extrapolation disagrees with what was measured."""
    values = np.asarray(list(peaks.values()))
    in_sample_values = np.asarray(list(in_sample.values()))
    final = thresholds(peaks, fprs)
    accounts = len(values)
    levels: dict[str, dict[str, Any]] = {}
    warnings: list[str] = []
    for label, fpr in fprs.items():
        flagged, total = held_out_rate(peaks, assignment, fpr)
        low, high = wilson(flagged, total)
        predicted = tail_probability(values, final[label])
        extrapolated = accounts * fpr < MEASURABLE
        in_sample_threshold = benign.tail_threshold(in_sample_values, fpr)
        levels[label] = {
            "target_fpr": fpr,
            "threshold": final[label],
            "in_sample_threshold": in_sample_threshold,
            # What the old in-sample threshold would flag among accounts it did not see.
            "in_sample_measured_fpr": float(np.mean(values >= in_sample_threshold)),
            "predicted_fpr": predicted,
            "measured_fpr": flagged / total if total else 0.0,
            "flagged": flagged,
            "interval": [low, high],
            "extrapolated": extrapolated,
            "per_1000_accounts": [1000 * flagged / max(total, 1), 1000 * low, 1000 * high],
        }
        if extrapolated:
            warnings.append(
                f"{label} threshold (FPR {fpr:g}) is extrapolated: measuring it needs at least "
                f"{math.ceil(MEASURABLE / fpr):,} benign accounts, the history has {accounts:,}"
            )
        if not low <= predicted <= high:  # the interval says so even when extrapolated
            side, meaning = _disagreement(predicted, high)
            warnings.append(
                f"{label} threshold: held-out FPR {flagged}/{total} (95% {percent(low)}–"
                f"{percent(high)}) is {side} the tail's {percent(predicted)}: {meaning}"
            )
    tail_check = []
    for fpr in TAIL_CHECK_FPRS:
        if accounts * fpr < MEASURABLE:
            continue
        flagged, total = held_out_rate(peaks, assignment, fpr)
        low, high = wilson(flagged, total)
        tail_check.append(
            {
                "fpr": fpr,
                "measured_fpr": flagged / total,
                "flagged": flagged,
                "interval": [low, high],
            }
        )
        if not low <= fpr <= high:
            side, meaning = _disagreement(fpr, high)
            warnings.append(
                f"held-out check at FPR {fpr:g}: {flagged}/{total} new honest accounts (95% "
                f"{percent(low)}–{percent(high)}) is {side} it: {meaning}"
            )
    if accounts < MIN_ACCOUNTS:
        warnings.insert(
            0,
            f"only {accounts} benign accounts with at least {BUCKETS[0]} requests (want "
            f"≥ {MIN_ACCOUNTS}): every threshold rests on a handful of accounts",
        )
    reaching = {b: sum(1 for n in sizes.values() if n >= b) for b in BUCKETS}
    thin = [b for b in BUCKETS if reaching[b] < THIN_BUCKET]
    if thin:
        known = [b for b in BUCKETS if reaching[b] >= MIN_BUCKET_ACCOUNTS]
        fallback = (
            f"windows of {thin[0]}+ requests are compared with {known[-1]}-request benign values"
            if known and known[-1] < thin[0] and reaching[thin[0]] < MIN_BUCKET_ACCOUNTS
            else "their benign distributions are thin"
        )
        warnings.append(
            "few benign accounts reach large windows ("
            + ", ".join(f"{b}+ requests: {reaching[b]}" for b in thin)
            + f"; want ≥ {THIN_BUCKET}): {fallback}, so live power users may look unusual"
        )
    return {
        "folds": len(set(assignment.values())),
        "accounts": accounts,
        "requests": int(sum(sizes.values())),
        "history_days": round(history_days, 3),
        "levels": levels,
        "tail_check": tail_check,
        "bucket_accounts": {str(b): reaching[b] for b in BUCKETS},
        "warnings": warnings,
    }


def history_days(histories: Iterable[list[Event]]) -> float:
    """Span of a benign history in days (first to last request)."""
    first, last = math.inf, -math.inf
    for events in histories:
        if events:
            first = min(first, events[0].timestamp_ms)
            last = max(last, events[-1].timestamp_ms)
    return 0.0 if first > last else (last - first) / 86_400_000


def _disagreement(predicted: float, high: float) -> tuple[str, str]:
    """Which way the measured rate misses the tail's prediction, and what that means."""
    if predicted > high:
        return "below", "thresholds are conservative (fewer honest alerts, later detection)"
    return "above", "more honest accounts will be flagged than targeted"


# --- history vs live traffic ----------------------------------------------------------------
def live_snapshots(
    detector: ExtractionDetector, events: Iterable[Event], most: int = 20_000, seed: int = 0
) -> list[Snapshot]:
    """Cheap signal values of live accounts, taken like calibration's (after every request from
    the 4th on), through the same feature and signal code, on a copy of the detector with no
    embedder: the detector's own state is untouched and nothing is embedded. A sample with more
    than `most` such moments keeps a random subset of them (random, not every n-th: a signal
    that grows with the window would otherwise be seen at biased positions)."""
    live = copy.copy(detector)
    live.embedder = None
    live.accounts = {}
    prepared = live._prepare(account_histories(events))
    moments = sum(max(0, len(items) - BUCKETS[0] + 1) for items in prepared.values())
    keep = min(1.0, most / max(moments, 1))
    rng = np.random.default_rng(seed)
    return live.replay(prepared, None if keep >= 1.0 else lambda: bool(rng.random() < keep))


def _mid_ranks(reference: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Each value's mid-rank among the sorted reference values, in [0, 1]."""
    low = np.searchsorted(reference, values, side="left")
    high = np.searchsorted(reference, values, side="right")
    return (low + high) / (2 * len(reference))


def signal_shift(
    benign_values: BenignValues,
    snapshots: list[Snapshot],
    bins: int = 10,
    min_accounts: int = 20,
) -> dict[str, float]:
    """Population stability index of each cheap signal, live against calibration.

    Each live value is ranked (mid-rank) among the benign values of its own window-size bucket,
    and the live ranks are binned next to the calibration values' own ranks, weighted like the
    live values over buckets (live accounts being shorter than calibration lifetimes is not
    itself a shift; ties keep their weight in both). Windows whose bucket the calibration lacks
    (the detector compares them with a smaller bucket's values) are left out: the calibration
    holds no benign values of that size to compare with; `compare_live` reports them instead.
    Whole-history signals are left out (a sample of live traffic holds no whole histories), and
    so are signals with fewer than `min_accounts` live accounts."""
    shifts: dict[str, float] = {}
    edges = np.linspace(0.0, 1.0, bins + 1)
    edges[-1] += 1e-9
    for signal in SIGNALS:
        by_bucket = benign_values.get(signal.name, {})
        if signal.needs_embeddings or signal.lifetime or not by_bucket:
            continue
        live: dict[int, list[float]] = {}
        accounts: set[str] = set()
        for account_id, values, count, _ in snapshots:
            bucket = benign.bucket_of(count)
            if signal.name in values and len(by_bucket.get(bucket or 0, ())) >= MIN_BUCKET_VALUES:
                assert bucket is not None
                live.setdefault(bucket, []).append(values[signal.name])
                accounts.add(account_id)
        if len(accounts) < min_accounts:
            continue
        total = sum(len(v) for v in live.values())
        observed = np.zeros(bins)
        expected = np.zeros(bins)
        for bucket, found in live.items():
            reference = by_bucket[bucket]
            observed += np.histogram(_mid_ranks(reference, np.asarray(found)), edges)[0]
            own = np.histogram(_mid_ranks(reference, reference), edges)[0] / len(reference)
            expected += own * len(found)
        observed, expected = observed / total, expected / total
        observed, expected = np.maximum(observed, 1e-4), np.maximum(expected, 1e-4)
        shifts[signal.name] = float(np.sum((observed - expected) * np.log(observed / expected)))
    return shifts


def live_warnings(
    shifts: Mapping[str, float], live_accounts: int, threshold: float = PSI_SHIFT
) -> list[str]:
    """Warnings when live traffic no longer looks like the calibration history."""
    warnings = []
    if live_accounts < MIN_ACCOUNTS:
        warnings.append(
            f"the live sample has {live_accounts} accounts with at least {BUCKETS[0]} requests: "
            f"too few to compare with the calibration (want ≥ {MIN_ACCOUNTS})"
        )
    moved = sorted(((psi, s) for s, psi in shifts.items() if psi >= threshold), reverse=True)
    if moved:
        warnings.append(
            "live traffic differs from the calibration history in "
            + ", ".join(f"{s} (PSI {psi:.2f})" for psi, s in moved)
            + ": recalibrate on recent benign traffic, or expect a different alert rate"
        )
    return warnings


def compare_live(detector: ExtractionDetector, events: Iterable[Event]) -> dict[str, Any]:
    """How far a sample of live traffic is from the calibration history: each cheap signal's
    PSI (`signal_shift`), live accounts reaching window sizes the history barely knows, and the
    warnings to print. Cheap: no embedding, one pass over the sample."""
    snapshots = live_snapshots(detector, events)
    sizes: dict[str, int] = {}
    for account_id, _, count, _ in snapshots:
        sizes[account_id] = max(sizes.get(account_id, 0), count)
    shifts = signal_shift(detector.benign_values_, snapshots)
    warnings = live_warnings(shifts, len(sizes))
    report = getattr(detector, "calibration_report_", None) or {}
    known = report.get("bucket_accounts", {})
    unknown = {
        b: n
        for b in BUCKETS
        if (n := sum(1 for size in sizes.values() if size >= b))
        and int(known.get(str(b), MIN_BUCKET_ACCOUNTS)) < MIN_BUCKET_ACCOUNTS
    }
    if unknown:
        warnings.append(
            "live accounts reach window sizes the calibration history barely has ("
            + ", ".join(
                f"{b}+ requests: {n} live, {known.get(str(b))} benign" for b, n in unknown.items()
            )
            + "): calibrate on a history that includes such power users"
        )
    return {
        "accounts": len(sizes),
        "snapshots": len(snapshots),
        "psi": {signal: round(psi, 4) for signal, psi in shifts.items()},
        "warnings": warnings,
    }
