"""Benign distributions and surprise: how unusual a signal value is among honest accounts.

Each signal's value is compared with benign accounts' values at a comparable window size
(buckets of 4, 8, …, 256 requests), or, for whole-history signals, with benign accounts'
lifetime peaks: its *surprise* is −log10 of the benign tail probability.
An IsolationForest fitted on benign accounts' surprise vectors adds one more surprise for
unusual *combinations* of individually ordinary signals. Account-level thresholds are conformal
quantiles of benign accounts' lifetime maxima, with an exponential tail for false-positive
rates the history is too small to measure.

>>> import numpy as np
>>> benign = {"greedy_share": {4: np.linspace(0.0, 0.5, 100)}}
>>> surprise(benign, "greedy_share", 6, 0.25)[0] < 0.5 < surprise(benign, "greedy_share", 6, 0.9)[0]
True
>>> bucket_of(3), bucket_of(6), bucket_of(1000)
(None, 4, 256)
>>> round(tail_threshold(np.arange(100.0), fpr=0.01), 2)  # just above the top peak: 1/101
99.0
>>> round(tail_threshold(np.arange(100.0), fpr=0.001), 2)  # extrapolated: the exponential tail
113.97
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.embedder import Embedder
from detectors.features import EventFeatures
from detectors.index import BenignReference
from detectors.signals import SIGNALS, Reference, Signal

BUCKETS = (4, 8, 16, 32, 64, 128, 256)
MIN_BUCKET_VALUES = 20
MIN_BUCKET_ACCOUNTS = 10
MAX_SURPRISE = 6.0  # one signal alone never says more than p = 1e-6

BenignValues = dict[str, dict[int, np.ndarray]]  # signal -> bucket -> sorted benign values
Snapshot = tuple[str, dict[str, float], int, int]  # account, values, window size, embedded


def bucket_of(count: int) -> int | None:
    """The largest calibration bucket not above `count` (None below the smallest)."""
    eligible = [b for b in BUCKETS if b <= count]
    return eligible[-1] if eligible else None


# An opening this many other benign accounts use is an app's or a habit's, not one account's own
# (the campaign linker's `common_accounts` for skeletons).
USUAL_OPENING_ACCOUNTS = 2


@dataclass(frozen=True)
class UsualOpenings:
    """How benign accounts open their prompts (`skeletons.opening_key`). An opening is usual
    for an account when at least `accounts` *other* benign accounts use it, so calibration
    judges each history account by the others, and a live account (new, or one of the history's
    replayed) is judged the same way."""

    accounts: int = USUAL_OPENING_ACCOUNTS
    common: frozenset[str] = frozenset()  # used by more than `accounts` benign accounts
    shared: dict[str, frozenset[str]] = field(default_factory=dict)  # by exactly `accounts`

    @classmethod
    def fit(
        cls, features: Iterable[EventFeatures], accounts: int = USUAL_OPENING_ACCOUNTS
    ) -> UsualOpenings:
        users: dict[str, set[str]] = {}
        for f in features:
            if f.opening:
                users.setdefault(f.opening, set()).add(f.account_id)
        return cls(
            accounts,
            frozenset(key for key, who in users.items() if len(who) > accounts),
            {key: frozenset(who) for key, who in users.items() if len(who) == accounts},
        )

    def unusual(self, f: EventFeatures) -> bool:
        if not f.opening or f.opening in self.common:
            return False
        owners = self.shared.get(f.opening)
        return owners is None or f.account_id in owners

    def to_json(self) -> dict[str, Any]:
        return {
            "accounts": self.accounts,
            "common": sorted(self.common),
            "shared": {key: sorted(who) for key, who in sorted(self.shared.items())},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> UsualOpenings:
        shared = {key: frozenset(who) for key, who in data["shared"].items()}
        return cls(data["accounts"], frozenset(data["common"]), shared)


def pool(snapshots: Iterable[Snapshot]) -> BenignValues:
    """Benign values of every signal by bucket. A bucket that only a handful of heavy accounts
    reach describes those accounts, not benign traffic: larger windows then fall back to the
    largest well-populated bucket."""
    pooled: dict[str, dict[int, list[float]]] = {}
    contributors: dict[tuple[str, int], set[str]] = {}
    whole_history: dict[tuple[str, str], float] = {}  # (signal, account) -> lifetime peak
    for account_id, values, count, embedded in snapshots:
        for signal in SIGNALS:
            if signal.name in values and signal.lifetime:
                key = (signal.name, account_id)
                whole_history[key] = max(whole_history.get(key, 0.0), values[signal.name])
            elif signal.name in values:
                bucket = bucket_of(embedded if signal.needs_embeddings else count)
                if bucket is not None:
                    pooled.setdefault(signal.name, {}).setdefault(bucket, []).append(
                        values[signal.name]
                    )
                    contributors.setdefault((signal.name, bucket), set()).add(account_id)
    for (signal_name, account_id), peak in whole_history.items():
        pooled.setdefault(signal_name, {}).setdefault(BUCKETS[0], []).append(peak)
        contributors.setdefault((signal_name, BUCKETS[0]), set()).add(account_id)
    return {
        signal: {
            bucket: np.sort(np.asarray(v))
            for bucket, v in buckets.items()
            if len(contributors[signal, bucket]) >= MIN_BUCKET_ACCOUNTS
        }
        for signal, buckets in pooled.items()
    }


def reference_bucket(by_bucket: dict[int, np.ndarray], count: int) -> int | None:
    """The bucket a value at window size `count` is compared in: its own, or the largest
    smaller one with enough benign values (None: no comparison possible)."""
    bucket = bucket_of(count)
    while bucket is not None and len(by_bucket.get(bucket, ())) < MIN_BUCKET_VALUES:
        bucket = bucket_of(bucket - 1)
    return bucket


def tail_p(reference: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Benign tail probability of each of `values` against sorted benign `reference` values.
    Beyond the largest benign value the tail is extended exponentially (scale: the larger of the
    benign top decile's range and the benign standard deviation), so far-out values count more
    than barely-out ones, down to a floor of 10^−MAX_SURPRISE."""
    values = np.asarray(values, dtype=np.float64)
    tail = len(reference) - np.searchsorted(reference, values, side="left")
    p = (tail + 1) / (len(reference) + 1)
    beyond = tail == 0
    if beyond.any():
        top = reference[int(0.9 * len(reference)) :]
        spread = max(float(top[-1] - top[0]), float(reference.std()))
        scale = max(spread, 0.05 * max(abs(float(top[-1])), 1e-3))
        p = np.where(beyond, p * np.exp(-(values - float(reference[-1])) / scale), p)
    return np.maximum(p, 10.0**-MAX_SURPRISE)


def surprise(benign: BenignValues, signal: str, count: int, value: float) -> tuple[float, float]:
    """(−log10 p, p) of `value` against benign values at a comparable window size (`tail_p`)."""
    by_bucket = benign.get(signal, {})
    bucket = reference_bucket(by_bucket, count)
    if bucket is None:
        return 0.0, 1.0
    p = float(tail_p(by_bucket[bucket], np.array([value]))[0])
    return -math.log10(p), p


def surprises(
    benign: BenignValues, values: dict[str, float], count: int, embedded: int
) -> np.ndarray:
    """Every signal's surprise (0 for signals without a value), in `SIGNALS` order."""
    return np.array(
        [
            surprise(benign, s.name, compared_at(s, count, embedded), values[s.name])[0]
            if s.name in values
            else 0.0
            for s in SIGNALS
        ]
    )


def compared_at(signal: Signal, count: int, embedded: int) -> int:
    """The window size a signal's value is compared at: whole-history signals are compared
    with benign accounts' whole histories (one bucket: their lifetime peaks), window signals
    with benign windows of a comparable size."""
    if signal.lifetime:
        return BUCKETS[0]
    return embedded if signal.needs_embeddings else count


def fit_reference(
    embedder: Embedder,
    features: list[EventFeatures],
    topics: int,
    reference_size: int,
    seed: int,
) -> tuple[Reference, BenignReference]:
    """The benign reference of the embedding signals (topic centroids, a prompt sample and the
    RBF bandwidth: the sample's median distance), from at most 4000 distinct benign prompts;
    also the topic centroids themselves, which the campaign linker reads."""
    unique = {f.prompt_key: f.prompt for f in features}
    rng = np.random.default_rng(seed)
    prompts = list(unique.values())
    if len(prompts) > 4000:
        prompts = [prompts[i] for i in rng.choice(len(prompts), 4000, replace=False)]
    vectors = np.asarray(embedder(prompts), dtype=np.float32)
    k = max(1, min(topics, len(vectors) // 39))  # FAISS wants ≥ 39 points a centroid
    centroids = BenignReference(k=k, seed=seed)
    centroids.fit(vectors)
    sample = vectors[rng.choice(len(vectors), min(reference_size, len(vectors)), False)]
    distances = np.sqrt(np.maximum(0.0, 2.0 - 2.0 * (sample @ sample.T)))
    bandwidth = float(np.median(distances[np.triu_indices(len(sample), 1)])) or 1.0
    return Reference(centroids.centroids_, sample, bandwidth), centroids


@dataclass
class IsolationSurprise:
    """Surprise of a combination of signal surprises: an IsolationForest on (a seeded sample of)
    benign surprise vectors; the training sample is kept so a saved calibration refits the
    identical forest."""

    training: np.ndarray
    forest: Any
    scores: np.ndarray  # benign anomaly scores, ascending

    @classmethod
    def fit(cls, vectors: np.ndarray, seed: int) -> IsolationSurprise:
        from sklearn.ensemble import IsolationForest

        rng = np.random.default_rng(seed)
        if len(vectors) > 4000:
            vectors = vectors[rng.choice(len(vectors), 4000, replace=False)]
        forest = IsolationForest(n_estimators=100, random_state=seed).fit(vectors)
        return cls(vectors, forest, np.sort(-forest.score_samples(vectors)))

    def __call__(self, vectors: np.ndarray) -> np.ndarray:
        if not len(vectors):
            return np.zeros(len(vectors))
        anomaly = -forest_scores(self.forest, vectors)
        tails = len(self.scores) - np.searchsorted(self.scores, anomaly, side="left")
        return -np.log10((tails + 1) / (len(self.scores) + 1))


def forest_scores(forest: Any, vectors: np.ndarray) -> np.ndarray:
    """`forest.score_samples(vectors)` of a fitted IsolationForest, its trees walked here in
    turn: scikit-learn runs each of the 100 trees as a joblib task, 4.6 ms a call for 20 rows
    against 1.1 ms here, and a worker at a steady rate pays that every batch of a few dozen
    rows. The same arithmetic in the same order as scikit-learn 1.9's `_compute_score_samples`
    (a test compares the two); its own call where the fitted attributes this reads are not
    there."""
    try:
        from sklearn.ensemble._iforest import _average_path_length

        path_lengths = forest._decision_path_lengths
        average_lengths = forest._average_path_length_per_tree
        denominator = len(forest.estimators_) * _average_path_length([forest._max_samples])
        subsample = forest._max_features != vectors.shape[1]
        trees = list(zip(forest.estimators_, forest.estimators_features_, strict=True))
    except (AttributeError, ImportError):
        return forest.score_samples(vectors)
    rows = np.asarray(vectors, dtype=np.float32)
    depths = np.zeros(len(rows), order="F")
    for index, (tree, features) in enumerate(trees):
        leaves = tree.apply(rows[:, features] if subsample else rows, check_input=False)
        depths += path_lengths[index][leaves] + average_lengths[index][leaves] - 1.0
    ratio = np.divide(depths, denominator, out=np.ones_like(depths), where=denominator != 0)
    return -(2**-ratio)


def lifetime_maxima(
    accounts: list[str], values: np.ndarray, silent: Iterable[str] = ()
) -> dict[str, float]:
    """Each account's highest value over its snapshots (0 floor). `silent`: accounts that
    belong to the population but were never scored (fewer than BUCKETS[0] requests); they peak
    at 0. A threshold chosen on the maxima flags a share of *accounts*, and a new honest account
    that sends three requests is one of them: leaving such accounts out sets the threshold
    higher than its target needs (the 1 % threshold of the enterprise-nat history sat at its
    2nd-highest scored account instead of its 4th)."""
    maxima: dict[str, float] = dict.fromkeys(silent, 0.0)
    for account_id, value in zip(accounts, values, strict=True):
        maxima[account_id] = max(maxima.get(account_id, 0.0), float(value))
    return maxima


def tail_threshold(maxima: np.ndarray, fpr: float) -> float:
    """The threshold that flags at most `fpr` of new honest accounts, from benign maxima.

    Where the history can measure the rate (r = ⌊fpr·(n + 1)⌋ ≥ 1), it is just above the r-th
    highest maximum: a new honest account's peak, exchangeable with the history's, exceeds it
    with probability r / (n + 1) ≤ fpr whatever the distribution (the split-conformal quantile;
    a fitted tail flagged 2-3 % of held-out honest accounts at a 1 % target). Where it cannot,
    the rate is extrapolated with an exponential tail fitted above the 90th percentile (peaks
    over threshold), never below the highest benign maximum seen. `calibration` reports both
    against held-out accounts."""
    if len(maxima) == 0:
        return 1.0
    ranked = np.sort(np.asarray(maxima, dtype=np.float64))[::-1]
    measured = _measured(ranked, fpr)
    if measured is not None:
        return measured
    q90, scale = _exponential_tail(ranked)
    return max(q90 + scale * math.log(0.1 / fpr), float(ranked[0]) + 1e-6)


def tail_value(maxima: np.ndarray, p: float) -> float:
    """The value new honest maxima exceed with probability `p`: `tail_threshold` where the
    history measures it; beyond it, rarer is always higher. Past the largest maximum the tail
    continues from it (the same exponential scale). `tail_threshold` instead stays at the
    largest until the tail fitted from the 90th percentile overtakes it, so the harvest arm
    mapped every harvest beyond every honest one to one honest account's peak, however far
    beyond: on sdk-developers (2026-12-05) every harvest value from 4.0 up mapped to 12.85,
    0.016 above the `suspicious` threshold, a knife edge."""
    if len(maxima) == 0:
        return 1.0
    ranked = np.sort(np.asarray(maxima, dtype=np.float64))[::-1]
    measured = _measured(ranked, p)
    if measured is not None:
        return measured
    q90, scale = _exponential_tail(ranked)
    top = float(ranked[0]) + scale * math.log(1.0 / ((len(ranked) + 1) * p)) + 1e-6
    return max(q90 + scale * math.log(0.1 / p), top)


def _measured(ranked: np.ndarray, p: float) -> float | None:
    """Just above the r-th highest of descending maxima, r = ⌊p·(n + 1)⌋, where the history
    measures the rate p (r ≥ 1); None where it cannot."""
    r = math.floor(p * (len(ranked) + 1))
    return float(ranked[r - 1]) + 1e-6 if r >= 1 else None


def _exponential_tail(ranked: np.ndarray) -> tuple[float, float]:
    """(90th percentile, mean excess above it) of descending maxima: peaks over threshold."""
    q90 = float(np.quantile(ranked, 0.9))
    excess = ranked[ranked > q90] - q90
    return q90, float(excess.mean()) if len(excess) else float(ranked.std() or 1.0)
