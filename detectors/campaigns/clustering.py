"""Accounts joined by edges form a cluster (union-find); a cluster keeps its id while it persists,
so alerts, reports and the `clusters` table follow one campaign as it grows.

>>> ids = ClusterIds()
>>> born = {"a": 1, "b": 2, "c": 3, "d": 4}
>>> sorted(ids.relabel([("a", "b")], born.__getitem__))
['a', 'b']
>>> first = ids.of["a"]
>>> sorted(ids.relabel([("a", "b"), ("b", "c")], born.__getitem__)), ids.of["c"] == first
(['c'], True)
>>> components([("a", "b"), ("c", "d"), ("b", "c")])
[['a', 'b', 'c', 'd']]
>>> strong = [("a1", "a2"), ("a2", "a3"), ("b1", "b2"), ("b2", "b3"), ("x", "y")]
>>> weak = [("a1", "b1"), ("a2", "b2"), ("a3", "b3"), ("x", "a1"), ("y", "a2")]
>>> sorted(merged_links(strong, weak, min_pairs=3))  # x-y reach two of the a's only
[('a1', 'b1'), ('a2', 'b2'), ('a3', 'b3')]
>>> coordination_surprise({("a", "b"): 9.0}, chance=5.0)
4.0
>>> chain = {("a", "b"): 9.0, ("b", "c"): 9.5, ("c", "d"): 8.0}  # b-c, then a and d are left
>>> coordination_surprise(chain, chance=5.0)
4.5
>>> round(coordination_surprise({("a", "b"): 9.0, ("c", "d"): 8.0}, chance=5.0), 3)
7.301
>>> coordination_surprise({("a", "b"): 4.0}, chance=5.0)  # no stronger than chance
0.0
"""

from __future__ import annotations

import hashlib
import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence, Set
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from core.verdicts import ClusterVerdict
from detectors.campaigns.evidence import Pair, SharedPrompts
from detectors.campaigns.profiles import AccountProfile

MAX_LINKS = 200  # member pairs kept in a campaign's evidence (its graph's edges)


@dataclass
class Cluster:
    """Accounts linked into one campaign candidate, with the evidence that linked them."""

    cluster_id: str
    members: list[str]
    evidence: dict[str, Any]
    first_seen_ms: int
    last_seen_ms: int


class UnionFind:
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


def components(edges: Iterable[Pair]) -> list[list[str]]:
    """Connected accounts, each group sorted."""
    union = UnionFind()
    for a, b in edges:
        union.union(a, b)
    return union.groups()


def merged_links(strong: Iterable[Pair], weak: Iterable[Pair], min_pairs: int) -> list[Pair]:
    """Weak links that join two clusters into one actor: between two components of the strong
    links, weak links that reach `min_pairs` distinct accounts on each side (so at least that
    many disjoint member pairs: improbable between unrelated groups, and never one account
    alone). Merges are repeated until none is left."""
    union = UnionFind()
    for a, b in strong:
        union.union(a, b)
    weak = list(weak)
    used: list[Pair] = []
    while True:
        between: dict[tuple[str, str], list[Pair]] = defaultdict(list)
        for a, b in weak:
            root_a, root_b = union.find(a), union.find(b)
            if root_a != root_b:
                between[(root_a, root_b) if root_a < root_b else (root_b, root_a)].append((a, b))
        joined = False
        for (root_a, root_b), links in sorted(between.items()):
            if union.find(root_a) == union.find(root_b):
                continue
            ends = {x for link in links for x in link}
            side_a = sum(1 for x in ends if union.find(x) == union.find(root_a))
            if min(side_a, len(ends) - side_a) >= min_pairs:
                union.union(root_a, root_b)
                used.extend(links)
                joined = True
        if not joined:
            return used


def coordination_surprise(strengths: Mapping[Pair, float], chance: float) -> float:
    """Decades of evidence that linked accounts are not independent honest accounts, from their
    links' strengths (each a surprise among benign pairs, in decades). Links between disjoint
    pairs are independent under that null, so a greedy matching of the strongest links adds up:
    each counts what it exceeds `chance` (log10 of the pairs searched), and log10(m!) is added
    back because m links can be found in any order."""
    used: set[str] = set()
    excess: list[float] = []
    for (a, b), strength in sorted(strengths.items(), key=lambda item: (-item[1], item[0])):
        if a not in used and b not in used and strength > chance:
            used |= {a, b}
            excess.append(strength - chance)
    return sum(excess) + math.lgamma(len(excess) + 1) / math.log(10) if excess else 0.0


class ClusterIds:
    """Which cluster each linked account is in, and when each cluster id was born."""

    def __init__(
        self, of: Mapping[str, str] | None = None, born: Mapping[str, int] | None = None
    ) -> None:
        self.of: dict[str, str] = dict(of or {})
        self.born: dict[str, int] = dict(born or {})

    def relabel(self, edges: Iterable[Pair], first_seen: Callable[[str], int]) -> set[str]:
        """Recompute components; keep each cluster's id while it persists (the oldest id wins a
        merge), mint new ids from the earliest member. Returns accounts whose id changed.

        An id is never given to a second cluster: alerts, reports and the `clusters` table name
        a campaign by it, and a dissolved campaign's last row must not be replaced by another
        group's. A new id therefore avoids every id issued before (`born` keeps those of dissolved
        clusters too) and is minted from the earliest member *and* when it was first seen, so an
        account that returns after the linker forgot it (`forget`) gets a new one."""
        before = dict(self.of)
        claimed: set[str] = set()
        after: dict[str, str] = {}
        for members in sorted(components(edges), key=lambda m: (-len(m), m[0])):
            held = {before[m] for m in members if m in before} - claimed
            if held:
                cluster_id = min(held, key=lambda c: (self.born[c], c))
            else:
                cluster_id = self._mint(members, first_seen)
            claimed.add(cluster_id)
            after.update(dict.fromkeys(members, cluster_id))
        self.of = after
        return {a for a in before.keys() | after.keys() if before.get(a) != after.get(a)}

    def _mint(self, members: Sequence[str], first_seen: Callable[[str], int]) -> str:
        """A new id, unlike every id in `born` (those held now, claimed in this relabel or not
        yet, and those of dissolved clusters)."""
        earliest = min(members, key=lambda m: (first_seen(m), m))
        since = first_seen(earliest)
        digest = hashlib.blake2b(f"{earliest}@{since}".encode(), digest_size=6).hexdigest()
        cluster_id, suffix = f"cluster-{digest}", 1
        while cluster_id in self.born:
            suffix += 1
            cluster_id = f"cluster-{digest}-{suffix}"
        self.born[cluster_id] = since
        return cluster_id

    def forget(self, accounts: Set[str]) -> set[str]:
        """Drop the accounts; returns the cluster ids left without a member (forgotten too)."""
        before = set(self.of.values())
        self.of = {a: c for a, c in self.of.items() if a not in accounts}
        gone = before - set(self.of.values())
        for cluster_id in gone:
            self.born.pop(cluster_id, None)
        return gone

    def groups(self) -> dict[str, list[str]]:
        """Each cluster id with its members, sorted."""
        grouped: dict[str, list[str]] = defaultdict(list)
        for account, cluster_id in self.of.items():
            grouped[cluster_id].append(account)
        return {cluster_id: sorted(members) for cluster_id, members in grouped.items()}


def describe(
    cluster_id: str,
    members: list[str],
    edges: Mapping[Pair, Mapping[str, Any]],
    profiles: Mapping[str, AccountProfile],
    shared: SharedPrompts,
) -> Cluster:
    """The cluster with why these accounts are one: what they share, how strongly they link."""
    member_set = set(members)
    inside = {p: e for p, e in edges.items() if p[0] in member_set}
    chosen = [profiles[m] for m in members]
    prefixes = [prefix for p in chosen for prefix in {c.split(" ")[0] for c in p.contexts}]
    hours = Counter(h for p in chosen for h in p.hours)
    examples = [x for both in inside for x in shared.examples_of(both)]
    strengths = [e["strength"] for e in inside.values()]
    evidence = {
        "accounts": len(members),
        "requests": sum(p.requests for p in chosen),
        "shared_prefixes": _shared_by_members(prefixes),
        "user_agents": _shared_by_members(a for p in chosen for a in p.agent_hours),
        "shared_prompts": sum(shared.count(both) for both in inside),
        "example_prompts": list(dict.fromkeys(examples))[:5],
        "edges": len(inside),
        "edge_strength": {
            "min": min(strengths),
            "median": statistics.median(strengths),
            "max": max(strengths),
        },
        "evidence_share": _piece_share(inside.values()),
        "busiest_hours_utc": [
            h for h, _ in Counter(h % 24 for h in hours.elements()).most_common(3)
        ],
        "hours_with_half_active": sum(1 for n in hours.values() if 2 * n >= len(members)),
        "median_hour_overlap": statistics.median(
            e["values"].get("timing", 0.0) for e in inside.values()
        ),
        "links": _links(inside, shared),
    }
    return Cluster(
        cluster_id,
        members,
        evidence,
        min(p.first_seen_ms for p in chosen),
        max(p.last_seen_ms for p in chosen),
    )


def scored(
    clusters: Iterable[Cluster], scores: Mapping[str, tuple[float, str]] | None = None
) -> list[ClusterVerdict]:
    """Every cluster with its fused score; `scores` maps cluster_id → (score, label)."""
    verdicts = []
    for cluster in clusters:
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


def _shared_by_members(values: Iterable[str], top: int = 5) -> dict[str, int]:
    """The most common values used by two or more members, with how many use each."""
    return {value: n for value, n in Counter(values).most_common(top) if n > 1}


def _links(
    inside: Mapping[Pair, Mapping[str, Any]], shared: SharedPrompts, top: int = MAX_LINKS
) -> list[dict[str, Any]]:
    """The strongest member pairs and the pieces that tie each (strongest first): the edges an
    analyst sees in the campaign graph, capped so a large campaign's row stays small."""
    strongest = sorted(inside.items(), key=lambda item: (-item[1]["strength"], item[0]))[:top]
    return [
        {
            "a": a,
            "b": b,
            "strength": e["strength"],
            "pieces": sorted(e["surprise"], key=lambda piece: -e["surprise"][piece]),
            "shared_prompts": shared.count((a, b)),
        }
        for (a, b), e in strongest
    ]


def _piece_share(edges: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """Each piece's share of the total surprise over a cluster's edges."""
    totals: Counter[str] = Counter()
    for edge in edges:
        totals.update(edge["surprise"])
    whole = sum(totals.values()) or 1.0
    return {piece: round(value / whole, 3) for piece, value in totals.most_common()}
