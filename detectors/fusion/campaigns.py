"""One campaign view: the campaign linker fed per-account profile updates in event time, and
each linked cluster scored as one actor with the fused detector.

Workers publish `ProfileUpdate`s (`detectors.campaigns.feed`); this view takes them, whoever
sends them: the `distillguard linker` role reads them from the compacted profiles topic (every
worker's accounts, one active linker), an in-process run (`score`, `replay`, the demo) hands its
own detector's updates over directly. Either way the bytes are the same and so are the clusters.
Requests reach the linker through `EventTime` (watermark, allowed lateness, fixed slices), so
arrival order does not change what is linked.

A cluster is scored by pooling its members' scoring windows (`windows`: the in-process
detector's own, or the workers' `account_state` checkpoints for the linker role), with the
cluster's coordination (`CampaignLinker.coordination`: how improbable such links are among honest
accounts) counted as behaviour: pooled alone, a campaign of 40 quiet accounts looks like one
heavy honest user, and the coordination is what sets it apart. Each member
gets the campaign's verdict when it is graver than the member's own (the score and label its
worker last published).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from core.verdicts import Assessment, ClusterVerdict
from detectors.campaigns import CampaignLinker, clustering
from detectors.campaigns.eventtime import EventTime
from detectors.campaigns.feed import ProfileUpdate, StreamProgress
from detectors.fusion import pooling
from detectors.fusion.window import AccountWindow

if TYPE_CHECKING:
    from detectors.fusion.detector import ExtractionDetector

Windows = Callable[[Sequence[str]], Mapping[str, AccountWindow]]
DISSOLVED = "dissolved"  # the label of a cluster that no longer stands


@dataclass
class Standing:
    """What the view knows of an account from its worker: totals and its own verdict."""

    requests_seen: int = 0
    score: float = 0.0
    label: str = "benign"


@dataclass
class CampaignUpdate:
    """What one `advance` concluded: clusters scored, and the members' campaign assessments
    (each names its cluster; `requests_seen` from the member's latest profile update)."""

    clusters: list[ClusterVerdict] = field(default_factory=list)
    members: dict[str, Assessment] = field(default_factory=dict)
    requests_seen: dict[str, int] = field(default_factory=dict)
    retired: set[str] = field(default_factory=set)  # accounts the linker forgot (quiet)


class CampaignView:
    """The linker behind an event-time buffer, scoring clusters with `detector`."""

    def __init__(
        self,
        detector: ExtractionDetector,
        windows: Windows,
        event_time: EventTime | None = None,
    ) -> None:
        if detector.linker is None:
            raise ValueError("a campaign view needs a detector with a campaign linker")
        self.detector = detector
        self.linker: CampaignLinker = detector.linker
        self.windows = windows
        self.event_time = event_time or EventTime()
        self.standing: dict[str, Standing] = {}
        self._touched: set[str] = set()
        # Clusters written and still standing: id -> (members, last activity ms). A cluster the
        # linker no longer has (its links expired or were outweighed) is written once more as
        # `dissolved`, so the clusters table never shows a campaign that no longer stands.
        self.standing_clusters: dict[str, tuple[list[str], int]] = {}

    # -- input --------------------------------------------------------------------------------
    def ingest(self, messages: Iterable[ProfileUpdate | StreamProgress], stream: str = "") -> None:
        """Profile updates (their requests wait for the watermark) and stream progress.
        `stream`: where the updates come from when no progress messages say it (in-process)."""
        for message in messages:
            if isinstance(message, StreamProgress):
                self.event_time.mark(message.stream, message.event_ms)
                continue
            standing = self.standing.setdefault(message.account_id, Standing())
            standing.requests_seen = max(standing.requests_seen, message.requests_seen)
            standing.score, standing.label = message.score, message.label
            self._touched.add(message.account_id)
            if message.events:
                self.event_time.add(message.events, stream)
            # Without progress messages (in-process: one stream) the events mark the stream.

    # -- linking and scoring ------------------------------------------------------------------
    def advance(self, final: bool = False) -> CampaignUpdate:
        """Feed the slices the watermark has passed (all of them when `final`), then score the
        clusters touched since the last call (every cluster when `final`)."""
        slices = self.event_time.flush() if final else self.event_time.release()
        changed: set[str] = set()
        for events in slices:
            changed |= self.linker.observe_events(events)
        retired = self._retire()
        touched = self._touched | changed
        self._touched = set()
        links = self.linker.link_evidence()  # merging weak links is not free: once per call
        clusters = {c.cluster_id: c for c in self.linker.clusters(links)}
        if final:
            linked = set(clusters)
        else:
            linked = {c for a in touched if (c := self.linker.cluster_of(a)) is not None}
        update = self._score(sorted(linked), clusters, links)
        update.retired = retired
        self._dissolve(update, set(clusters))
        for cluster in update.clusters:
            if cluster.label != DISSOLVED:
                self.standing_clusters[cluster.cluster_id] = (
                    cluster.members,
                    clusters[cluster.cluster_id].last_seen_ms,
                )
        return update

    def _retire(self) -> set[str]:
        """What the linker retired (`CampaignLinker._retire`) leaves the view: its clusters
        without a `dissolved` row (their last verdict stands), and the standing of its accounts
        unless they were updated since the last call or seen again."""
        accounts, clusters = self.linker.drain_retired()
        for cluster_id in clusters:
            self.standing_clusters.pop(cluster_id, None)
        for account in accounts - self._touched:
            if account not in self.linker.profiles:
                self.standing.pop(account, None)
        return accounts

    def _dissolve(self, update: CampaignUpdate, current: set[str]) -> None:
        """Clusters written before that the linker no longer has: a `dissolved` row each, and
        their former members back to their own standing (unless in a cluster now)."""
        in_clusters = set(update.members)
        for cluster_id in sorted(set(self.standing_clusters) - current):
            members, last_seen_ms = self.standing_clusters.pop(cluster_id)
            observed = datetime.fromtimestamp(last_seen_ms / 1000, UTC)
            update.clusters.append(
                ClusterVerdict(
                    cluster_id=cluster_id,
                    updated=observed,
                    members=members,
                    score=0.0,
                    label=DISSOLVED,
                    evidence={"dissolved": True},
                )
            )
            for member in members:
                standing = self.standing.get(member)
                if member in in_clusters or standing is None:
                    continue
                update.members[member] = Assessment(
                    score=standing.score,
                    label=standing.label,  # type: ignore[arg-type]
                    reasons=[],
                    observed_at=observed,
                )
                update.requests_seen[member] = standing.requests_seen

    def _score(
        self, linked: list[str], clusters: Mapping[str, Any], links: Mapping[Any, Any]
    ) -> CampaignUpdate:
        update = CampaignUpdate()
        if not linked:
            return update
        detector = self.detector
        windows = self.windows(sorted({m for c in linked for m in clusters[c].members}))
        rows = []
        for cluster_id in linked:
            members = [m for m in clusters[cluster_id].members if m in windows]
            if not members:
                continue
            for member in members:
                if detector.tiered and not windows[member].deep:
                    detector._deepen(windows[member])
            pooled = pooling.pooled_window(members, windows)
            values, count, embedded = detector._values(pooled)
            rows.append((cluster_id, members, pooled, values, count, embedded))
        if not rows:
            return update
        vectors = np.stack([detector._surprises(v, c, e) for *_, v, c, e in rows])
        forests = detector._isolation_surprise(vectors)  # one forest call for every campaign
        for (cluster_id, members, pooled, values, count, embedded), surprises, forest in zip(
            rows, vectors, forests, strict=True
        ):
            coordination = self.linker.coordination(clusters[cluster_id], links)
            verdict = detector._assess(
                values, count, embedded, surprises, float(forest), pooled, coordination
            )
            # This cluster only, from the clusters `advance` read (not all of them again).
            update.clusters += clustering.scored(
                [clusters[cluster_id]], {cluster_id: (verdict.score, verdict.label)}
            )
            own = {
                m: Assessment(score=s.score, label=s.label, reasons=[])  # type: ignore[arg-type]
                for m in members
                if (s := self.standing.get(m)) is not None
            }
            cluster = clusters[cluster_id]
            pooling.share_verdict(own, members, verdict, cluster, windows)
            observed = datetime.fromtimestamp(cluster.last_seen_ms / 1000, UTC)
            update.members.update(
                {
                    m: a
                    if a.observed_at is not None
                    else a.model_copy(update={"observed_at": observed})
                    for m, a in own.items()
                }
            )
        update.requests_seen = {
            m: self.standing[m].requests_seen for m in update.members if m in self.standing
        }
        return update

    # -- checkpoint (the linker role's; an in-process run's rides on its global state) --------
    def state(self) -> dict[str, Any]:
        return {
            "linker": self.linker.state(),
            "event_time": self.event_time.to_json(),
            "standing": {a: [s.requests_seen, s.score, s.label] for a, s in self.standing.items()},
            "clusters": {c: [members, ms] for c, (members, ms) in self.standing_clusters.items()},
        }

    def load(self, state: Mapping[str, Any]) -> CampaignView:
        self.linker.load(state["linker"])
        self.event_time.load(state["event_time"])
        self.standing = {a: Standing(n, s, label) for a, (n, s, label) in state["standing"].items()}
        self.standing_clusters = {
            c: (list(members), int(ms)) for c, (members, ms) in state.get("clusters", {}).items()
        }
        self._touched = set()
        return self
