"""Clean-room baselines from the literature, run beside DistillGuard's detector on the same traffic.

Written from the papers' descriptions (no code taken from anywhere), adapted to text: where the
papers compare images, these compare MiniLM sentence embeddings of prompts. Each one calibrates
its threshold in `fit` on benign accounts at a target false-positive rate of accounts (default
0.1%), never on attack labels, and its alarm latches: an assessment reports the most extreme
statistic the account has reached, which is also what calibration measures on benign accounts.
Scores put the statistic's margin over the threshold, in units of its spread across benign
accounts, through a logistic: the threshold sits at 0.5 and accounts keep the statistic's order.

- `PradaDetector`: Juuti et al., "PRADA: Protecting against DNN Model Stealing Attacks" (2019).
- `MmdDetector`: per-account maximum mean discrepancy against a benign reference (Liu et al. 2026).
- `VolumeZScoreDetector`: an account's requests per window as a z-score against benign accounts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Self

import numpy as np

from core.embedder import Embedder
from core.events import Event, account_histories
from core.verdicts import Assessment, Reason
from detectors.base import Detector
from detectors.features import PROMPT_CHARS
from detectors.signals import shapiro_w
from detectors.volume import VolumeDetector

# --- shared -----------------------------------------------------------------------------------


def upper_threshold(values: Iterable[float], target_fpr: float) -> float:
    """A value at most `target_fpr` of accounts exceed; with fewer than 1/target_fpr accounts,
    the benign maximum (the same rule as `VolumeDetector.fit`)."""
    ordered = np.sort(np.fromiter(values, dtype=float))
    return float(ordered[min(len(ordered) - 1, int((1 - target_fpr) * len(ordered)))])


def _spread(values: Iterable[float], floor: float) -> float:
    return max(float(np.std(np.fromiter(values, dtype=float))), floor)


def _assessment(
    signal: str, value: float, margin: float | None, evidence: dict[str, Any]
) -> Assessment:
    """Flag when the statistic is past its threshold (margin > 0); `None`: not enough data yet."""
    if margin is None:
        return Assessment(
            score=0.0,
            label="benign",
            reasons=[Reason(signal=signal, value=value, contribution=0.0, evidence=evidence)],
        )
    score = 1.0 / (1.0 + math.exp(-min(50.0, max(-50.0, margin))))
    return Assessment(
        score=score,
        label="extraction" if margin > 0 else "benign",
        reasons=[Reason(signal=signal, value=value, contribution=score, evidence=evidence)],
    )


def _squared_distances(
    a: np.ndarray, b: np.ndarray, b_norms: np.ndarray | None = None
) -> np.ndarray:
    """Pairwise squared Euclidean distances (MMD passes float64: it sums many close terms);
    `b_norms`, the squared norms of `b`'s rows, when the caller keeps them."""
    if b_norms is None:
        b_norms = (b * b).sum(1)
    squared = (a * a).sum(1)[:, None] + b_norms[None, :] - 2.0 * (a @ b.T)
    return np.maximum(squared, 0.0)


class _EmbeddingDetector(Detector):
    """Embeds prompts with an embedder that may be shared (`PromptEmbedder` caches by prompt
    hash, so a repeated prompt, or one another detector on the same embedder saw, costs nothing);
    without one, a `PromptEmbedder` is made on first use."""

    def __init__(self, embedder: Embedder | None) -> None:
        self.embedder = embedder

    def _embed(self, events: list[Event], dtype: type = np.float32) -> np.ndarray:
        if self.embedder is None:
            from detectors.embedding import PromptEmbedder

            self.embedder = PromptEmbedder()
        if not events:
            return np.zeros((0, 0), dtype=dtype)
        vectors = self.embedder([e.prompt_text[:PROMPT_CHARS] for e in events])
        return np.asarray(vectors, dtype=dtype)


# --- PRADA ------------------------------------------------------------------------------------
@dataclass
class _PradaAccount:
    """PRADA's per-client state: the growing set G (rows `growing[:size]`, a buffer that doubles)
    with its distances and threshold T, and D, every query's minimum distance to G."""

    growing: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))
    size: int = 0
    growing_distances: list[float] = field(default_factory=list)
    threshold: float = 0.0
    distances: list[float] = field(default_factory=list)
    w_min: float | None = None

    def add(self, vector: np.ndarray) -> None:
        if self.size == len(self.growing):
            grown = np.zeros((max(16, 2 * self.size), len(vector)), dtype=np.float32)
            if self.size:
                grown[: self.size] = self.growing[: self.size]
            self.growing = grown
        self.growing[self.size] = vector
        self.size += 1


class PradaDetector(_EmbeddingDetector):
    """PRADA (Juuti et al. 2019) on prompt embeddings.

    Natural queries from one client have minimum distances to the client's earlier queries that
    look normally distributed; synthetic or systematically chosen queries do not. For each query,
    the distance to its nearest neighbour in the growing set G goes into D; the query joins G
    when that distance exceeds T, and T becomes max(T, mean - std of G's distances). Once D holds
    `min_queries` distances, the Shapiro-Wilk W of D (distances more than 3 sigma from the mean
    dropped) is computed after every query; the client is flagged when W < delta. Images have
    one growing set per predicted class; a prompt has no class, so there is one set per account.
    delta is the `target_fpr` quantile of benign accounts' lowest W.
    """

    name = "prada"
    version = "prada-1"

    def __init__(
        self,
        embedder: Embedder | None = None,
        delta: float = 0.9,
        min_queries: int = 100,
        target_fpr: float = 0.001,
        max_distances: int = 5000,  # Shapiro-Wilk's range of validity; the newest are kept
    ) -> None:
        super().__init__(embedder)
        self.delta = delta
        self.min_queries = min_queries
        self.target_fpr = target_fpr
        self.max_distances = max_distances
        self.spread_ = 0.01
        self.fitted_accounts_ = 0
        self._accounts: dict[str, _PradaAccount] = {}

    def _w(self, distances: list[float]) -> float:
        sample = np.asarray(distances[-self.max_distances :])
        mean, std = sample.mean(), sample.std()
        kept = sample[np.abs(sample - mean) <= 3 * std] if std > 0 else sample
        if kept.size < 3 or np.ptp(kept) == 0:
            return 0.0  # all distances equal (exact repeats): no natural variation at all
        return shapiro_w(kept)

    def _consume(self, account: _PradaAccount, vectors: np.ndarray) -> None:
        for vector in vectors:
            if not account.size:
                account.add(vector)
                continue
            gaps = account.growing[: account.size] - vector
            distance = float(np.sqrt(np.einsum("ij,ij->i", gaps, gaps).min()))
            account.distances.append(distance)
            if distance > account.threshold:
                account.add(vector)
                account.growing_distances.append(distance)
                spread = np.mean(account.growing_distances) - np.std(account.growing_distances)
                account.threshold = max(account.threshold, float(spread))
            if len(account.distances) >= self.min_queries:
                w = self._w(account.distances)
                account.w_min = w if account.w_min is None else min(account.w_min, w)

    def fit(self, benign_events: Iterable[Event]) -> Self:
        lowest = []
        for events in account_histories(benign_events).values():
            if len(events) > self.min_queries:
                account = _PradaAccount()
                self._consume(account, self._embed(events))
                if account.w_min is not None:
                    lowest.append(account.w_min)
        if lowest:
            self.delta = -upper_threshold((-w for w in lowest), self.target_fpr)
            self.spread_ = _spread(lowest, 0.01)
        self.fitted_accounts_ = len(lowest)
        return self

    def update(self, account_id: str, events: list[Event]) -> Assessment:
        account = self._accounts.setdefault(account_id, _PradaAccount())
        self._consume(account, self._embed(events))
        evidence = {"distances": len(account.distances), "delta": self.delta}
        if account.w_min is None:
            return _assessment("prada_shapiro_w", 1.0, None, evidence)
        margin = (self.delta - account.w_min) / self.spread_
        return _assessment("prada_shapiro_w", account.w_min, margin, evidence)

    def state(self, account_id: str) -> dict[str, Any]:
        account = self._accounts.get(account_id, _PradaAccount())
        return {
            "growing": account.growing[: account.size].tolist(),
            "growing_distances": account.growing_distances,
            "threshold": account.threshold,
            "distances": account.distances,
            "w_min": account.w_min,
        }

    def load(self, account_id: str, state: dict[str, Any]) -> None:
        growing = np.asarray(state.get("growing", []), dtype=np.float32)
        self._accounts[account_id] = _PradaAccount(
            growing=growing.reshape(len(growing), -1),
            size=len(growing),
            growing_distances=list(state.get("growing_distances", [])),
            threshold=float(state.get("threshold", 0.0)),
            distances=list(state.get("distances", [])),
            w_min=state.get("w_min"),
        )

    def forget(self, account_id: str) -> None:
        self._accounts.pop(account_id, None)

    def calibration(self) -> dict[str, Any]:
        return {
            "delta": self.delta,
            "spread": self.spread_,
            "min_queries": self.min_queries,
            "target_fpr": self.target_fpr,
            "fitted_accounts": self.fitted_accounts_,
        }

    def load_calibration(self, calibration: dict[str, Any]) -> None:
        self.delta = float(calibration.get("delta", self.delta))
        self.spread_ = float(calibration.get("spread", self.spread_))
        self.min_queries = int(calibration.get("min_queries", self.min_queries))
        self.target_fpr = float(calibration.get("target_fpr", self.target_fpr))
        self.fitted_accounts_ = int(calibration.get("fitted_accounts", self.fitted_accounts_))


# --- MMD --------------------------------------------------------------------------------------
@dataclass
class _Reference:
    """The benign sample an account is compared with, and the mean of its kernel off-diagonal."""

    vectors: np.ndarray
    kyy_mean: float
    norms: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.norms = (self.vectors * self.vectors).sum(1)


@dataclass
class _MmdAccount:
    vectors: np.ndarray
    sxx: float = 0.0  # sum of k(x_i, x_j) over ordered pairs i != j
    sxy: float = 0.0  # sum of k(x_i, y_r) over the account's prompts and the reference
    peak_margin: float | None = None
    peak_value: float = 0.0


class MmdDetector(_EmbeddingDetector):
    """Per-account MMD against a benign reference (Liu et al. 2026), on prompt embeddings.

    The unbiased estimate of MMD^2 between an account's prompts and a benign reference sample,
    with a Gaussian RBF kernel whose bandwidth is the median pairwise distance in the reference.
    The estimate's noise shrinks with the account's sample size, so thresholds are calibrated per
    size band ([10, 20), [20, 40), ...): the `target_fpr` quantile of benign accounts' highest
    MMD^2 within the band, each benign account compared with the reference minus its own prompts.
    Sums are kept per account, so a new prompt costs one kernel row, not a recomputation.
    """

    name = "mmd"
    version = "mmd-1"

    def __init__(
        self,
        embedder: Embedder | None = None,
        reference_size: int = 500,
        sizes: tuple[int, ...] = (10, 20, 40, 80, 160, 320, 640),
        max_samples: int = 1000,
        min_accounts: int = 10,
        target_fpr: float = 0.001,
        seed: int = 0,
    ) -> None:
        super().__init__(embedder)
        self.reference_size = reference_size
        self.sizes = sizes
        self.max_samples = max_samples
        self.min_accounts = min_accounts
        self.target_fpr = target_fpr
        self.seed = seed
        self.reference_: _Reference | None = None
        self.sigma_ = 1.0
        self.thresholds_ = [math.inf] * len(sizes)
        self.spreads_ = [1.0] * len(sizes)
        self._accounts: dict[str, _MmdAccount] = {}

    def _kernel(
        self, a: np.ndarray, b: np.ndarray, b_norms: np.ndarray | None = None
    ) -> np.ndarray:
        return np.exp(-_squared_distances(a, b, b_norms) / (2.0 * self.sigma_**2))

    def _extend(self, account: _MmdAccount, new: np.ndarray, reference: _Reference) -> np.ndarray:
        """Add prompts to the account; MMD^2 after each one (NaN while fewer than two)."""
        if not len(new):
            return np.zeros(0)
        old = len(account.vectors)
        within = self._kernel(new, new)
        pair_sums = 2.0 * (self._kernel(new, account.vectors).sum(1) + np.tril(within, -1).sum(1))
        sxx = account.sxx + np.cumsum(pair_sums)
        to_reference = self._kernel(new, reference.vectors, reference.norms)
        sxy = account.sxy + np.cumsum(to_reference.sum(1))
        account.vectors = np.concatenate([account.vectors, new])
        account.sxx, account.sxy = float(sxx[-1]), float(sxy[-1])
        n = old + np.arange(1, len(new) + 1, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            xx = np.where(n > 1, sxx / (n * (n - 1)), np.nan)
        return xx + reference.kyy_mean - 2.0 * sxy / (n * len(reference.vectors))

    def _band(self, n: np.ndarray) -> np.ndarray:
        return np.searchsorted(np.asarray(self.sizes), n, side="right") - 1

    def fit(self, benign_events: Iterable[Event]) -> Self:
        accounts = account_histories(benign_events)
        if not accounts:
            raise ValueError("MmdDetector.fit needs benign events for its reference")
        names = list(accounts)
        vectors = self._embed([e for name in names for e in accounts[name]], np.float64)
        owners = np.repeat(np.arange(len(names)), [len(accounts[n]) for n in names])
        rng = np.random.default_rng(self.seed)
        chosen = rng.choice(len(vectors), min(self.reference_size, len(vectors)), replace=False)
        reference, reference_owner = vectors[chosen], owners[chosen]
        distances = np.sqrt(_squared_distances(reference, reference))
        self.sigma_ = float(np.median(distances[np.triu_indices(len(reference), 1)])) or 1.0
        kyy = self._kernel(reference, reference)
        np.fill_diagonal(kyy, 0.0)
        self.reference_ = _Reference(reference, float(kyy.sum() / (len(kyy) * (len(kyy) - 1))))

        band_peaks: list[list[float]] = [[] for _ in self.sizes]
        for index in range(len(names)):
            mine = vectors[owners == index][: self.max_samples]
            if len(mine) < self.sizes[0]:
                continue
            keep = reference_owner != index  # never compare an account with its own prompts
            kept = kyy[np.ix_(keep, keep)]
            others = _Reference(reference[keep], float(kept.sum() / (len(kept) * (len(kept) - 1))))
            series = self._extend(_MmdAccount(np.zeros((0, mine.shape[1]))), mine, others)
            bands = self._band(np.arange(1, len(series) + 1))
            for band in set(bands[bands >= 0].tolist()):
                band_peaks[band].append(float(np.nanmax(series[bands == band])))
        for band, peaks in enumerate(band_peaks):
            if len(peaks) >= self.min_accounts:
                self.thresholds_[band] = upper_threshold(peaks, self.target_fpr)
                self.spreads_[band] = _spread(peaks, 1e-4)
            elif band:  # too few benign accounts this large: keep the smaller band's (noisier,
                # so higher) threshold
                self.thresholds_[band] = self.thresholds_[band - 1]
                self.spreads_[band] = self.spreads_[band - 1]
        self.band_accounts_ = [len(p) for p in band_peaks]
        return self

    def update(self, account_id: str, events: list[Event]) -> Assessment:
        if self.reference_ is None:
            raise RuntimeError("MmdDetector needs fit() or load_calibration() before update()")
        account = self._accounts.get(account_id)
        if account is None:
            account = self._accounts[account_id] = _MmdAccount(
                np.zeros((0, self.reference_.vectors.shape[1]))
            )
        room = self.max_samples - len(account.vectors)
        if room > 0 and events:
            new = self._embed(events[:room], np.float64)
            series = self._extend(account, new, self.reference_)
            bands = self._band(len(account.vectors) - len(series) + np.arange(1, len(series) + 1))
            for value, band in zip(series, bands, strict=True):
                if band < 0:
                    continue
                margin = (value - self.thresholds_[band]) / self.spreads_[band]
                if account.peak_margin is None or margin > account.peak_margin:
                    account.peak_margin, account.peak_value = float(margin), float(value)
        evidence = {"samples": len(account.vectors), "sigma": self.sigma_}
        return _assessment("mmd2_vs_benign", account.peak_value, account.peak_margin, evidence)

    def state(self, account_id: str) -> dict[str, Any]:
        account = self._accounts.get(account_id)
        if account is None:
            return {}
        return {
            "vectors": account.vectors.tolist(),
            "sxx": account.sxx,
            "sxy": account.sxy,
            "peak_margin": account.peak_margin,
            "peak_value": account.peak_value,
        }

    def load(self, account_id: str, state: dict[str, Any]) -> None:
        if not state:
            self._accounts.pop(account_id, None)
            return
        vectors = np.asarray(state["vectors"], dtype=np.float64)
        self._accounts[account_id] = _MmdAccount(
            vectors.reshape(len(vectors), -1),
            float(state["sxx"]),
            float(state["sxy"]),
            state["peak_margin"],
            float(state["peak_value"]),
        )

    def forget(self, account_id: str) -> None:
        self._accounts.pop(account_id, None)

    def calibration(self) -> dict[str, Any]:
        reference = self.reference_
        return {
            "sigma": self.sigma_,
            "sizes": list(self.sizes),
            "thresholds": [None if math.isinf(t) else t for t in self.thresholds_],
            "spreads": self.spreads_,
            "target_fpr": self.target_fpr,
            "kyy_mean": reference.kyy_mean if reference else None,
            "reference": reference.vectors.tolist() if reference else None,
        }

    def load_calibration(self, calibration: dict[str, Any]) -> None:
        self.sigma_ = float(calibration["sigma"])
        self.sizes = tuple(calibration["sizes"])
        self.thresholds_ = [math.inf if t is None else t for t in calibration["thresholds"]]
        self.spreads_ = list(calibration["spreads"])
        self.target_fpr = float(calibration.get("target_fpr", self.target_fpr))
        if calibration.get("reference") is not None:
            vectors = np.asarray(calibration["reference"], dtype=np.float64)
            self.reference_ = _Reference(vectors, float(calibration["kyy_mean"]))


# --- volume z-score ---------------------------------------------------------------------------
class VolumeZScoreDetector(VolumeDetector):
    """The textbook rate-limit alarm: z = (requests in the account's sliding window - benign
    mean) / benign std, where mean and std are over the window counts benign requests saw;
    flagged when the account's highest z exceeds the `target_fpr` quantile of benign accounts'
    highest z (and at least `min_z`). Window counting is `VolumeDetector`'s."""

    name = "volume_z"
    version = "volume-z-1"

    def __init__(self, window_s: int = 3600, target_fpr: float = 0.001, min_z: float = 3.0) -> None:
        super().__init__(window_s=window_s, target_fpr=target_fpr)
        self.min_z = min_z
        self.mean_ = 1.0
        self.std_ = 1.0
        self.z_threshold_ = min_z

    def fit(self, benign_events: Iterable[Event]) -> Self:
        scratch = VolumeDetector(self.window_s)
        seen = {
            account: [scratch._window_count(account, [event]) for event in events]
            for account, events in account_histories(benign_events).items()
        }
        counts = np.concatenate([np.asarray(c, dtype=float) for c in seen.values()])
        self.mean_, self.std_ = float(counts.mean()), max(float(counts.std()), 1.0)
        peaks = ((max(c) - self.mean_) / self.std_ for c in seen.values())
        self.z_threshold_ = max(self.min_z, upper_threshold(peaks, self.target_fpr))
        self.fitted_accounts_ = len(seen)
        return self

    def update(self, account_id: str, events: list[Event]) -> Assessment:
        self._window_count(account_id, events)
        z = (self._peak[account_id] - self.mean_) / self.std_
        evidence = {"window_s": self.window_s, "peak": self._peak[account_id]}
        return _assessment("volume_z", z, z - self.z_threshold_, evidence)

    def calibration(self) -> dict[str, Any]:
        return {
            "window_s": self.window_s,
            "mean": self.mean_,
            "std": self.std_,
            "z_threshold": self.z_threshold_,
            "target_fpr": self.target_fpr,
        }

    def load_calibration(self, calibration: dict[str, Any]) -> None:
        self.window_s = int(calibration.get("window_s", self.window_s))
        self.mean_ = float(calibration["mean"])
        self.std_ = float(calibration["std"])
        self.z_threshold_ = float(calibration["z_threshold"])
        self.target_fpr = float(calibration.get("target_fpr", self.target_fpr))


BASELINES: dict[str, Callable[[Embedder | None], Detector]] = {
    "prada": lambda embedder: PradaDetector(embedder),
    "mmd": lambda embedder: MmdDetector(embedder),
    "volume_z": lambda _embedder: VolumeZScoreDetector(),
}
