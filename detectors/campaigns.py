"""Campaign linking: many small accounts that are one harvest.

A campaign splits its harvest over accounts so that each stays under every per-account threshold,
but the accounts still share things honest strangers rarely share: client infrastructure (one /24
and one user agent on the same days), the same active hours, near-duplicate prompts, an unusual
parameter profile, topics. Each of these is weak alone and some are common among honest users
(offices share a prefix, everyone types "continue"), so every piece of evidence is scored by how
rare it is between *benign* account pairs (its empirical tail probability, as a surprise in
decades: −log10 p), pieces are summed, and an edge needs both a total above a benign-calibrated
threshold and at least `min_pieces` individually rare pieces. Accounts joined by edges form a
cluster (union-find); the pipeline scores each cluster as a whole.

Calibration (`fit`) reads benign traffic only. What several benign accounts share (prompts and
their near-duplicates, client contexts, parameter signatures) is ignored as evidence; the benign
distribution of each piece is measured over benign account pairs with that "common" knowledge
learnt on the other half of the accounts (cross-fitting, so the chance overlaps of honest
accounts the calibration never saw are in the reference), and the edge threshold is the benign
pair strength at `false_link_rate`.

In the stream, candidate pairs come from inverted indexes (same client context, same user agent
in the same hour, near-duplicate prompts in the global `RecentPromptIndex`, existing links),
never from all pairs.
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import heapq
import inspect
import itertools
import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Self

import numpy as np

from core.timeutil import DAY_MS, HOUR_MS
from core.verdicts import ClusterVerdict
from detectors.features import EventFeatures
from detectors.index import BenignReference, RecentPromptIndex, SimhashSet

PIECES = ("infra", "timing", "prompts", "params", "topics")
EXAMPLE_CHARS = 160
MAX_SHARED_PER_PAIR = 64
Pair = tuple[str, str]


def _pair(a: str, b: str) -> Pair:
    return (a, b) if a < b else (b, a)


def param_signature(f: EventFeatures) -> str:
    """Generation settings as one token: harvesters pin them (temperature 0, long outputs)."""
    temperature = "-" if f.temperature is None else f"{f.temperature:g}"
    return f"t={temperature}|m={f.max_tokens}|n={f.n}|lp={int(f.logprobs)}"


# --- per-account profile -------------------------------------------------------------------------
@dataclass
class AccountProfile:
    """What linking remembers about one account (recent days and hours only)."""

    first_seen_ms: int
    last_seen_ms: int
    requests: int = 0
    contexts: dict[str, set[int]] = field(default_factory=dict)  # "prefix ua" -> days used
    agent_hours: dict[str, set[int]] = field(default_factory=dict)  # user agent -> hour buckets
    params: Counter[str] = field(default_factory=Counter)  # parameter signature -> requests
    topics: Counter[int] = field(default_factory=Counter)  # benign centroid -> prompts

    @property
    def hours(self) -> set[int]:
        return set().union(*self.agent_hours.values())

    def observe(self, f: EventFeatures, topic: int | None) -> None:
        self.first_seen_ms = min(self.first_seen_ms, f.timestamp_ms)
        self.last_seen_ms = max(self.last_seen_ms, f.timestamp_ms)
        self.requests += 1
        if f.ip_prefix:
            context = f"{f.ip_prefix} {f.user_agent}"
            self.contexts.setdefault(context, set()).add(f.timestamp_ms // DAY_MS)
        self.agent_hours.setdefault(f.user_agent, set()).add(f.timestamp_ms // HOUR_MS)
        self.params[param_signature(f)] += 1
        if topic is not None:
            self.topics[topic] += 1

    def prune(self, cutoff_ms: int) -> list[str]:
        """Drop days and hours before the window; returns contexts no longer used."""
        day, hour = cutoff_ms // DAY_MS, cutoff_ms // HOUR_MS
        for days in self.contexts.values():
            days.difference_update([d for d in days if d < day])
        for hours in self.agent_hours.values():
            hours.difference_update([h for h in hours if h < hour])
        gone = [c for c, days in self.contexts.items() if not days]
        for context in gone:
            del self.contexts[context]
        for agent in [a for a, hours in self.agent_hours.items() if not hours]:
            del self.agent_hours[agent]
        return gone

    def to_json(self) -> dict[str, Any]:
        return {
            "first_seen_ms": self.first_seen_ms,
            "last_seen_ms": self.last_seen_ms,
            "requests": self.requests,
            "contexts": {c: sorted(d) for c, d in self.contexts.items()},
            "agent_hours": {a: sorted(h) for a, h in self.agent_hours.items()},
            "params": dict(self.params),
            "topics": {str(t): n for t, n in self.topics.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AccountProfile:
        return cls(
            data["first_seen_ms"],
            data["last_seen_ms"],
            data["requests"],
            {c: set(d) for c, d in data["contexts"].items()},
            {a: set(h) for a, h in data["agent_hours"].items()},
            Counter(data["params"]),
            Counter({int(t): n for t, n in data["topics"].items()}),
        )


# --- evidence pieces: one number each, larger = more shared ---------------------------------------
def infra_overlap(a: AccountProfile, b: AccountProfile, ignore: set[str]) -> float:
    """Share of the quieter account's context-days (same /24 AND same user agent on the same
    day) that the other account also used; benign-shared contexts do not count."""
    own_a = {c: d for c, d in a.contexts.items() if c not in ignore}
    own_b = {c: d for c, d in b.contexts.items() if c not in ignore}
    days_a, days_b = sum(map(len, own_a.values())), sum(map(len, own_b.values()))
    if not days_a or not days_b:
        return 0.0
    shared = sum(len(own_a[c] & own_b[c]) for c in own_a.keys() & own_b.keys())
    return shared / min(days_a, days_b)


def timing_overlap(a: AccountProfile, b: AccountProfile, active_hours: int, prior: float) -> float:
    """Shared active hours beyond what two accounts this busy would share by chance among the
    population's `active_hours` (kappa-like: 0 = chance, near 1 = the same hours), shrunk by
    `prior` so one shared hour proves little and busy honest users do not look coordinated."""
    hours_a, hours_b = a.hours, b.hours
    union = len(hours_a | hours_b)
    if not union:
        return 0.0
    expected = len(hours_a) * len(hours_b) / max(active_hours, union)
    return max(0.0, (len(hours_a & hours_b) - expected) / (union - expected + prior))


def prompt_overlap(shared: int, a: AccountProfile, b: AccountProfile) -> float:
    """Shared near-duplicate prompts per geometric-mean request count: a busy honest pair meets
    a few popular prompts by chance, a templated campaign shares a large part of its traffic."""
    return shared / math.sqrt(max(a.requests, 1) * max(b.requests, 1))


def params_overlap(a: AccountProfile, b: AccountProfile, rarity: Mapping[str, float]) -> float:
    """Shared parameter signatures, each weighted by its rarity among benign accounts (zero for
    settings many honest users have, such as a client library's defaults)."""
    unseen = rarity.get("", 0.0)
    total_a, total_b = sum(a.params.values()), sum(b.params.values())
    return sum(
        min(a.params[s] / total_a, b.params[s] / total_b) * rarity.get(s, unseen)
        for s in a.params.keys() & b.params.keys()
    )


def topic_overlap(a: AccountProfile, b: AccountProfile, min_prompts: int) -> float | None:
    """Histogram intersection of benign topic centroids; None when either has too few."""
    total_a, total_b = sum(a.topics.values()), sum(b.topics.values())
    if min(total_a, total_b) < min_prompts:
        return None
    return sum(
        min(a.topics[t] / total_a, b.topics[t] / total_b) for t in a.topics.keys() & b.topics.keys()
    )


# --- benign tail probabilities -------------------------------------------------------------------
@dataclass
class Tail:
    """Empirical P(value ≥ x) over benign account pairs, kept as a few dozen points (one per
    halving of the tail count, plus the top values exactly) so calibration files stay small."""

    pairs: int
    values: list[float]  # ascending
    at_least: list[int]  # benign pairs with value ≥ values[i]

    @classmethod
    def fit(cls, samples: Sequence[float], exact_top: int = 64) -> Tail:
        ordered = np.sort(np.asarray(samples, dtype=np.float64))
        values = np.unique(ordered)
        at_least = len(ordered) - np.searchsorted(ordered, values, side="left")
        octave = np.floor(np.log2(np.maximum(at_least, 1)))
        keep = np.ones(len(values), dtype=bool)
        keep[1:] = octave[1:] != octave[:-1]
        keep[-exact_top:] = True
        return cls(len(ordered), values[keep].tolist(), at_least[keep].astype(int).tolist())

    def p_value(self, value: float) -> float:
        """Conservative tail probability (add-one smoothed, so never 0)."""
        if not self.values or value <= self.values[0]:
            return 1.0
        if value > self.values[-1]:
            return 1.0 / (self.pairs + 1)
        index = bisect.bisect_right(self.values, value) - 1
        return (self.at_least[index] + 1) / (self.pairs + 1)


@dataclass
class Cluster:
    """Accounts linked into one campaign candidate, with the evidence that linked them."""

    cluster_id: str
    members: list[str]
    evidence: dict[str, Any]
    first_seen_ms: int
    last_seen_ms: int


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: str, b: str) -> None:
        self.parent[self.find(a)] = self.find(b)

    def groups(self) -> list[list[str]]:
        grouped: dict[str, list[str]] = defaultdict(list)
        for x in self.parent:
            grouped[self.find(x)].append(x)
        return [sorted(g) for g in grouped.values()]


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

    def __init__(
        self,
        window_ms: int = 7 * DAY_MS,
        false_link_rate: float = 1e-5,
        piece_alpha: float = 0.001,
        min_pieces: int = 2,
        max_hamming: int = 6,
        min_cosine: float = 0.92,
        neighbour_k: int = 8,
        min_prompt_chars: int = 24,
        common_accounts: int = 2,
        rare_signature_share: float = 0.05,
        max_posting: int = 256,
        timing_prior: float = 2.0,
        min_topic_prompts: int = 8,
        topic_k: int = 32,
        calibration_batch_ms: int = HOUR_MS,
        max_calibration_pairs: int = 200_000,
    ) -> None:
        self.window_ms = window_ms
        self.false_link_rate = false_link_rate
        self.piece_alpha = piece_alpha
        self.min_pieces = min_pieces
        self.max_hamming = max_hamming
        self.min_cosine = min_cosine
        self.neighbour_k = neighbour_k
        self.min_prompt_chars = min_prompt_chars
        self.common_accounts = common_accounts
        self.rare_signature_share = rare_signature_share
        self.max_posting = max_posting
        self.timing_prior = timing_prior
        self.min_topic_prompts = min_topic_prompts
        self.topic_k = topic_k
        self.calibration_batch_ms = calibration_batch_ms
        self.max_calibration_pairs = max_calibration_pairs
        self._reset_stream()

    def get_params(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in inspect.signature(type(self)).parameters}

    # -- streaming state ----------------------------------------------------------------------
    def _reset_stream(self) -> None:
        self.prompt_index = RecentPromptIndex(window_ms=self.window_ms)
        self._profiles: dict[str, AccountProfile] = {}
        self._context_accounts: dict[str, set[str]] = defaultdict(set)
        self._hour_accounts: dict[int, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
        self._shared: dict[Pair, set[str]] = defaultdict(set)  # near-duplicate prompt key pairs
        self._examples: dict[Pair, list[str]] = defaultdict(list)
        self._edges: dict[Pair, dict[str, Any]] = {}
        self._cluster_of: dict[str, str] = {}
        self._cluster_born: dict[str, int] = {}
        self.now_ms = 0

    # -- calibration --------------------------------------------------------------------------
    def fit(
        self, benign_features: Sequence[EventFeatures], reference: BenignReference | None = None
    ) -> Self:
        """Calibrate on benign traffic only: what benign accounts commonly share (ignored as
        evidence), how rare each piece of evidence is between benign pairs, and the edge
        threshold at `false_link_rate`."""
        features = sorted(benign_features, key=lambda f: f.timestamp_ms)
        self._fit_topics(features, reference)
        samples = self._cross_fitted_samples(features)
        self._fit_common(features)
        self.tails_ = {
            piece: Tail.fit([v[piece] for v in samples.values() if v[piece] is not None])
            for piece in PIECES
        }
        strengths = sorted(self._strength(v)[0] for v in samples.values())
        self.benign_pairs_ = len(strengths)
        self.threshold_ = self._threshold(strengths)
        self._reset_stream()
        return self

    def _cross_fitted_samples(
        self, features: Sequence[EventFeatures]
    ) -> dict[Pair, dict[str, float | None]]:
        """Benign pair evidence measured the way the stream will see it: what counts as common
        is learnt on one half of the accounts and applied to pairs of the other half, so the
        chance overlaps of unknown honest accounts show up in the reference distribution."""
        halves = [
            {f.account_id for f in features if _half(f.account_id) == half} for half in (0, 1)
        ]
        samples: dict[Pair, dict[str, float | None]] = {}
        for learn, measure in (halves, halves[::-1]):
            self._fit_common([f for f in features if f.account_id in learn])
            samples.update(
                self._benign_pair_samples([f for f in features if f.account_id in measure])
            )
        return samples

    def _fit_common(self, features: Sequence[EventFeatures]) -> None:
        """Prompts, near-duplicate prompts, client contexts and parameter signatures that
        several benign accounts share: honest overlap, not evidence."""
        key_accounts: dict[str, set[str]] = defaultdict(set)
        context_accounts: dict[str, set[str]] = defaultdict(set)
        signature_accounts: dict[str, set[str]] = defaultdict(set)
        for f in features:
            key_accounts[f.prompt_key].add(f.account_id)
            if f.ip_prefix:
                context_accounts[f"{f.ip_prefix} {f.user_agent}"].add(f.account_id)
            signature_accounts[param_signature(f)].add(f.account_id)
        common = self.common_accounts
        self.common_keys_ = {k for k, a in key_accounts.items() if len(a) >= common}
        self.common_contexts_ = {c for c, a in context_accounts.items() if len(a) >= common}
        self.common_simhashes_ = SimhashSet(self._common_simhashes(features))
        accounts = len({f.account_id for f in features})
        share = {s: (len(a) + 1) / (accounts + 1) for s, a in signature_accounts.items()}
        self.param_rarity_ = {
            s: -math.log10(p) if p <= self.rare_signature_share else 0.0 for s, p in share.items()
        }
        self.param_rarity_[""] = math.log10(accounts + 1)  # a signature no benign account used

    def _common_simhashes(self, features: Sequence[EventFeatures]) -> list[int]:
        """SimHashes whose near-duplicates reach `common_accounts` benign accounts."""
        index = RecentPromptIndex(window_ms=2**62)
        index.add(features)
        needed = max(1, self.common_accounts - 1)  # other accounts besides the sender
        hits = index.simhash_neighbours(features, k=needed * 4, max_hamming=self.max_hamming)
        return sorted(
            {
                f.simhash
                for f, found in zip(features, hits, strict=True)
                if len({n.account_id for n in found}) >= needed
            }
        )

    def _fit_topics(
        self, features: Sequence[EventFeatures], reference: BenignReference | None
    ) -> None:
        embedded = [f.embedding for f in features if f.embedding is not None]
        if reference is None and len(embedded) >= 4 * self.topic_k:
            reference = BenignReference(k=self.topic_k).fit(np.stack(embedded))
        self.reference_ = reference

    def _benign_pair_samples(
        self, features: Sequence[EventFeatures]
    ) -> dict[Pair, dict[str, float | None]]:
        """Stream benign traffic through this (scratch) state and measure account pairs once per
        window, keeping the largest value each piece reached (a conservative reference)."""
        self._reset_stream()
        samples: dict[Pair, dict[str, float | None]] = {}
        checkpoint = features[0].timestamp_ms + self.window_ms if features else 0
        for batch in time_batches(features, self.calibration_batch_ms):
            if batch[0].timestamp_ms >= checkpoint:
                _merge_max(samples, self._measure_pairs())
                checkpoint += self.window_ms
            self._ingest(batch)
        _merge_max(samples, self._measure_pairs())
        return samples

    def _measure_pairs(self) -> dict[Pair, dict[str, float | None]]:
        """Pieces for pairs of accounts active in the window: all of them, or a seeded uniform
        sample of `max_calibration_pairs` when there are more."""
        active = sorted(
            a for a, p in self._profiles.items() if p.last_seen_ms >= self.now_ms - self.window_ms
        )
        if len(active) * (len(active) - 1) // 2 <= self.max_calibration_pairs:
            pairs = set(itertools.combinations(active, 2))
        else:
            rows = np.random.default_rng(0).integers(
                0, len(active), (self.max_calibration_pairs, 2)
            )
            pairs = {_pair(active[i], active[j]) for i, j in rows.tolist() if i != j}
        return {pair: self._pieces(*pair) for pair in pairs}

    def _threshold(self, strengths: Sequence[float]) -> float:
        """The (1 − false_link_rate) quantile of benign pair strength; when there are too few
        benign pairs to see that quantile, the strongest benign pair plus one decade of surprise
        per missing decade of data."""
        if not strengths:
            return math.log10(1 / self.false_link_rate)
        position = (1 - self.false_link_rate) * len(strengths)
        if position < len(strengths) - 1:
            return float(strengths[int(position)])
        missing = math.log10(1 / (self.false_link_rate * len(strengths)))
        return float(strengths[-1]) + max(0.0, missing)

    # -- streaming ----------------------------------------------------------------------------
    def observe(self, features: Sequence[EventFeatures]) -> set[str]:
        """Consume a batch from any accounts; returns accounts whose cluster may have changed."""
        if not hasattr(self, "threshold_"):
            raise RuntimeError("CampaignLinker needs fit() or load_calibration() first")
        if not features:
            return set()
        touched = self._ingest(sorted(features, key=lambda f: f.timestamp_ms))
        changed = self._update_edges(self._evaluate(touched))
        return self._recluster() if changed else set()

    def _ingest(self, features: Sequence[EventFeatures]) -> dict[str, set[str]]:
        """Update profiles, postings and the prompt index; returns each account of the batch
        with the partners worth comparing it with."""
        hour_keys: dict[str, set[tuple[str, int]]] = defaultdict(set)
        for f, topic in zip(features, self._topics_of(features), strict=True):
            profile = self._profiles.setdefault(
                f.account_id, AccountProfile(f.timestamp_ms, f.timestamp_ms)
            )
            profile.observe(f, topic)
            if f.ip_prefix:
                self._context_accounts[f"{f.ip_prefix} {f.user_agent}"].add(f.account_id)
            hour = f.timestamp_ms // HOUR_MS
            self._hour_accounts[hour][f.user_agent].add(f.account_id)
            hour_keys[f.account_id].add((f.user_agent, hour))
        self.now_ms = max(self.now_ms, features[-1].timestamp_ms)
        self.prompt_index.add(features)
        partners = self._link_prompts(features)
        self._prune(hour_keys)
        for account, keys in hour_keys.items():
            partners[account] |= self._posting_partners(account, keys)
        return partners

    def _topics_of(self, features: Sequence[EventFeatures]) -> list[int | None]:
        topics: list[int | None] = [None] * len(features)
        rows = [i for i, f in enumerate(features) if f.embedding is not None]
        if self.reference_ is not None and rows:
            ids, _ = self.reference_.assign(np.stack([features[i].embedding for i in rows]))
            for row, topic in zip(rows, ids.tolist(), strict=True):
                topics[row] = topic
        return topics

    def _evidence_prompts(self, features: Sequence[EventFeatures]) -> list[EventFeatures]:
        """Prompts that can link accounts: long enough to be specific, and neither a prompt nor
        a near-duplicate of one that several benign accounts send."""
        chosen = [
            f
            for f in features
            if len(f.prompt.strip()) >= self.min_prompt_chars
            and f.prompt_key not in self.common_keys_
        ]
        common = self.common_simhashes_.contains([f.simhash for f in chosen], self.max_hamming)
        return [f for f, is_common in zip(chosen, common.tolist(), strict=True) if not is_common]

    def _link_prompts(self, features: Sequence[EventFeatures]) -> dict[str, set[str]]:
        """Record near-duplicate prompts shared with other accounts (benign-common ones
        excluded); returns, per account of the batch, the accounts it shares them with."""
        partners: dict[str, set[str]] = defaultdict(set)
        queries = self._evidence_prompts(features)
        found = self.prompt_index.neighbours(
            queries, k=self.neighbour_k, max_hamming=self.max_hamming, min_cosine=self.min_cosine
        )
        for f, hits in zip(queries, found, strict=True):
            for hit in hits:
                if hit.prompt_key in self.common_keys_ or hit.account_id not in self._profiles:
                    continue
                pair = _pair(f.account_id, hit.account_id)
                if len(self._shared[pair]) < MAX_SHARED_PER_PAIR:
                    self._shared[pair].add("|".join(sorted((f.prompt_key, hit.prompt_key))))
                examples = self._examples[pair]
                if len(examples) < 3 and f.prompt[:EXAMPLE_CHARS] not in examples:
                    examples.append(f.prompt[:EXAMPLE_CHARS])
                partners[f.account_id].add(hit.account_id)
        return partners

    def _prune(self, touched: Iterable[str]) -> None:
        """Forget days and hours that left the window (touched accounts and postings only)."""
        cutoff = self.now_ms - self.window_ms
        for account in touched:
            for context in self._profiles[account].prune(cutoff):
                self._context_accounts[context].discard(account)
        for hour in [h for h in self._hour_accounts if h < cutoff // HOUR_MS]:
            del self._hour_accounts[hour]

    def _posting_partners(self, account: str, hour_keys: Iterable[tuple[str, int]]) -> set[str]:
        """Accounts on the same client context, or on the same user agent in an hour the batch
        touched. Union-find needs connectivity, not every pair, so a crowded posting gives only
        its first `max_posting` members."""
        postings = [self._context_accounts[c] for c in self._profiles[account].contexts]
        postings += [self._hour_accounts.get(h, {}).get(agent, set()) for agent, h in hour_keys]
        partners: set[str] = set()
        for posting in postings:
            crowded = len(posting) > self.max_posting
            partners.update(heapq.nsmallest(self.max_posting, posting) if crowded else posting)
        partners.discard(account)
        return partners

    def _evaluate(self, partners: Mapping[str, set[str]]) -> dict[Pair, dict[str, float | None]]:
        """Pieces for each touched account with its partners and its current links."""
        linked: dict[str, set[str]] = defaultdict(set)
        for a, b in self._edges:
            linked[a].add(b)
            linked[b].add(a)
        pairs = {
            _pair(account, other)
            for account, others in partners.items()
            for other in others | linked[account]
        }
        return {pair: self._pieces(*pair) for pair in pairs}

    def _pieces(self, a: str, b: str) -> dict[str, float | None]:
        pa, pb = self._profiles[a], self._profiles[b]
        return {
            "infra": infra_overlap(pa, pb, self.common_contexts_),
            "timing": timing_overlap(pa, pb, len(self._hour_accounts), self.timing_prior),
            "prompts": prompt_overlap(len(self._shared.get(_pair(a, b), ())), pa, pb),
            "params": params_overlap(pa, pb, self.param_rarity_),
            "topics": topic_overlap(pa, pb, self.min_topic_prompts),
        }

    def _strength(self, values: Mapping[str, float | None]) -> tuple[float, dict[str, float]]:
        """Total surprise (−log10 of each piece's benign tail probability) and the pieces."""
        surprise = {
            piece: -math.log10(self.tails_[piece].p_value(value))
            for piece, value in values.items()
            if value is not None and self.tails_[piece].pairs
        }
        return sum(surprise.values()), surprise

    def _rare_surprise(self, piece: str) -> float:
        """Surprise that makes a piece count as rare: `piece_alpha`, or beyond every benign
        pair when the calibration had too few pairs to resolve `piece_alpha`."""
        return min(-math.log10(self.piece_alpha), math.log10(self.tails_[piece].pairs + 1))

    def _update_edges(self, evaluated: Mapping[Pair, dict[str, float | None]]) -> bool:
        changed = False
        for pair, values in evaluated.items():
            strength, surprise = self._strength(values)
            pieces = sum(1 for piece, s in surprise.items() if s >= self._rare_surprise(piece))
            if strength >= self.threshold_ and pieces >= self.min_pieces:
                changed |= pair not in self._edges
                self._edges[pair] = {
                    "strength": round(strength, 3),
                    "surprise": {p: round(s, 3) for p, s in surprise.items() if s > 0},
                    "values": {p: round(v, 4) for p, v in values.items() if v is not None},
                }
            elif pair in self._edges:
                del self._edges[pair]
                changed = True
        return changed

    # -- clusters -----------------------------------------------------------------------------
    def _components(self) -> list[list[str]]:
        union = _UnionFind()
        for a, b in self._edges:
            union.union(a, b)
        return union.groups()

    def _recluster(self) -> set[str]:
        """Recompute components; keep each cluster's id while it persists (the oldest id wins a
        merge), mint new ids from the earliest member. Returns accounts whose id changed."""
        before = dict(self._cluster_of)
        claimed: set[str] = set()
        after: dict[str, str] = {}
        for members in sorted(self._components(), key=lambda m: (-len(m), m[0])):
            held = {before[m] for m in members if m in before} - claimed
            if held:
                cluster_id = min(held, key=lambda c: (self._cluster_born[c], c))
            else:
                cluster_id = self._mint_id(members, claimed)
            claimed.add(cluster_id)
            after.update(dict.fromkeys(members, cluster_id))
        self._cluster_of = after
        return {a for a in before.keys() | after.keys() if before.get(a) != after.get(a)}

    def _mint_id(self, members: Sequence[str], claimed: set[str]) -> str:
        earliest = min(members, key=lambda m: (self._profiles[m].first_seen_ms, m))
        digest = hashlib.blake2b(earliest.encode(), digest_size=6).hexdigest()
        cluster_id, suffix = f"cluster-{digest}", 1
        while cluster_id in claimed:
            suffix += 1
            cluster_id = f"cluster-{digest}-{suffix}"
        self._cluster_born.setdefault(cluster_id, self._profiles[earliest].first_seen_ms)
        return cluster_id

    def cluster_of(self, account_id: str) -> str | None:
        return self._cluster_of.get(account_id)

    def clusters(self) -> list[Cluster]:
        """Current clusters (two or more linked accounts), largest first."""
        grouped: dict[str, list[str]] = defaultdict(list)
        for account, cluster_id in self._cluster_of.items():
            grouped[cluster_id].append(account)
        found = [self._cluster(cid, sorted(members)) for cid, members in grouped.items()]
        return sorted(found, key=lambda c: (-len(c.members), c.cluster_id))

    def _cluster(self, cluster_id: str, members: list[str]) -> Cluster:
        profiles = [self._profiles[m] for m in members]
        return Cluster(
            cluster_id,
            members,
            self._evidence(members),
            min(p.first_seen_ms for p in profiles),
            max(p.last_seen_ms for p in profiles),
        )

    def _evidence(self, members: list[str]) -> dict[str, Any]:
        """Why these accounts are one cluster: what they share and how strongly they link."""
        member_set = set(members)
        edges = {p: e for p, e in self._edges.items() if p[0] in member_set}
        profiles = [self._profiles[m] for m in members]
        prefixes = [prefix for p in profiles for prefix in {c.split(" ")[0] for c in p.contexts}]
        hours = Counter(h for p in profiles for h in p.hours)
        examples = [x for pair in edges for x in self._examples.get(pair, [])]
        strengths = [e["strength"] for e in edges.values()]
        return {
            "accounts": len(members),
            "requests": sum(p.requests for p in profiles),
            "shared_prefixes": _shared_by_members(prefixes),
            "user_agents": _shared_by_members(a for p in profiles for a in p.agent_hours),
            "shared_prompts": sum(len(self._shared.get(p, ())) for p in edges),
            "example_prompts": list(dict.fromkeys(examples))[:5],
            "edges": len(edges),
            "edge_strength": {
                "min": min(strengths),
                "median": statistics.median(strengths),
                "max": max(strengths),
            },
            "evidence_share": _piece_share(edges.values()),
            "busiest_hours_utc": [
                h for h, _ in Counter(h % 24 for h in hours.elements()).most_common(3)
            ],
            "hours_with_half_active": sum(1 for n in hours.values() if 2 * n >= len(members)),
            "median_hour_overlap": statistics.median(
                e["values"].get("timing", 0.0) for e in edges.values()
            ),
        }

    def cluster_verdicts(
        self, scores: Mapping[str, tuple[float, str]] | None = None
    ) -> list[ClusterVerdict]:
        """Every cluster with its fused score; `scores` maps cluster_id → (score, label)."""
        verdicts = []
        for cluster in self.clusters():
            score, label = (scores or {}).get(cluster.cluster_id, (0.0, "unscored"))
            verdicts.append(
                ClusterVerdict(
                    cluster_id=cluster.cluster_id,
                    updated=datetime.fromtimestamp(cluster.last_seen_ms / 1000, UTC),
                    members=cluster.members,
                    score=float(score),
                    label=label,
                    evidence=cluster.evidence,
                )
            )
        return verdicts

    # -- persistence --------------------------------------------------------------------------
    def calibration(self) -> dict[str, Any]:
        """Fitted parameters (JSON), for `calibrate --out`."""
        return {
            "params": self.get_params(),
            "common_keys": sorted(self.common_keys_),
            "common_contexts": sorted(self.common_contexts_),
            "common_simhashes": [str(s) for s in self.common_simhashes_.simhashes],
            "param_rarity": self.param_rarity_,
            "tails": {piece: asdict(tail) for piece, tail in self.tails_.items()},
            "threshold": self.threshold_,
            "benign_pairs": self.benign_pairs_,
            "reference": self.reference_.to_dict() if self.reference_ is not None else None,
        }

    def load_calibration(self, data: Mapping[str, Any]) -> Self:
        for name, value in data["params"].items():
            setattr(self, name, value)
        self.common_keys_ = set(data["common_keys"])
        self.common_contexts_ = set(data["common_contexts"])
        self.common_simhashes_ = SimhashSet(int(s) for s in data["common_simhashes"])
        self.param_rarity_ = dict(data["param_rarity"])
        self.tails_ = {piece: Tail(**tail) for piece, tail in data["tails"].items()}
        self.threshold_ = data["threshold"]
        self.benign_pairs_ = data["benign_pairs"]
        reference = data["reference"]
        self.reference_ = BenignReference.from_dict(reference) if reference else None
        return self

    def state(self) -> dict[str, Any]:
        """Calibration plus everything streamed so far (JSON; the prompt index as base64)."""
        return {
            "calibration": self.calibration(),
            "now_ms": self.now_ms,
            "profiles": {a: p.to_json() for a, p in self._profiles.items()},
            "shared": [[*pair, sorted(keys)] for pair, keys in self._shared.items() if keys],
            "examples": [[*pair, texts] for pair, texts in self._examples.items() if texts],
            "edges": [[*pair, edge] for pair, edge in self._edges.items()],
            "cluster_of": self._cluster_of,
            "cluster_born": self._cluster_born,
            "index": base64.b64encode(self.prompt_index.snapshot()).decode("ascii"),
        }

    def load(self, state: Mapping[str, Any]) -> Self:
        """Resume from `state()`: postings are rebuilt from the profiles."""
        self.load_calibration(state["calibration"])
        self._reset_stream()
        self.now_ms = state["now_ms"]
        for account, data in state["profiles"].items():
            profile = self._profiles[account] = AccountProfile.from_json(data)
            for context in profile.contexts:
                self._context_accounts[context].add(account)
            for agent, hours in profile.agent_hours.items():
                for hour in hours:
                    self._hour_accounts[hour][agent].add(account)
        self._shared.update({(a, b): set(keys) for a, b, keys in state["shared"]})
        self._examples.update({(a, b): list(texts) for a, b, texts in state["examples"]})
        self._edges = {(a, b): edge for a, b, edge in state["edges"]}
        self._cluster_of = dict(state["cluster_of"])
        self._cluster_born = dict(state["cluster_born"])
        self.prompt_index.restore(base64.b64decode(state["index"]))
        return self


def _merge_max(
    into: dict[Pair, dict[str, float | None]], measured: Mapping[Pair, dict[str, float | None]]
) -> None:
    for pair, values in measured.items():
        seen = into.setdefault(pair, dict.fromkeys(PIECES))
        for piece, value in values.items():
            if value is not None:
                seen[piece] = max(value, seen[piece] or 0.0)


def _half(account_id: str) -> int:
    return hashlib.blake2b(account_id.encode(), digest_size=1).digest()[0] & 1


def time_batches(features: Sequence[EventFeatures], batch_ms: int) -> Iterable[list[EventFeatures]]:
    """Time-ordered features cut into consecutive windows, as a stream would deliver them."""
    batch: list[EventFeatures] = []
    for f in features:
        if batch and f.timestamp_ms // batch_ms != batch[0].timestamp_ms // batch_ms:
            yield batch
            batch = []
        batch.append(f)
    if batch:
        yield batch


def _shared_by_members(values: Iterable[str], top: int = 5) -> dict[str, int]:
    """The most common values used by two or more members, with how many use each."""
    return {value: n for value, n in Counter(values).most_common(top) if n > 1}


def _piece_share(edges: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """Each piece's share of the total surprise over a cluster's edges."""
    totals: Counter[str] = Counter()
    for edge in edges:
        totals.update(edge["surprise"])
    whole = sum(totals.values()) or 1.0
    return {piece: round(value / whole, 3) for piece, value in totals.most_common()}
