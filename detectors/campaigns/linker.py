"""The campaign linker: benign-calibrated evidence between account pairs, streamed into edges
and clusters.

In the stream, candidate pairs come from inverted indexes (same client context, same user agent
in the same hour, the same benign-rare prompt skeleton or parameter signature, near-duplicate
prompts in the global `RecentPromptIndex`, existing links), never from all pairs.
"""

from __future__ import annotations

import itertools
import math
from collections import ChainMap, defaultdict
from collections.abc import Mapping, Sequence
from typing import Any, Self

import numpy as np

from core.timeutil import DAY_MS
from core.verdicts import ClusterVerdict
from detectors.campaigns import calibration, clustering, evidence, persistence, rhythm
from detectors.campaigns.calibration import time_batches
from detectors.campaigns.clustering import Cluster
from detectors.campaigns.evidence import PIECES, Pair, PieceValues, Tail, pair
from detectors.campaigns.feed import LinkEvent
from detectors.campaigns.params import LinkerParams
from detectors.campaigns.persistence import LinkState, PairStamp
from detectors.campaigns.population import LiveCounts
from detectors.campaigns.profiles import AccountProfile, param_signature
from detectors.campaigns.rhythm import Rhythm
from detectors.campaigns.skeletons import skeleton_keys
from detectors.features import EventFeatures
from detectors.index import BenignReference, SimhashSet


class CampaignLinker:
    """Links accounts into campaigns from shared, benign-rare evidence; streaming.

    >>> from detectors.features import SimHasher, featurize
    >>> from core.events import Event
    >>> from students.actors import (AttackConfig, benign_users, multi_account_campaign,
    ...                              request_record)
    >>> def features_of(plans):
    ...     events = [Event.model_validate(request_record(p, f"r{i}")) for i, p in enumerate(plans)]
    ...     return featurize(events, SimHasher())
    >>> linker = CampaignLinker().fit(features_of(benign_users(100, 300, 7, seed=11)))
    >>> campaign = multi_account_campaign(
    ...     AttackConfig(budget=400, seed=2, extra={"accounts": 10, "cover_ratio": 1.0}))
    >>> changed = linker.observe(features_of(benign_users(100, 300, 7, seed=12) + campaign))
    >>> [(len(c.members), c.members[0], c.evidence["shared_prefixes"]) for c in linker.clusters()]
    [(10, 'campaign-2-000', {'203.0.114.0/24': 10})]
    """

    common_keys_: set[str]
    common_contexts_: set[str]
    common_simhashes_: SimhashSet
    param_rarity_: dict[str, float]
    common_skeletons_: set[str]
    rhythm_: Rhythm
    tails_: dict[str, Tail]
    threshold_: float
    weak_threshold_: float
    benign_pairs_: int
    reference_: BenignReference | None

    def __init__(self, params: LinkerParams = LinkerParams()) -> None:
        self.params = params
        self._reset_stream()

    def get_params(self) -> dict[str, Any]:
        return {"params": self.params}

    @property
    def now_ms(self) -> int:
        """Event time of the newest request seen."""
        return self._stream.now_ms

    @property
    def profiles(self) -> Mapping[str, AccountProfile]:
        """What linking remembers about each account it has seen."""
        return self._stream.profiles

    def _reset_stream(self) -> None:
        self._stream = LinkState.empty(self.params.window_ms)
        self._merged: tuple[tuple, list[Pair]] | None = None  # (links, merging): `_merging`
        self._retired: tuple[set[str], set[str]] = (set(), set())  # `drain_retired`

    # -- calibration --------------------------------------------------------------------------
    def fit(
        self, benign_features: Sequence[EventFeatures], reference: BenignReference | None = None
    ) -> Self:
        """Calibrate on benign traffic only: what benign accounts commonly share (ignored as
        evidence), how rare each piece of evidence is between benign pairs, and the edge
        threshold at `false_link_rate`."""
        features = sorted(benign_features, key=lambda f: f.timestamp_ms)
        self._fit_topics(features, reference)
        self.rhythm_ = Rhythm.fit(features)
        samples = self._cross_fitted_samples(features)
        self._fit_common(features)
        self.tails_ = {
            piece: Tail.fit([x for v in samples.values() if (x := v[piece]) is not None])
            for piece in PIECES
        }
        strengths = sorted(evidence.strength(self.tails_, v)[0] for v in samples.values())
        self.benign_pairs_ = len(strengths)
        self.threshold_ = calibration.edge_threshold(strengths, self.params.false_link_rate)
        self.weak_threshold_ = calibration.edge_threshold(strengths, self.params.weak_link_rate)
        self._reset_stream()
        return self

    def _fit_topics(
        self, features: Sequence[EventFeatures], reference: BenignReference | None
    ) -> None:
        embedded = [f.embedding for f in features if f.embedding is not None]
        if reference is None and len(embedded) >= 4 * self.params.topic_k:
            reference = BenignReference(k=self.params.topic_k).fit(np.stack(embedded))
        self.reference_ = reference

    def _fit_common(self, features: Sequence[EventFeatures]) -> None:
        p = self.params
        common = calibration.fit_common(
            features, p.common_accounts, p.rare_signature_share, p.max_hamming
        )
        self.common_keys_, self.common_contexts_ = common.keys, common.contexts
        self.common_simhashes_, self.param_rarity_ = common.simhashes, common.param_rarity
        self.common_skeletons_ = common.skeletons

    def _cross_fitted_samples(self, features: Sequence[EventFeatures]) -> dict[Pair, PieceValues]:
        """Benign pair evidence measured the way the stream will see it: what counts as common
        is learnt on one half of the accounts and applied to pairs of the other half."""
        halves = calibration.halves(features)
        samples: dict[Pair, PieceValues] = {}
        for learn, measure in (halves, halves[::-1]):
            self._fit_common([f for f in features if f.account_id in learn])
            samples.update(
                self._benign_pair_samples([f for f in features if f.account_id in measure])
            )
        return samples

    def _benign_pair_samples(self, features: Sequence[EventFeatures]) -> dict[Pair, PieceValues]:
        """Stream benign traffic through this (scratch) state and measure account pairs once per
        window, keeping the largest value each piece reached (a conservative reference)."""
        self._reset_stream()
        samples: dict[Pair, PieceValues] = {}
        window_ms = self.params.window_ms
        checkpoint = features[0].timestamp_ms + window_ms if features else 0
        for batch in time_batches(features, self.params.calibration_batch_ms):
            if batch[0].timestamp_ms >= checkpoint:
                calibration.merge_max(samples, self._measure_pairs())
                checkpoint += window_ms
            self._ingest(batch)
        calibration.merge_max(samples, self._measure_pairs())
        return samples

    def _measure_pairs(self) -> dict[Pair, PieceValues]:
        """Pieces for pairs of accounts active in the window: all of them, or a seeded uniform
        sample of `max_calibration_pairs` when there are more."""
        since = self.now_ms - self.params.window_ms
        active = sorted(a for a, p in self.profiles.items() if p.last_seen_ms >= since)
        pairs = calibration.sample_pairs(active, self.params.max_calibration_pairs)
        live = LiveCounts(self._stream.profiles, self.params.max_posting)
        return {both: self._pieces(*both, live) for both in pairs}

    # -- streaming ----------------------------------------------------------------------------
    def observe(
        self,
        features: Sequence[EventFeatures],
        skeletons: Mapping[str, Sequence[str]] | None = None,
    ) -> set[str]:
        """Consume a batch from any accounts; returns accounts whose cluster may have changed.
        `skeletons`: each prompt key's skeleton keys when the worker computed them from the
        whole prompt (the features then carry only a snippet)."""
        if not hasattr(self, "threshold_"):
            raise RuntimeError("CampaignLinker needs fit() or load_calibration() first")
        if not features:
            return set()
        touched = self._ingest(sorted(features, key=lambda f: f.timestamp_ms), skeletons)
        changed = self._update_edges(self._evaluate(touched))
        stream = self._stream
        return stream.ids.relabel(self._links(), self._first_seen) if changed else set()

    @property
    def merge_pairs(self) -> int:
        """Disjoint weak links that make two clusters one: as improbable between unrelated
        groups as one edge between benign accounts (`false_link_rate`)."""
        p = self.params
        return max(2, math.ceil(math.log(p.false_link_rate) / math.log(p.weak_link_rate)))

    def _merging(self) -> list[Pair]:
        """`clustering.merged_links` of the current links, recomputed only when the edges or
        weak links changed (a slice that changed none, and `link_evidence` after the slice
        that did, ask again: a union-find over every link each time was 10% of the linker).
        Only weak links that `evidence.acts_alike` merge clusters (marked when made,
        `evidence.shows_operator`): on `enterprise-nat`, weak links of shared prompts and
        topics alone (the world's attackers draw on the same public prompt sets) joined a
        low-and-slow and a self-instruct attacker's clusters to the 40-account campaign's, and
        a report on it described three actors as one; on `sharegpt-chat`, shared harvest
        parameters joined three other strategies' attackers to its campaign."""
        stream = self._stream
        merging = tuple(both for both, link in stream.weak.items() if evidence.acts_alike(link))
        key = (tuple(stream.edges), merging, self.merge_pairs)
        if self._merged is None or self._merged[0] != key:
            self._merged = (key, clustering.merged_links(*key))
        return self._merged[1]

    def _links(self) -> list[Pair]:
        """Edges, and the weak links that merge clusters."""
        return [*self._stream.edges, *self._merging()]

    def _first_seen(self, account_id: str) -> int:
        return self.profiles[account_id].first_seen_ms

    def observe_events(self, events: Sequence[LinkEvent]) -> set[str]:
        """`observe` for requests from the profiles feed (one event-time slice)."""
        return self.observe(
            [e.features for e in events], {e.features.prompt_key: e.skeletons for e in events}
        )

    def _ingest(
        self,
        features: Sequence[EventFeatures],
        given: Mapping[str, Sequence[str]] | None = None,
    ) -> dict[str, set[str]]:
        """Update profiles, postings and the prompt index; returns each account of the batch
        with the partners worth comparing it with."""
        stream = self._stream
        hour_keys: dict[str, set[tuple[str, int]]] = defaultdict(set)
        posted: dict[str, set[str]] = defaultdict(set)
        skeletons: dict[str, list[str]] = {}  # prompt key -> evidence keys, once per batch
        for f, topic in zip(features, self._topics_of(features), strict=True):
            if f.prompt_key not in skeletons:
                skeletons[f.prompt_key] = self._skeletons(
                    f, None if given is None else given.get(f.prompt_key)
                )
            keys = skeletons[f.prompt_key] + self._signature_key(f)
            hour_keys[f.account_id].add(stream.profiles.observe(f, topic, keys))
            posted[f.account_id].update(keys)
        day = stream.now_ms // DAY_MS
        stream.now_ms = max(stream.now_ms, features[-1].timestamp_ms)
        if stream.now_ms // DAY_MS != day:  # once a day of event time: forget what is old
            cutoff = stream.now_ms - self.params.window_ms
            stream.evaluated = {k: v for k, v in stream.evaluated.items() if v.at_ms >= cutoff}
            self._retire(stream.now_ms - max(self.params.retire_ms, self.params.window_ms))
        stream.prompt_index.add(features)
        partners = self._link_prompts(features)
        stream.profiles.prune(hour_keys, stream.now_ms - self.params.window_ms)
        for account, hours in hour_keys.items():
            partners[account] |= stream.profiles.partners(
                account, hours, self.params.max_posting, posted[account]
            )
        return partners

    def _retire(self, cutoff_ms: int) -> None:
        """Forget accounts quiet since `cutoff_ms` (`retire_ms`, a month), unless a member of
        their cluster is still active. Profiles of accounts that stop were otherwise kept for
        good, their links, pair stamps and postings with them: every slice's scans of the links
        and every checkpoint grew with every account ever seen. A cluster goes only whole: its
        last verdict stands in the store (it is not `dissolved`: nothing outweighed it), and a
        member that returns starts a new profile, as an unseen account does. Not at the window
        (a week): quiet accounts' postings make a client context or parameter signature they
        shared look common to the live population (`LiveCounts`), and forgetting them after a
        week made shared harvest parameters rare enough to merge `sharegpt-chat`'s campaign
        with six other attackers (tiered and MiniLM: 40/40 attributed to one actor → 0/40)."""
        stream = self._stream
        quiet = {a for a, p in stream.profiles.items() if p.last_seen_ms < cutoff_ms}
        for members in stream.ids.groups().values():
            if not quiet.issuperset(members):
                quiet.difference_update(members)
        if not quiet:
            return
        clusters = stream.forget(quiet)
        self._merged = None
        self._retired[0].update(quiet)
        self._retired[1].update(clusters)

    def drain_retired(self) -> tuple[set[str], set[str]]:
        """Accounts and cluster ids retired since the last call (`_retire`)."""
        retired, self._retired = self._retired, (set(), set())
        return retired

    def _skeletons(self, f: EventFeatures, keys: Sequence[str] | None = None) -> list[str]:
        """The prompt's skeleton keys (`keys` when computed already) that several benign
        accounts do not share."""
        if len(f.prompt.strip()) < self.params.min_prompt_chars:
            return []
        found = skeleton_keys(f.prompt) if keys is None else keys
        return [k for k in found if k not in self.common_skeletons_]

    def _signature_key(self, f: EventFeatures) -> list[str]:
        """The request's parameter signature as a posting key, when benign accounts seldom
        use it."""
        signature = param_signature(f)
        return [f"p|{signature}"] if self._rare_signature(signature) else []

    def _rare_signature(self, signature: str) -> bool:
        """Whether sharing the parameter signature is evidence (benign accounts seldom use it)."""
        return self.param_rarity_.get(signature, self.param_rarity_.get("", 0.0)) > 0

    def _topics_of(self, features: Sequence[EventFeatures]) -> list[int | None]:
        topics: list[int | None] = [None] * len(features)
        rows = [i for i, f in enumerate(features) if f.embedding is not None]
        if self.reference_ is not None and rows:
            vectors = [f.embedding for f in features if f.embedding is not None]
            ids, _ = self.reference_.assign(np.stack(vectors))
            for row, topic in zip(rows, ids.tolist(), strict=True):
                topics[row] = topic
        return topics

    def _evidence_prompts(self, features: Sequence[EventFeatures]) -> list[EventFeatures]:
        """Prompts that can link accounts: long enough to be specific, and neither a prompt nor
        a near-duplicate of one that several benign accounts send."""
        chosen = [
            f
            for f in features
            if len(f.prompt.strip()) >= self.params.min_prompt_chars
            and f.prompt_key not in self.common_keys_
        ]
        hashes = [f.simhash for f in chosen]
        common = self.common_simhashes_.contains(hashes, self.params.max_hamming)
        return [f for f, is_common in zip(chosen, common.tolist(), strict=True) if not is_common]

    def _link_prompts(self, features: Sequence[EventFeatures]) -> dict[str, set[str]]:
        """Record near-duplicate prompts shared with other accounts (benign-common ones
        excluded); returns, per account of the batch, the accounts it shares them with."""
        p, stream = self.params, self._stream
        partners: dict[str, set[str]] = defaultdict(set)
        queries = self._evidence_prompts(features)
        found = stream.prompt_index.neighbours(
            queries, k=p.neighbour_k, max_hamming=p.max_hamming, min_cosine=p.min_cosine
        )
        for f, hits in zip(queries, found, strict=True):
            for hit in hits:
                if hit.prompt_key in self.common_keys_ or hit.account_id not in stream.profiles:
                    continue
                stream.shared.add(f, hit.account_id, hit.prompt_key)
                partners[f.account_id].add(hit.account_id)
        return partners

    def _evaluate(self, partners: Mapping[str, set[str]]) -> dict[Pair, PieceValues]:
        """Pieces for each touched account with its partners and its current links (gathered
        for the touched accounts only: a linked campaign has hundreds of links, and every slice
        touches a few of its members). In pair order, not a set's: links are kept in the order
        they were evaluated, and which weak links merge clusters follows that order, so a set's
        order, which changes with the interpreter's hash seed, made a cluster's score differ
        between two runs of the same traffic."""
        linked: dict[str, set[str]] = defaultdict(set)
        for a, b in itertools.chain(self._stream.edges, self._stream.weak):
            if a in partners:
                linked[a].add(b)
            if b in partners:
                linked[b].add(a)
        pairs = {
            pair(account, other)
            for account, others in partners.items()
            for other in others | linked[account]
        }
        due = sorted(both for both in pairs if self._due(both))
        live = LiveCounts(
            self._stream.profiles, self.params.max_posting, self._alike_beyond_network
        )
        return {both: self._pieces(*both, live) for both in due}

    def _due(self, both: Pair) -> bool:
        """Whether the pair's evidence may have changed since its last evaluation (which it then
        becomes): a new pair, new shared prompts, or either account grown by `reevaluate_growth` of
        its requests then (every request while small). Re-evaluating every partner of every account
        in every slice cost most of the linker's time once a 40-account campaign was linked, and one
        more request of a 200-request account moves no piece materially. The stamps follow the
        slices, so the same traffic still gives the same links however it arrives."""
        stream, growth = self._stream, self.params.reevaluate_growth
        a, b = (stream.profiles[account].requests for account in both)
        shared = stream.shared.count(both)
        then = stream.evaluated.get(both)
        due = (
            then is None
            or shared != then.shared
            or a - then.requests_a >= max(1.0, growth * then.requests_a)
            or b - then.requests_b >= max(1.0, growth * then.requests_b)
        )
        if due:
            stream.evaluated[both] = PairStamp(a, b, shared, stream.now_ms)
        return due

    def _schedule(self, account: str) -> rhythm.Shrunk | None:
        """The account's `Rhythm.shrunk` histograms, smoothed again only when its active minutes
        (or the calibration) changed: a busy account is compared with many partners in every
        slice, and smoothing it each time was 6-9 % of the linker's time."""
        profile = self._stream.profiles[account]
        memo = profile.rhythm_memo
        prior = self.params.rhythm_prior
        if (
            memo is None
            or memo[0] is not self.rhythm_
            or memo[1:3] != (prior, profile.minutes_version)
        ):
            shrunk = self.rhythm_.shrunk(rhythm.histograms(profile.minutes), prior)
            profile.rhythm_memo = memo = (self.rhythm_, prior, profile.minutes_version, shrunk)
        return memo[3]

    def _timing_pieces(self, a: str, b: str) -> PieceValues:
        """The pair's timing family: hours shared beyond chance and a common schedule."""
        profiles, p = self._stream.profiles, self.params
        return {
            "timing": evidence.timing_overlap(
                profiles[a], profiles[b], profiles.active_hours, p.timing_prior
            ),
            "rhythm": self.rhythm_.shrunk_lift(self._schedule(a), self._schedule(b)),
        }

    def _sending_pieces(self, a: str, b: str) -> PieceValues:
        """What the pair sends: shared near-duplicate prompts, topics and templates."""
        profiles, p = self._stream.profiles, self.params
        pa, pb = profiles[a], profiles[b]
        return {
            "prompts": evidence.prompt_overlap(self._stream.shared.count(pair(a, b)), pa, pb),
            "topics": evidence.topic_overlap(pa, pb, p.min_topic_prompts),
            "templates": evidence.template_overlap(pa, pb, p.template_prior, p.min_template_share),
        }

    def _alike_beyond_network(self, a: str, b: str) -> bool:
        """Whether two accounts may be one actor on evidence no shared network explains: active
        in the same hours or on the same schedule beyond what honest pairs reach (a rare timing
        family), or alike enough in what and when they send to be a weak link without their
        network and parameters. A campaign's members on its own address blocks are alike this
        way and so do not make those blocks look common to each other (on `edu-platform` 13-14
        members shared each of three hosting /24s and vouched for them); honest seats behind one
        NAT are not, and keep their office's network common."""
        p = self.params
        values = self._timing_pieces(a, b)
        if any(
            (tail := self.tails_[piece]).pairs > 0
            and tail.p_value(value) <= max(p.piece_alpha, 1 / (tail.pairs + 1))
            for piece, value in values.items()
        ):
            return True
        values |= self._sending_pieces(a, b)  # timing computed once, then what they send
        scored = evidence.strength(self.tails_, values)
        link = evidence.edge(
            values, scored, self.tails_, self.weak_threshold_, p.weak_piece_alpha, p.min_pieces
        )
        return link is not None

    def _pieces(self, a: str, b: str, live: LiveCounts) -> PieceValues:
        """The pair's evidence. A client context, or a parameter signature, counts as common
        when the calibration or the live population finds it so (`LiveCounts`)."""
        profiles, p = self._stream.profiles, self.params
        pa, pb = profiles[a], profiles[b]
        common = live.common_contexts(a, b, p.common_accounts, self.common_contexts_)
        ordinary = live.common_signatures(a, b, p.common_accounts, self._rare_signature)
        rarity = ChainMap(dict.fromkeys(ordinary, 0.0), self.param_rarity_)
        return {
            "infra": evidence.infra_overlap(pa, pb, common),
            "params": evidence.params_overlap(pa, pb, rarity),
            **self._timing_pieces(a, b),
            **self._sending_pieces(a, b),
        }

    def _update_edges(self, evaluated: Mapping[Pair, PieceValues]) -> bool:
        """Each evaluated pair becomes an edge, a weak link or nothing; True when any edge or
        weak link appeared or went."""
        p, edges, weak = self.params, self._stream.edges, self._stream.weak
        changed = False
        for both, values in evaluated.items():
            scored = evidence.strength(self.tails_, values)
            link = evidence.edge(
                values, scored, self.tails_, self.threshold_, p.piece_alpha, p.min_pieces
            )
            faint = None
            if link is None:
                faint = evidence.edge(
                    values,
                    scored,
                    self.tails_,
                    self.weak_threshold_,
                    p.weak_piece_alpha,
                    p.min_pieces,
                )
                if faint is not None:
                    faint["operator"] = evidence.shows_operator(
                        scored[1], self.tails_, p.piece_alpha
                    )
            for links, found in ((edges, link), (weak, faint)):
                if found is not None:
                    changed |= both not in links
                    links[both] = found
                elif both in links:
                    del links[both]
                    changed = True
        return changed

    # -- clusters -----------------------------------------------------------------------------
    def cluster_of(self, account_id: str) -> str | None:
        return self._stream.ids.of.get(account_id)

    def clusters(self, links: Mapping[Pair, Mapping[str, Any]] | None = None) -> list[Cluster]:
        """Current clusters (two or more linked accounts), largest first; `links` from
        `link_evidence` when the caller has them already."""
        stream = self._stream
        links = self.link_evidence() if links is None else links
        found = [
            clustering.describe(cluster_id, members, links, stream.profiles, stream.shared)
            for cluster_id, members in stream.ids.groups().items()
        ]
        return sorted(found, key=lambda c: (-len(c.members), c.cluster_id))

    def link_evidence(self) -> dict[Pair, dict[str, Any]]:
        """Every link that holds a cluster together (edges and merging weak links), with its
        evidence."""
        stream = self._stream
        return {**stream.edges, **{both: stream.weak[both] for both in self._merging()}}

    def coordination(self, cluster: Cluster, links: Mapping[Pair, Mapping[str, Any]]) -> float:
        """How improbable the cluster is among independent honest accounts, in decades
        (`clustering.coordination_surprise`), with chance set by the pairs searched: those of the
        accounts active in the window, at least as many as calibration compared. Scoring a
        cluster as one actor counts it as behaviour: acting as one of many accounts is how the
        actor asks (`CampaignView`). `links`: from `link_evidence`, read once per scoring."""
        members = set(cluster.members)
        strengths = {both: float(e["strength"]) for both, e in links.items() if both[0] in members}
        active = len(self.profiles)
        chance = math.log10(max(self.benign_pairs_, active * (active - 1) // 2, 1))
        return clustering.coordination_surprise(strengths, chance)

    def cluster_verdicts(
        self, scores: Mapping[str, tuple[float, str]] | None = None
    ) -> list[ClusterVerdict]:
        """Every cluster with its fused score; `scores` maps cluster_id → (score, label)."""
        return clustering.scored(self.clusters(), scores)

    # -- persistence --------------------------------------------------------------------------
    @property
    def fitted(self) -> bool:
        """Calibrated on benign history (an unfitted linker links nothing)."""
        return hasattr(self, "threshold_")

    def calibration(self) -> dict[str, Any] | None:
        """Fitted parameters (JSON), for `calibrate --out`; None before `fit`."""
        return persistence.calibration_to_json(self) if self.fitted else None

    def load_calibration(self, data: Mapping[str, Any]) -> Self:
        persistence.load_calibration_json(self, data)
        return self

    def state(self) -> dict[str, Any]:
        """Calibration plus everything streamed so far (JSON; the prompt index as base64)."""
        return {"calibration": self.calibration(), **self._stream.to_json()}

    def load(self, state: Mapping[str, Any]) -> Self:
        """Resume from `state()`: postings are rebuilt from the profiles."""
        self.load_calibration(state["calibration"])
        self._stream = LinkState.from_json(state, self.params.window_ms)
        self._merged, self._retired = None, (set(), set())
        return self
