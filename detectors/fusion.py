"""The fused extraction detector: every signal, benign-calibrated, added up, explained.

How a score comes about:
1. Each signal's value is compared with benign accounts' values at a comparable window size
   (buckets of 4, 8, …, 256 requests): its *surprise* is −log10 of the benign tail probability.
2. An IsolationForest fitted on benign accounts' surprise vectors adds one more surprise for
   unusual *combinations* of individually ordinary signals.
3. The raw score is 2·√(content surprise · behaviour surprise) (see `fused`). Calibration
   replays benign history through the same code and records each benign account's highest raw
   score over its lifetime; the thresholds
   are the (1 − FPR) quantiles of those maxima (an exponential tail fitted above the 90th
   percentile extrapolates to small FPRs): `extraction` at `target_fpr` (default 0.1% of
   accounts), `suspicious` at `suspicious_fpr` (1%).
4. `score = 1 − 2^(−raw / extraction_threshold)`: 0.5 is exactly the extraction threshold.

Tiered embedding (CPU deployments, the default): SimHash, parameters, timing, the reasoning
classifier and language are computed for every event; MiniLM embeds each account's 32nd, 64th, …
request (`sample_every`: the campaign linker's topic evidence) and, once an account is under
suspicion, its whole window and everything after (`AccountWindow.deep`). Suspicion is the sum of
the cheap signals' surprises reaching `deep_threshold_`, calibrated so that honest accounts that
ever get there carry at most `deep_share` (default 5%) of benign requests: that share is the
embedding budget (see `deep_threshold`). The embedding signals
(coverage, dispersion, MMD, PRADA) are computed for deep accounts only, against benign windows
embedded in full at calibration. `tiered=False` embeds every event and scores every account with
every signal.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Self

import numpy as np

from core.embedder import Embedder
from core.events import Event, account_histories
from core.verdicts import Assessment, ClusterVerdict, Label, Reason
from detectors.base import Detector
from detectors.campaigns import CampaignLinker
from detectors.features import EventFeatures, SimHasher, featurize
from detectors.index import BenignReference
from detectors.signals import SIGNALS, Reference, Window

BUCKETS = (4, 8, 16, 32, 64, 128, 256)
MIN_BUCKET_VALUES = 20
MIN_BUCKET_ACCOUNTS = 10
BURST_STEP = 16
MAX_SURPRISE = 6.0  # one signal alone never says more than p = 1e-6
ISOLATION = "isolation_forest"
EXAMPLES = 3

Scorer = Callable[[list[str]], Any]


GROUPS = sorted({s.group for s in SIGNALS})
GROUP_MEMBERS = np.array([[s.group == g for s in SIGNALS] for g in GROUPS])  # (groups, signals)
GROUP_CONTENT = np.array([next(s.content for s in SIGNALS if s.group == g) for g in GROUPS])
EMBEDDING_SIGNALS = np.array([s.needs_embeddings for s in SIGNALS])


def fused(surprises: np.ndarray, forest: np.ndarray) -> np.ndarray:
    """2·√(content · behaviour): an account must be unusual both in *what* it asks and in *how*
    it asks. Harvest parameters alone (a researcher at temperature 0 with logprobs) or unusual
    topics alone (a specialist) are not enough. The forest's surprise (an unusual combination,
    in practice of behaviour signals) counts as behaviour: it must not stand in for content."""
    by_group = np.where(GROUP_MEMBERS, surprises[..., None, :], 0.0).max(axis=-1)
    content = by_group[..., GROUP_CONTENT].sum(axis=-1)
    behaviour = by_group[..., ~GROUP_CONTENT].sum(axis=-1) + forest
    return 2 * np.sqrt(content * behaviour)


def cheap_surprises(surprises: np.ndarray) -> np.ndarray:
    """Summed surprise of the signals that need no embedding, per row."""
    return surprises[..., ~EMBEDDING_SIGNALS].sum(axis=-1)


def lifetime_maxima(accounts: list[str], values: np.ndarray) -> dict[str, float]:
    """Each account's highest value over its snapshots (0 floor)."""
    maxima: dict[str, float] = {}
    for account_id, value in zip(accounts, values, strict=True):
        maxima[account_id] = max(maxima.get(account_id, 0.0), float(value))
    return maxima


def _floor4(value: float) -> float:
    """Rounded down to 4 decimals, so contributions never add up to more than the score."""
    return math.floor(value * 1e4) / 1e4


def deep_threshold(peaks: dict[str, float], sizes: dict[str, int], budget: float) -> float:
    """The lowest suspicion threshold at which benign accounts that would go deep (their
    lifetime peak of cheap surprise reaches it; their whole history is then embedded) hold at
    most `budget` of all benign requests: the embedding budget is a share of events, because a
    few heavy honest accounts carry most of them."""
    total = sum(sizes.values()) or 1
    spent, threshold = 0, 1.0
    for account, peak in sorted(peaks.items(), key=lambda item: -item[1]):
        if (spent + sizes[account]) / total > budget:
            return max(peak + 1e-6, threshold)
        spent += sizes[account]
    return threshold


def bucket_of(count: int) -> int | None:
    """The largest calibration bucket not above `count` (None below the smallest)."""
    eligible = [b for b in BUCKETS if b <= count]
    return eligible[-1] if eligible else None


def tail_threshold(maxima: np.ndarray, fpr: float) -> float:
    """(1 − fpr) quantile of benign maxima, with an exponential tail beyond the 90th percentile
    (peaks over threshold), never below the highest benign maximum seen."""
    if len(maxima) == 0:
        return 1.0
    q90 = float(np.quantile(maxima, 0.9))
    if fpr >= 0.1:
        return float(np.quantile(maxima, 1 - fpr))
    excess = maxima[maxima > q90] - q90
    scale = float(excess.mean()) if len(excess) else float(maxima.std() or 1.0)
    return max(q90 + scale * math.log(0.1 / fpr), float(maxima.max()) + 1e-6)


@dataclass
class AccountWindow:
    """What the detector remembers about one account."""

    features: deque[EventFeatures]
    seen: int = 0
    label: Label = "benign"
    embedding_values: dict[str, float] = field(default_factory=dict)
    embeddings_stale: bool = True
    deep: bool = False  # under suspicion: every request embedded, embedding signals computed

    def embedded_count(self) -> int:
        return sum(1 for f in self.features if f.embedding is not None)


class ExtractionDetector(Detector):
    """All per-account signals, benign-calibrated and fused; see the module docstring."""

    name = "extraction"
    version = "fusion-1"

    def __init__(
        self,
        embedder: Embedder | None = None,
        reasoning: Scorer | None = None,
        languages: Scorer | None = None,
        linker: CampaignLinker | None = None,
        window: int = 256,
        tiered: bool = True,
        sample_every: int = 32,
        deep_share: float = 0.05,
        target_fpr: float = 0.001,
        suspicious_fpr: float = 0.01,
        topics: int = 64,
        reference_size: int = 256,
        seed: int = 0,
    ) -> None:
        self.embedder = embedder
        self.reasoning = reasoning
        self.languages = languages
        self.linker = linker
        self.window = window
        self.tiered = tiered
        self.sample_every = sample_every
        self.deep_share = deep_share
        self.deep_threshold_ = 0.0
        self.target_fpr = target_fpr
        self.suspicious_fpr = suspicious_fpr
        self.topics = topics
        self.reference_size = reference_size
        self.seed = seed
        self.hasher = SimHasher()
        self.accounts: dict[str, AccountWindow] = {}
        self.reference_: Reference | None = None
        self.benign_values_: dict[str, dict[int, np.ndarray]] = {}
        self.isolation_: Any = None
        self.isolation_scores_: np.ndarray = np.zeros(0)
        self.isolation_training_: np.ndarray = np.zeros((0, len(SIGNALS)))
        self.thresholds_: dict[str, float] = {"suspicious": 1.0, "extraction": 2.0}
        self.fitted_accounts_ = 0
        self.cluster_verdicts_: list[ClusterVerdict] = []

    # --- features ------------------------------------------------------------------------------
    def _account(self, account_id: str) -> AccountWindow:
        if account_id not in self.accounts:
            self.accounts[account_id] = AccountWindow(deque(maxlen=self.window))
        return self.accounts[account_id]

    def _wants_embedding(self, account: AccountWindow, position: int) -> bool:
        if self.embedder is None:
            return False
        sampled = position % self.sample_every == self.sample_every - 1
        return not self.tiered or account.deep or sampled

    def _embed_missing(self, features: Iterable[EventFeatures]) -> None:
        missing = [f for f in features if f.embedding is None]
        if missing and self.embedder is not None:
            vectors = self.embedder([f.prompt for f in missing])
            for item, vector in zip(missing, vectors, strict=True):
                item.embedding = np.asarray(vector, dtype=np.float32)

    def _deepen(self, account: AccountWindow) -> None:
        """Put an account under suspicion: embed the rest of its window now (the evidence an
        analyst will read) and every request from here on."""
        account.deep = True
        self._embed_missing(account.features)
        account.embeddings_stale = True

    def _cheap_surprise(self, values: dict[str, float], count: int) -> float:
        """Summed surprise of the signals that need no embedding: the suspicion trigger (the
        same sum calibration takes over `cheap_surprises`)."""
        return float(cheap_surprises(self._surprises(values, count, 0)))

    def _prepare(
        self, updates: dict[str, list[Event]], embed_all: bool = False
    ) -> dict[str, list[EventFeatures]]:
        """Cheap features for every event; neural embeddings where the tier policy wants them
        (`embed_all`: calibration). One vectorised pass over the whole batch."""
        events = [event for batch in updates.values() for event in batch]
        features = featurize(events, self.hasher)
        prompts = [f.prompt for f in features]
        if self.reasoning is not None and features:
            for item, probability in zip(features, self.reasoning(prompts), strict=True):
                item.reasoning = float(probability)
        if self.languages is not None and features:
            for item, language in zip(features, self.languages(prompts), strict=True):
                item.language = language
        by_account: dict[str, list[EventFeatures]] = {}
        chosen: list[EventFeatures] = []
        for item in features:
            account = self._account(item.account_id)
            position = account.seen + len(by_account.get(item.account_id, []))
            by_account.setdefault(item.account_id, []).append(item)
            if embed_all or self._wants_embedding(account, position):
                chosen.append(item)
        if chosen and self.embedder is not None:
            vectors = self.embedder([f.prompt for f in chosen])
            for item, vector in zip(chosen, vectors, strict=True):
                item.embedding = np.asarray(vector, dtype=np.float32)
        return by_account

    # --- signals -------------------------------------------------------------------------------
    def _values(self, account: AccountWindow) -> tuple[dict[str, float], int, int]:
        """Signal values of the account's window, its size and its embedded size."""
        window = Window.of(list(account.features))
        values = {s.name: s.compute(window) for s in SIGNALS if not s.needs_embeddings}
        embedded = len(window.embeddings)
        if self.reference_ is not None and embedded and (account.deep or not self.tiered):
            if account.embeddings_stale:
                account.embedding_values = {
                    s.name: s.compute(window, self.reference_)
                    for s in SIGNALS
                    if s.needs_embeddings
                }
                account.embeddings_stale = False
            values.update(account.embedding_values)
        return values, window.size, embedded

    def _surprise(self, signal: str, count: int, value: float) -> tuple[float, float]:
        """(−log10 p, p) of `value` against benign values at a comparable window size. Beyond
        the largest benign value the tail is extended exponentially (scale: the larger of the benign
        top decile's range and the benign standard deviation), so far-out values count more
        than barely-out ones, up to a cap."""
        by_bucket = self.benign_values_.get(signal, {})
        bucket = bucket_of(count)
        while bucket is not None and len(by_bucket.get(bucket, ())) < MIN_BUCKET_VALUES:
            bucket = bucket_of(bucket - 1)
        if bucket is None:
            return 0.0, 1.0
        benign = by_bucket[bucket]
        tail = len(benign) - int(np.searchsorted(benign, value, side="left"))
        p = (tail + 1) / (len(benign) + 1)
        if tail == 0:
            top = benign[int(0.9 * len(benign)) :]
            spread = max(float(top[-1] - top[0]), float(benign.std()))
            scale = max(spread, 0.05 * max(abs(float(top[-1])), 1e-3))
            p *= math.exp(-(value - float(benign[-1])) / scale)
        p = max(p, 10.0**-MAX_SURPRISE)
        return -math.log10(p), p

    def _surprises(self, values: dict[str, float], count: int, embedded: int) -> np.ndarray:
        return np.array(
            [
                self._surprise(s.name, embedded if s.needs_embeddings else count, values[s.name])[0]
                if s.name in values
                else 0.0
                for s in SIGNALS
            ]
        )

    def _raw_score(self, values: dict[str, float], count: int, embedded: int) -> float:
        """Fused score without the forest (a lower bound, and much cheaper): used for the
        intermediate steps of a burst."""
        surprises = self._surprises(values, count, embedded)
        return float(fused(surprises, np.float64(0.0)))

    def _isolation_surprise(self, vectors: np.ndarray) -> np.ndarray:
        if self.isolation_ is None or not len(vectors):
            return np.zeros(len(vectors))
        anomaly = -self.isolation_.score_samples(vectors)
        benign = self.isolation_scores_
        tails = len(benign) - np.searchsorted(benign, anomaly, side="left")
        return -np.log10((tails + 1) / (len(benign) + 1))

    # --- calibration ---------------------------------------------------------------------------
    def _fit_reference(self, features: list[EventFeatures]) -> BenignReference:
        unique = {f.prompt_key: f.prompt for f in features}
        rng = np.random.default_rng(self.seed)
        prompts = list(unique.values())
        if len(prompts) > 4000:
            prompts = [prompts[i] for i in rng.choice(len(prompts), 4000, replace=False)]
        vectors = np.asarray(self.embedder(prompts), dtype=np.float32)  # type: ignore[misc]
        k = max(1, min(self.topics, len(vectors) // 39))  # FAISS wants ≥ 39 points a centroid
        topics = BenignReference(k=k, seed=self.seed)
        topics.fit(vectors)
        sample = vectors[rng.choice(len(vectors), min(self.reference_size, len(vectors)), False)]
        distances = np.sqrt(np.maximum(0.0, 2.0 - 2.0 * (sample @ sample.T)))
        bandwidth = float(np.median(distances[np.triu_indices(len(sample), 1)])) or 1.0
        self.reference_ = Reference(topics.centroids_, sample, bandwidth)
        return topics

    def fit(self, benign_events: Iterable[Event]) -> Self:
        """Replay benign history through the detector; learn per-signal benign distributions,
        the IsolationForest and the account-level thresholds."""
        by_account = account_histories(benign_events)
        self.accounts = {}
        self.reference_ = None
        prepared = self._prepare(by_account, embed_all=True)
        everything = [f for items in prepared.values() for f in items]
        topics = self._fit_reference(everything) if self.embedder is not None and prepared else None
        if self.linker is not None:
            self.linker.fit(sorted(everything, key=lambda f: f.timestamp_ms), reference=topics)

        snapshots: list[tuple[str, dict[str, float], int, int]] = []
        for account_id, items in prepared.items():
            account = self._account(account_id)
            account.deep = True  # calibration scores benign windows with every signal
            for item in items:
                account.features.append(item)
                account.seen += 1
                account.embeddings_stale |= item.embedding is not None
                if account.seen >= BUCKETS[0]:
                    snapshots.append((account_id, *self._values(account)))
        self.accounts = {}

        pooled: dict[str, dict[int, list[float]]] = {}
        contributors: dict[tuple[str, int], set[str]] = {}
        for account_id, values, count, embedded in snapshots:
            for signal in SIGNALS:
                if signal.name in values:
                    bucket = bucket_of(embedded if signal.needs_embeddings else count)
                    if bucket is not None:
                        pooled.setdefault(signal.name, {}).setdefault(bucket, []).append(
                            values[signal.name]
                        )
                        contributors.setdefault((signal.name, bucket), set()).add(account_id)
        # A bucket that only a handful of heavy accounts reach describes those accounts, not
        # benign traffic: larger windows then fall back to the largest well-populated bucket.
        self.benign_values_ = {
            signal: {
                bucket: np.sort(np.asarray(v))
                for bucket, v in buckets.items()
                if len(contributors[signal, bucket]) >= MIN_BUCKET_ACCOUNTS
            }
            for signal, buckets in pooled.items()
        }
        self.fitted_accounts_ = len(by_account)
        if not snapshots:
            return self
        vectors = np.stack([self._surprises(v, c, e) for _, v, c, e in snapshots])
        self._fit_isolation(vectors)
        raw = fused(vectors, self._isolation_surprise(vectors))
        accounts = [account_id for account_id, *_ in snapshots]
        peaks = np.asarray(list(lifetime_maxima(accounts, raw).values()))
        cheap_peaks = lifetime_maxima(accounts, cheap_surprises(vectors))
        sizes = {a: len(events) for a, events in by_account.items()}
        self.deep_threshold_ = deep_threshold(cheap_peaks, sizes, self.deep_share)
        self.thresholds_ = {
            "suspicious": tail_threshold(peaks, self.suspicious_fpr),
            "extraction": tail_threshold(peaks, self.target_fpr),
        }
        return self

    def _fit_isolation(self, vectors: np.ndarray) -> None:
        """Forest on (a seeded sample of) benign surprise vectors; kept so a saved calibration
        refits the identical forest."""
        from sklearn.ensemble import IsolationForest

        rng = np.random.default_rng(self.seed)
        if len(vectors) > 4000:
            vectors = vectors[rng.choice(len(vectors), 4000, replace=False)]
        self.isolation_training_ = vectors
        self.isolation_ = IsolationForest(n_estimators=100, random_state=self.seed).fit(vectors)
        self.isolation_scores_ = np.sort(-self.isolation_.score_samples(vectors))

    # --- streaming -----------------------------------------------------------------------------
    def update(self, account_id: str, events: list[Event]) -> Assessment:
        return self.update_batch({account_id: events})[account_id]

    def update_batch(self, updates: dict[str, list[Event]]) -> dict[str, Assessment]:
        """Assess every account with new events in one pass (one embedding call, one forest
        call for the batch)."""
        prepared = self._prepare(updates)
        rows = []
        first_flags: dict[str, int] = {}
        for account_id, items in prepared.items():
            account = self._account(account_id)
            # A burst (many requests of one account in one batch) is assessed every
            # BURST_STEP requests, so "queries before detection" does not depend on batch size.
            for start in range(0, len(items), BURST_STEP):
                chunk = items[start : start + BURST_STEP]
                if account.deep:  # gone deep earlier in this batch
                    self._embed_missing(chunk)
                account.features.extend(chunk)
                account.seen += len(chunk)
                account.embeddings_stale |= any(f.embedding is not None for f in chunk)
                values, count, embedded = self._values(account)
                if (
                    self.tiered
                    and not account.deep
                    and self._cheap_surprise(values, count) >= self.deep_threshold_
                ):
                    self._deepen(account)
                    values, count, embedded = self._values(account)
                burst_continues = start + BURST_STEP < len(items)
                if (
                    burst_continues
                    and account_id not in first_flags
                    and self._raw_score(values, count, embedded) >= self.thresholds_["extraction"]
                ):
                    first_flags[account_id] = start + len(chunk)
            rows.append((account_id, values, count, embedded))
        if not rows:
            return {}
        vectors = np.stack([self._surprises(v, c, e) for _, v, c, e in rows])
        forest = self._isolation_surprise(vectors)
        assessments = {
            account_id: self._assess(values, count, embedded, surprises, extra, account_id)
            for (account_id, values, count, embedded), surprises, extra in zip(
                rows, vectors, forest, strict=True
            )
        }
        for account_id, flagged_after in first_flags.items():
            if assessments[account_id].label == "extraction":
                assessments[account_id].requests_at_label = flagged_after
        if self._linking():
            features = sorted(
                (f for items in prepared.values() for f in items), key=lambda f: f.timestamp_ms
            )
            changed = self.linker.observe(features)
            self._assess_campaigns(assessments, set(prepared) | changed)
        return assessments

    def _linking(self) -> bool:
        """Campaign linking runs once the linker is calibrated (an uncalibrated worker, which
        logs a warning at start, scores accounts alone)."""
        return self.linker is not None and hasattr(self.linker, "threshold_")

    def _assess_campaigns(self, assessments: dict[str, Assessment], touched: set[str]) -> None:
        """Score each campaign touched by this batch as one account (its members' windows
        pooled) and give every member the campaign's verdict when it is the graver one."""
        assert self.linker is not None
        clusters = {c.cluster_id: c for c in self.linker.clusters()}
        pooled_rows = []
        for cluster_id in sorted({self.linker.cluster_of(a) for a in touched} - {None}):
            members = [m for m in clusters[cluster_id].members if m in self.accounts]
            for member in members:
                if self.tiered and not self.accounts[member].deep:
                    self._deepen(self.accounts[member])
            pooled = AccountWindow(
                deque(
                    sorted(
                        (f for m in members for f in self.accounts[m].features),
                        key=lambda f: f.timestamp_ms,
                    )
                ),
                seen=sum(self.accounts[m].seen for m in members),
                deep=True,
            )
            values, count, embedded = self._values(pooled)
            pooled_rows.append((cluster_id, members, pooled, values, count, embedded))
        if not pooled_rows:
            return
        vectors = np.stack([self._surprises(v, c, e) for *_, v, c, e in pooled_rows])
        forests = self._isolation_surprise(vectors)  # one forest call for every campaign
        for (cluster_id, members, pooled, values, count, embedded), surprises, forest in zip(
            pooled_rows, vectors, forests, strict=True
        ):
            cluster = clusters[cluster_id]
            verdict = self._assess(values, count, embedded, surprises, float(forest), pooled)
            campaign = Reason(
                signal="campaign",
                value=float(len(cluster.members)),
                contribution=0.0,
                evidence={
                    "explanation": "linked accounts scored together as one campaign",
                    "cluster_id": cluster_id,
                    "members": cluster.members[:50],
                    **cluster.evidence,
                },
            )
            self.cluster_verdicts_ += [
                scored
                for scored in self.linker.cluster_verdicts(
                    {cluster_id: (verdict.score, verdict.label)}
                )
                if scored.cluster_id == cluster_id
            ]
            for member in members:
                own = assessments.get(member)
                if own is None or verdict.score > own.score:
                    assessments[member] = verdict.model_copy(
                        update={
                            "reasons": [campaign, *verdict.reasons],
                            "cluster_id": cluster_id,
                            "observed_at": datetime.fromtimestamp(cluster.last_seen_ms / 1000, UTC),
                        }
                    )
                    self.accounts[member].label = verdict.label
                else:
                    assessments[member] = own.model_copy(update={"cluster_id": cluster_id})

    def drain_clusters(self) -> list[ClusterVerdict]:
        """Campaigns scored since the last call, the latest of each."""
        scored, self.cluster_verdicts_ = self.cluster_verdicts_, []
        latest = {cluster.cluster_id: cluster for cluster in scored}
        return list(latest.values())

    def _assess(
        self,
        values: dict[str, float],
        count: int,
        embedded: int,
        surprises: np.ndarray,
        forest: float,
        account: str | AccountWindow,
    ) -> Assessment:
        if isinstance(account, str):
            account = self.accounts[account]
        raw = float(fused(surprises, np.float64(forest))) if count >= BUCKETS[0] else 0.0
        share = float(surprises.sum() + forest) or 1.0
        threshold = self.thresholds_["extraction"]
        score = 1.0 - 2.0 ** (-raw / threshold)
        label: Label = (
            "extraction"
            if raw >= threshold
            else "suspicious"
            if raw >= self.thresholds_["suspicious"]
            else "benign"
        )
        account.label = label
        reasons = []
        for signal, surprise in zip(SIGNALS, surprises, strict=True):
            if signal.name not in values or surprise < 0.5:
                continue
            p = 10 ** (-float(surprise))
            reasons.append(
                Reason(
                    signal=signal.name,
                    value=round(values[signal.name], 4),
                    contribution=_floor4(score * float(surprise) / share),
                    evidence={
                        "explanation": signal.explanation,
                        "benign_tail_probability": round(p, 5),
                        "compared_at_requests": embedded if signal.needs_embeddings else count,
                    },
                )
            )
        if forest >= 0.5:
            reasons.append(
                Reason(
                    signal=ISOLATION,
                    value=round(float(forest), 4),
                    contribution=_floor4(score * float(forest) / share),
                    evidence={"explanation": "unusual combination of signals for benign accounts"},
                )
            )
        reasons.sort(key=lambda r: r.contribution, reverse=True)
        if reasons:
            examples = [f.prompt for f in list(account.features)[-EXAMPLES:]]
            reasons[0].evidence = {**(reasons[0].evidence or {}), "example_prompts": examples}
        return Assessment(score=min(1.0, max(0.0, score)), label=label, reasons=reasons)

    # --- state ---------------------------------------------------------------------------------
    def state(self, account_id: str) -> dict[str, Any]:
        account = self._account(account_id)
        return {
            "seen": account.seen,
            "label": account.label,
            "deep": account.deep,
            "window": [f.to_state() for f in account.features],
        }

    def load(self, account_id: str, state: dict[str, Any]) -> None:
        account = AccountWindow(
            deque(
                (EventFeatures.from_state(account_id, s) for s in state.get("window", [])),
                maxlen=self.window,
            ),
            seen=int(state.get("seen", 0)),
            label=state.get("label", "benign"),
            deep=bool(state.get("deep", False)),
        )
        self.accounts[account_id] = account

    def forget(self, account_id: str) -> None:
        self.accounts.pop(account_id, None)

    def global_state(self) -> dict[str, Any] | None:
        """Cross-account state (the campaign linker), checkpointed apart from accounts."""
        return self.linker.state() if self._linking() else None

    def load_global_state(self, state: dict[str, Any]) -> None:
        if self.linker is not None:
            self.linker.load(state)

    def calibration(self) -> dict[str, Any]:
        reference = self.reference_
        return {
            "target_fpr": self.target_fpr,
            "suspicious_fpr": self.suspicious_fpr,
            "thresholds": self.thresholds_,
            "deep_share": self.deep_share,
            "deep_threshold": self.deep_threshold_,
            "fitted_accounts": self.fitted_accounts_,
            "benign_values": {
                signal: {str(b): v.round(6).tolist() for b, v in buckets.items()}
                for signal, buckets in self.benign_values_.items()
            },
            "isolation_training": self.isolation_training_.round(6).tolist(),
            "campaigns": None if self.linker is None else self.linker.calibration(),
            "reference": None
            if reference is None
            else {
                "centroids": reference.centroids.round(6).tolist(),
                "sample": reference.sample.round(6).tolist(),
                "bandwidth": reference.bandwidth,
            },
        }

    def load_calibration(self, calibration: dict[str, Any]) -> None:
        self.target_fpr = calibration["target_fpr"]
        self.suspicious_fpr = calibration["suspicious_fpr"]
        self.thresholds_ = dict(calibration["thresholds"])
        self.fitted_accounts_ = calibration["fitted_accounts"]
        self.deep_share = calibration["deep_share"]
        self.deep_threshold_ = calibration["deep_threshold"]
        self.benign_values_ = {
            signal: {int(b): np.asarray(v) for b, v in buckets.items()}
            for signal, buckets in calibration["benign_values"].items()
        }
        training = np.asarray(calibration["isolation_training"], dtype=np.float64)
        if len(training):
            self._fit_isolation(training)
        if self.linker is not None and calibration.get("campaigns"):
            self.linker.load_calibration(calibration["campaigns"])
        reference = calibration.get("reference")
        self.reference_ = (
            None
            if reference is None
            else Reference(
                np.asarray(reference["centroids"], dtype=np.float32),
                np.asarray(reference["sample"], dtype=np.float32),
                float(reference["bandwidth"]),
            )
        )
