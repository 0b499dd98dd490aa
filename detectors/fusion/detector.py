"""The fused extraction detector: every per-account signal, benign-calibrated (`benign`), fused
(`scoring`), explained (`explanation`), embedded in tiers (`tiering`), with campaigns scored as
one account (`pooling`); see the package docstring for how a score comes about."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self

import numpy as np

from core.embedder import Embedder
from core.events import Event, account_histories
from core.verdicts import LABEL_RANK, Assessment, ClusterVerdict
from detectors.base import Detector
from detectors.campaigns import CampaignLinker, feed
from detectors.campaigns.feed import ProfileUpdate
from detectors.campaigns.skeletons import opening_key, skeleton_keys
from detectors.features import EventFeatures, PromptMemo, SimHasher, featurize, unfolded
from detectors.fusion import benign, persistence, tiering
from detectors.fusion.benign import BUCKETS, BenignValues, IsolationSurprise, Snapshot
from detectors.fusion.explanation import reasons, with_examples
from detectors.fusion.harvest import HarvestArm
from detectors.fusion.scoring import (
    ACTIVE_DAYS,
    OUTPUT_BUDGET,
    active_days,
    asked_budget,
    distinct_prompts,
    fused,
    harvest,
    output_budget,
    output_weight,
    score_and_label,
)
from detectors.fusion.window import AccountWindow
from detectors.signals import SIGNALS, Reference, Window

BURST_STEP = 16
# How far (in decades of surprise, the raw score's unit) a reviewed false positive's score must
# rise above its reviewed peak to be flagged again: ten times rarer behaviour than was vouched for.
REVIEW_MARGIN = 1.0

Scorer = Callable[[list[str]], Any]

if TYPE_CHECKING:
    from detectors.fusion.campaigns import CampaignUpdate, CampaignView


@dataclass(frozen=True)
class _Step:
    """One assessment point of a batch: an account's window after its first `requests` new
    requests."""

    account_id: str
    requests: int
    values: dict[str, float]
    count: int
    embedded: int


class ExtractionDetector(Detector):
    """All per-account signals, benign-calibrated and fused; see the package docstring."""

    name = "extraction"
    # 3: the unusual_openings signal; 4: no harvest arm on one-day histories; 5: the campaign
    # linker counts a schedule per active hour (`campaigns.rhythm.histograms`); 6: PRADA judges
    # the bulk of its distances (`signals.central`); 7: scores weigh the answers asked for
    # (`scoring.output_weight`), and campaign members alike beyond their network do not vouch
    # for its addresses (`CampaignLinker._alike_beyond_network`); 8: a tool loop's next steps are
    # folded into their prompt (`AccountWindow.fold`; the same scores as 7 where no request
    # feeds a tool's results back)
    version = "fusion-8"

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
        # Per-prompt features are pure: each distinct recent prompt is featurised once.
        self.reasoning = None if reasoning is None else PromptMemo(reasoning)
        self.languages = None if languages is None else PromptMemo(languages)
        self.hasher = PromptMemo(SimHasher())
        self.skeletons = PromptMemo(lambda prompts: [skeleton_keys(p) for p in prompts])
        self.openings = PromptMemo(lambda prompts: [opening_key(p) for p in prompts])
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
        self.accounts: dict[str, AccountWindow] = {}
        self.reference_: Reference | None = None
        self.openings_ = benign.UsualOpenings()
        self.benign_values_: BenignValues = {}
        self.isolation_: IsolationSurprise | None = None
        self.harvest_arm_: HarvestArm | None = None
        self.thresholds_: dict[str, float] = {"suspicious": 1.0, "extraction": 2.0}
        self.fitted_accounts_ = 0
        # analysts' false positives: the peak raw score of their reviewed traffic
        self.reviewed_peaks_: dict[str, float] = {}
        self.cluster_verdicts_: list[ClusterVerdict] = []
        # Campaign linking: a worker publishes its accounts' profile updates for the one
        # `distillguard linker` (`publish_profiles`); an in-process run links them itself, in
        # the same `CampaignView` the linker role runs, fed the same encoded updates.
        self.publish_profiles = False
        self._profile_updates: list[ProfileUpdate] = []
        self._view: CampaignView | None = None

    # --- features ------------------------------------------------------------------------------
    def _account(self, account_id: str) -> AccountWindow:
        if account_id not in self.accounts:
            self.accounts[account_id] = AccountWindow(deque(maxlen=self.window))
        return self.accounts[account_id]

    def _deepen(self, account: AccountWindow) -> None:
        """Put an account under suspicion: embed the rest of its window now (the evidence an
        analyst will read) and every request from here on."""
        account.deep = True
        tiering.embed_missing(self.embedder, account.features)
        account.embeddings_stale = True

    def _prepare(
        self, updates: dict[str, list[Event]], embed_all: bool = False
    ) -> dict[str, list[EventFeatures]]:
        """Cheap features for every event; neural embeddings where the tier policy wants them
        (`embed_all`: calibration). One vectorised pass over the whole batch. A tool loop's
        next step is kept, `folded` (`AccountWindow.fold`), so that a verdict still dates from
        the request that reached it, but no signal, no calibration and no linker reads it."""
        events = [event for batch in updates.values() for event in batch]
        features = featurize(events, self.hasher)
        prompts = [f.prompt for f in features]
        if self.reasoning is not None and features:
            for item, probability in zip(features, self.reasoning(prompts), strict=True):
                item.reasoning = float(probability)
        if self.languages is not None and features:
            for item, language in zip(features, self.languages(prompts), strict=True):
                item.language = language
        for item, opening in zip(features, self.openings(prompts), strict=True):
            item.opening = opening
        by_account: dict[str, list[EventFeatures]] = {}
        chosen: list[EventFeatures] = []
        kept: dict[str, int] = {}
        for item in features:
            account = self._account(item.account_id)
            item.folded = account.fold(item)
            by_account.setdefault(item.account_id, []).append(item)
            if item.folded:
                continue
            position = account.seen + kept.get(item.account_id, 0)
            kept[item.account_id] = kept.get(item.account_id, 0) + 1
            if embed_all or (
                self.embedder is not None
                and tiering.wants_embedding(position, self.sample_every, self.tiered, account.deep)
            ):
                chosen.append(item)
        if self.embedder is not None:
            tiering.embed(self.embedder, chosen)
        return by_account

    def _centroids(self) -> np.ndarray | None:
        """Benign topic centroids, which lifetime topic breadth counts in."""
        return None if self.reference_ is None else self.reference_.centroids

    # --- signals -------------------------------------------------------------------------------
    def _values(self, account: AccountWindow) -> tuple[dict[str, float], int, int]:
        """Signal values of the account's window, its size and its embedded size."""
        window = Window.of(list(account.features), account.lifetime, self.openings_.unusual)
        values = {s.name: s.compute(window) for s in SIGNALS if not s.needs_embeddings}
        values[ACTIVE_DAYS] = float(account.lifetime.active_days())
        values[OUTPUT_BUDGET] = asked_budget(account.features)
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

    def _surprises(self, values: dict[str, float], count: int, embedded: int) -> np.ndarray:
        return benign.surprises(self.benign_values_, values, count, embedded)

    def _isolation_surprise(self, vectors: np.ndarray) -> np.ndarray:
        if self.isolation_ is None:
            return np.zeros(len(vectors))
        return self.isolation_(vectors)

    def _suspected(self, values: dict[str, float], count: int) -> bool:
        """The cheap signals' summed surprise reaches the deep threshold (the same sum
        calibration takes over `cheap_surprises`)."""
        cheap = float(tiering.cheap_surprises(self._surprises(values, count, 0)))
        return cheap >= self.deep_threshold_

    def _window_raw(
        self, surprises: np.ndarray, behaviour: np.float64, values: dict[str, float], count: int
    ) -> float:
        """One window's raw score: its fused score or its harvest evidence, the larger."""
        weight = output_weight(output_budget(values))
        raw = np.atleast_1d(fused(surprises, behaviour, distinct_prompts(values, count), weight))
        return float(self._with_harvest(raw, surprises[None, :], active_days(values), weight)[0])

    def _with_harvest(
        self,
        raw: np.ndarray,
        surprises: np.ndarray,
        days: np.ndarray | float,
        weight: np.ndarray | float,
    ) -> np.ndarray:
        """The larger of each fused raw score and its harvest evidence on the same scale
        (`harvest.HarvestArm`); the fused score alone before calibration fits the arm."""
        if self.harvest_arm_ is None:
            return raw
        return np.maximum(raw, self.harvest_arm_(harvest(surprises, days, weight)))

    # --- calibration ---------------------------------------------------------------------------
    def fit(self, benign_events: Iterable[Event]) -> Self:
        """Replay benign history through the detector; learn per-signal benign distributions,
        the IsolationForest and the account-level thresholds."""
        self._fit(account_histories(benign_events))
        return self

    def fit_reviewed(self, benign_events: Iterable[Event], reviewed: Collection[str]) -> Self:
        """`fit` on the ordinary accounts of `benign_events`; each `reviewed` account (analysts'
        false positives) gets a ceiling instead: the lifetime peak the fitted detector gives its
        traffic. It is not flagged again below that peak plus `REVIEW_MARGIN` (its behaviour
        must change materially first); the thresholds, the distributions and the forest stay
        the ordinary benign population's (`detectors.base.ReviewedCalibration` says why)."""
        by_account = account_histories(benign_events)
        chosen = set(reviewed) & set(by_account)
        reviewed_histories = {a: by_account.pop(a) for a in sorted(chosen)}
        self._fit(by_account)
        self.reviewed_peaks_ = self._peaks(reviewed_histories) if self.isolation_ else {}
        if getattr(self, "calibration_report_", None) is not None:
            self.calibration_report_["reviewed_accounts"] = len(self.reviewed_peaks_)
        return self

    def _peaks(self, histories: dict[str, list[Event]]) -> dict[str, float]:
        """Each account's lifetime peak raw score under this (fitted) detector, replayed as
        calibration replays benign history."""
        snapshots = self.replay(self._prepare(histories, embed_all=True))
        self.accounts = {}
        if not snapshots:
            return {}
        raw = self._fused_scores(snapshots, self._snapshot_surprises(snapshots))
        return benign.lifetime_maxima([a for a, *_ in snapshots], raw)

    def _snapshot_surprises(self, snapshots: list[Snapshot]) -> np.ndarray:
        """One row of per-signal surprises per replayed snapshot."""
        return np.stack([self._surprises(v, c, e) for _, v, c, e in snapshots])

    def _fused_scores(self, snapshots: list[Snapshot], vectors: np.ndarray) -> np.ndarray:
        """The fused raw score of each snapshot, under the fitted isolation forest."""
        distinct = np.array([distinct_prompts(v, c) for _, v, c, _ in snapshots])
        weights = output_weight(np.array([output_budget(v) for _, v, _, _ in snapshots]))
        raw = fused(vectors, self._isolation_surprise(vectors), distinct, weights)
        days = np.array([active_days(v) for _, v, _, _ in snapshots])
        return self._with_harvest(raw, vectors, days, weights)

    def _fit(self, by_account: dict[str, list[Event]]) -> None:
        self.accounts = {}
        self.reference_ = None
        self.harvest_arm_ = None
        self.reviewed_peaks_ = {}
        prepared = self._prepare(by_account, embed_all=True)
        everything = unfolded(f for items in prepared.values() for f in items)
        topics = None
        if self.embedder is not None and prepared:
            self.reference_, topics = benign.fit_reference(
                self.embedder, everything, self.topics, self.reference_size, self.seed
            )
        if self.linker is not None:
            self.linker.fit(sorted(everything, key=lambda f: f.timestamp_ms), reference=topics)

        self.openings_ = benign.UsualOpenings.fit(everything)
        snapshots = self.replay(prepared)
        self.accounts = {}

        self.benign_values_ = benign.pool(snapshots)
        self.fitted_accounts_ = len(by_account)
        if not snapshots:
            return
        vectors = self._snapshot_surprises(snapshots)
        self.isolation_ = IsolationSurprise.fit(vectors, self.seed)
        accounts = [account_id for account_id, *_ in snapshots]
        cheap_peaks = benign.lifetime_maxima(accounts, tiering.cheap_surprises(vectors))
        sizes = {a: len(events) for a, events in by_account.items()}
        self.deep_threshold_ = tiering.deep_threshold(cheap_peaks, sizes, self.deep_share)
        # Thresholds from out-of-fold peaks: each account scored against the other accounts
        # only, as a new honest account will be (see `calibration`).
        from detectors.fusion import calibration

        fused_peaks, harvest_peaks, folds = calibration.cross_fitted_peaks(
            snapshots, self.seed, silent=by_account
        )
        self.harvest_arm_ = HarvestArm.fit(harvest_peaks, fused_peaks)
        peaks = self.harvest_arm_.combined_peaks(harvest_peaks, fused_peaks)
        in_sample = benign.lifetime_maxima(
            accounts, self._fused_scores(snapshots, vectors), by_account
        )
        fprs = {"suspicious": self.suspicious_fpr, "extraction": self.target_fpr}
        self.thresholds_ = calibration.thresholds(peaks, fprs)
        self.calibration_report_ = calibration.calibration_report(
            peaks, in_sample, folds, fprs, sizes, calibration.history_days(by_account.values())
        )

    def thresholds_for(self, account_id: str) -> dict[str, float]:
        """The account's thresholds: the calibrated ones, raised for a reviewed false positive
        to its ceiling (its reviewed peak plus `REVIEW_MARGIN`)."""
        peak = self.reviewed_peaks_.get(account_id)
        if peak is None:
            return self.thresholds_
        return {label: max(t, peak + REVIEW_MARGIN) for label, t in self.thresholds_.items()}

    def replay(
        self, prepared: dict[str, list[EventFeatures]], sample: Callable[[], bool] | None = None
    ) -> list[Snapshot]:
        """Replay histories through the accounts' windows as the stream would, with every
        signal (deep): a snapshot after each request from the BUCKETS[0]-th on, or after those
        `sample()` keeps. Calibration reads benign history this way, `calibrate --live` a
        live sample."""
        snapshots: list[Snapshot] = []
        for account_id, items in prepared.items():
            account = self._account(account_id)
            account.deep = True
            for item in unfolded(items):
                account.extend([item], self._centroids())
                account.embeddings_stale |= item.embedding is not None
                if account.seen >= BUCKETS[0] and (sample is None or sample()):
                    snapshots.append((account_id, *self._values(account)))
        return snapshots

    # --- streaming -----------------------------------------------------------------------------
    def update(self, account_id: str, events: list[Event]) -> Assessment:
        return self.update_batch({account_id: events})[account_id]

    def update_batch(self, updates: dict[str, list[Event]]) -> dict[str, Assessment]:
        """Assess every account with new events in one pass (one embedding call, one forest
        call for the batch)."""
        prepared = self._prepare(updates)
        steps: list[_Step] = []
        for account_id, items in prepared.items():
            account = self._account(account_id)
            # A burst (many requests of one account in one batch) is assessed every BURST_STEP
            # requests, so neither the verdict nor "queries before detection" depends on how
            # many of its requests one batch holds (a 2,000-record replay batch or a live poll).
            for start in range(0, len(items), BURST_STEP):
                chunk = unfolded(items[start : start + BURST_STEP])
                if not chunk:
                    continue
                if account.deep:  # gone deep earlier in this batch
                    tiering.embed_missing(self.embedder, chunk)
                account.extend(chunk, self._centroids())
                account.embeddings_stale |= any(f.embedding is not None for f in chunk)
                values, count, embedded = self._values(account)
                if self.tiered and not account.deep and self._suspected(values, count):
                    self._deepen(account)
                    values, count, embedded = self._values(account)
                reached = min(start + BURST_STEP, len(items))  # requests of the batch, folded too
                steps.append(_Step(account_id, reached, values, count, embedded))
        if not steps:
            return {}
        vectors = np.stack([self._surprises(s.values, s.count, s.embedded) for s in steps])
        forest = self._isolation_surprise(vectors)
        # Per account: its gravest label in the batch, the request that first reached it, and
        # the last step that had it; the assessment is the last step's, with that peak beside it
        # when the account left it again before the batch ended.
        gravest: dict[str, tuple[int, int, int]] = {}  # account -> (rank, reached, step index)
        last: dict[str, int] = {}
        for index, (step, surprises, extra) in enumerate(zip(steps, vectors, forest, strict=True)):
            raw = (
                self._window_raw(surprises, np.float64(extra), step.values, step.count)
                if step.count >= BUCKETS[0]
                else 0.0
            )
            rank = LABEL_RANK[score_and_label(raw, self.thresholds_for(step.account_id))[1]]
            so_far, reached, _ = gravest.get(step.account_id, (-1, 0, -1))
            if rank >= so_far:
                gravest[step.account_id] = (
                    rank,
                    step.requests if rank > so_far else reached,
                    index,
                )
            last[step.account_id] = index
        assessments = {}
        for account_id, (rank, reached, peak_index) in gravest.items():
            peak = None
            if peak_index != last[account_id]:
                peak = self._assess_step(steps[peak_index], vectors, forest, peak_index)
                peak.requests_at_label = reached
            index = last[account_id]
            final = self._assess_step(steps[index], vectors, forest, index)
            if rank > 0 and peak is None:  # a flag dates from the request that reached it
                final.requests_at_label = reached
            final.peak = peak
            assessments[account_id] = final
        if self._linking():
            profiles = self._profiles(prepared, assessments)
            if self.publish_profiles:
                self._profile_updates += profiles
            else:  # the same encoded updates the linker role reads
                decoded = [feed.decode(*profile.message()) for profile in profiles]
                view = self.campaign_view()
                view.ingest(m for m in decoded if m is not None)
                self._merge_campaigns(assessments, view.advance())
        return assessments

    def _assess_step(
        self, step: _Step, vectors: np.ndarray, forest: np.ndarray, index: int
    ) -> Assessment:
        return self._assess(
            step.values, step.count, step.embedded, vectors[index], forest[index], step.account_id
        )

    def _profiles(
        self, prepared: dict[str, list[EventFeatures]], assessments: dict[str, Assessment]
    ) -> list[ProfileUpdate]:
        """What the linker needs of this batch: each account's new requests (with their
        skeleton keys, from the whole prompt) and where the account stands."""
        assert self.linker is not None
        shortest = self.linker.params.min_prompt_chars  # the linker ignores shorter prompts
        updates = []
        for account_id, every in prepared.items():
            items = unfolded(every)
            if not items:
                continue
            keys = self.skeletons([f.prompt for f in items])
            events = [
                feed.LinkEvent(f, found if len(f.prompt.strip()) >= shortest else [])
                for f, found in zip(items, keys, strict=True)
            ]
            own = assessments[account_id]
            seen = self.accounts[account_id].seen
            updates.append(ProfileUpdate(account_id, seen, own.score, own.label, events))
        return updates

    def campaign_view(self) -> CampaignView:
        """The in-process campaign view (scoring with this detector's own windows)."""
        if self._view is None:
            from detectors.fusion.campaigns import CampaignView

            self._view = CampaignView(self, lambda members: self.accounts)
        return self._view

    def drain_profiles(self) -> list[ProfileUpdate]:
        """Profile updates since the last call (`publish_profiles`: for the linker topic)."""
        updates, self._profile_updates = self._profile_updates, []
        return updates

    def finish(self) -> dict[str, Assessment]:
        """The end of an in-process input: link what the watermark still holds and score every
        campaign; returns the members' campaign assessments."""
        if not self._linking() or self.publish_profiles:
            return {}
        assessments: dict[str, Assessment] = {}
        self._merge_campaigns(assessments, self.campaign_view().advance(final=True))
        return assessments

    def _merge_campaigns(self, assessments: dict[str, Assessment], update: CampaignUpdate) -> None:
        """Each member's campaign assessment replaces its own when graver (the view decided
        that from the standing the member last published; this batch's is fresher)."""
        self.cluster_verdicts_ += update.clusters
        for member, campaign in update.members.items():
            own = assessments.get(member)
            if own is None or campaign.score > own.score:
                assessments[member] = campaign
            else:
                assessments[member] = own.model_copy(update={"cluster_id": campaign.cluster_id})

    def _linking(self) -> bool:
        """Campaign linking runs once the linker is calibrated (an uncalibrated worker, which
        logs a warning at start, scores accounts alone)."""
        return self.linker is not None and self.linker.fitted

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
        coordination: float = 0.0,
    ) -> Assessment:
        """The verdict on one window; `coordination` (a linked cluster's, in decades) counts as
        behaviour beside the forest."""
        thresholds = self.thresholds_
        if isinstance(account, str):  # an account of its own (a campaign: its members' evidence)
            thresholds = self.thresholds_for(account)
            account = self.accounts[account]
        behaviour = np.float64(forest + coordination)
        raw = self._window_raw(surprises, behaviour, values, count) if count >= BUCKETS[0] else 0.0
        score, label = score_and_label(raw, thresholds)
        account.label = label
        found = reasons(values, surprises, forest, score, count, embedded, coordination)
        with_examples(found, account.features)
        return Assessment(score=min(1.0, max(0.0, score)), label=label, reasons=found)

    # --- state ---------------------------------------------------------------------------------
    def state(self, account_id: str) -> dict[str, Any]:
        return self._account(account_id).to_state()

    def load(self, account_id: str, state: dict[str, Any]) -> None:
        self.accounts[account_id] = AccountWindow.from_state(account_id, state, self.window)

    def forget(self, account_id: str) -> None:
        self.accounts.pop(account_id, None)

    def global_state(self) -> dict[str, Any] | None:
        """Cross-account state of an in-process run (its campaign view), checkpointed apart
        from accounts; None for a worker, which publishes profiles and links nothing itself."""
        if not self._linking() or self.publish_profiles:
            return None
        return self.campaign_view().state()

    def load_global_state(self, state: dict[str, Any]) -> None:
        if self._linking() and not self.publish_profiles and "event_time" in state:
            self.campaign_view().load(state)

    def calibration(self) -> dict[str, Any]:
        return persistence.calibration_to_json(self)

    def load_calibration(self, calibration: dict[str, Any]) -> None:
        persistence.load_calibration_json(self, calibration)
