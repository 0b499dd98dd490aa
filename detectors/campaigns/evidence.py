"""Evidence that two accounts are one harvest, and how surprising it is among honest accounts.

Each piece is one number, larger = more shared: client infrastructure, active hours (the same
hours of the same days), schedule (the same unusual hours of the day or minute of the hour, on
any days), near-duplicate prompts, templates (benign-rare skeletons filled differently),
parameter profile, topics. Weak alone, and some are common among honest users, so each is scored
by its benign tail probability as a surprise in decades (−log10 p). Pieces that measure one
thing twice form a family (hours and schedule are time; near-duplicates and templates are text)
and a family counts once, with its strongest piece: an edge needs both a total above the
benign-calibrated threshold and `min_pieces` rare families.

>>> tail = Tail.fit([0.0] * 990 + [0.5] * 9 + [0.9])
>>> tail.p_value(0.0), round(tail.p_value(0.6), 4), round(tail.p_value(2.0), 4)  # 1 pair ≥ 0.6
(1.0, 0.002, 0.001)
>>> round(strength({"infra": tail}, {"infra": 0.9})[0], 2)
2.7
>>> both = {"timing": tail, "rhythm": tail}
>>> round(strength(both, {"timing": 0.9, "rhythm": 0.9})[0], 2)  # one family: counted once
2.7
"""

from __future__ import annotations

import bisect
import math
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from detectors.campaigns.profiles import AccountProfile
from detectors.features import EventFeatures

PIECES = ("infra", "timing", "prompts", "params", "topics", "templates", "rhythm")
FAMILY = {"rhythm": "timing", "templates": "prompts"}  # piece -> the family it belongs to
# pieces that say what two accounts want, not who runs them: two extractors that draw on the
# same public prompt sets share near-duplicates and topics with each other (and with a campaign),
# and harvesting tools as a class share the settings that get the most out of each answer
# (temperature 0, the largest max_tokens), so a rare parameter signature marks an extractor, not
# this extractor. Infrastructure, hours and schedule, and templates (one skeleton, different
# fillers) are the operator's own.
SHARED_BY_TOOLS = frozenset({"prompts", "topics", "params"})
EXAMPLE_CHARS = 160
MAX_SHARED_PER_PAIR = 64
Pair = tuple[str, str]
PieceValues = dict[str, float | None]


def pair(a: str, b: str) -> Pair:
    """Two accounts in a canonical order."""
    return (a, b) if a < b else (b, a)


# --- the pieces ----------------------------------------------------------------------------
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


def template_overlap(
    a: AccountProfile, b: AccountProfile, prior: float, min_share: float = 0.0
) -> float:
    """Share of each account's requests sent through skeletons both used as templates (each
    filled it at least twice, and not with the same prompts: one shared line of a replayed
    conversation is not a template), the smaller share; skeletons of one kind (whole prompt,
    first or last line) at a time, shrunk by `prior` requests so that one shared template
    proves little for a quiet account; below `min_share` (a coincidence of two busy accounts)
    it is 0."""
    used_a: Counter[str] = Counter()
    used_b: Counter[str] = Counter()
    for key in a.templates.keys() & b.templates.keys():
        mine, theirs = a.templates[key], b.templates[key]
        if (
            key.startswith("p|")
            or min(len(mine.fillings), len(theirs.fillings)) < 2
            or mine.fillings == theirs.fillings
        ):
            continue
        used_a[key[0]] += mine.count
        used_b[key[0]] += theirs.count
    if not used_a:
        return 0.0
    share_a = min(1.0, max(used_a.values()) / (a.requests + prior))
    share_b = min(1.0, max(used_b.values()) / (b.requests + prior))
    share = min(share_a, share_b)
    return share if share >= min_share else 0.0


def topic_overlap(a: AccountProfile, b: AccountProfile, min_prompts: int) -> float | None:
    """Histogram intersection of benign topic centroids; None when either has too few."""
    total_a, total_b = sum(a.topics.values()), sum(b.topics.values())
    if min(total_a, total_b) < min_prompts:
        return None
    return sum(
        min(a.topics[t] / total_a, b.topics[t] / total_b) for t in a.topics.keys() & b.topics.keys()
    )


class SharedPrompts:
    """Near-duplicate prompts each pair of accounts sent (as prompt key pairs, capped), with a
    few example texts for analysts."""

    def __init__(self) -> None:
        self.keys: dict[Pair, set[str]] = defaultdict(set)
        self.examples: dict[Pair, list[str]] = defaultdict(list)

    def add(self, f: EventFeatures, account_id: str, prompt_key: str) -> None:
        """`f` is a near-duplicate of `prompt_key`, which `account_id` sent."""
        both = pair(f.account_id, account_id)
        if len(self.keys[both]) < MAX_SHARED_PER_PAIR:
            self.keys[both].add("|".join(sorted((f.prompt_key, prompt_key))))
        examples = self.examples[both]
        if len(examples) < 3 and f.prompt[:EXAMPLE_CHARS] not in examples:
            examples.append(f.prompt[:EXAMPLE_CHARS])

    def count(self, both: Pair) -> int:
        return len(self.keys.get(both, ()))

    def examples_of(self, both: Pair) -> list[str]:
        return self.examples.get(both, [])

    def to_json(self) -> dict[str, Any]:
        return {
            "shared": [[*both, sorted(keys)] for both, keys in self.keys.items() if keys],
            "examples": [[*both, texts] for both, texts in self.examples.items() if texts],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SharedPrompts:
        shared = cls()
        shared.keys.update({(a, b): set(keys) for a, b, keys in data["shared"]})
        shared.examples.update({(a, b): list(texts) for a, b, texts in data["examples"]})
        return shared


# --- how rare among honest account pairs --------------------------------------------------
@dataclass
class Tail:
    """Empirical P(value ≥ x) over benign account pairs, kept as a few dozen points (the first
    and last value of each halving of the tail count, plus the top values exactly) so
    calibration files stay small. `gapless`: the last value of each halving is kept too, so a
    value between two halvings is known to be above every benign value of the first (files
    written before it was kept are read conservatively)."""

    pairs: int
    values: list[float]  # ascending
    at_least: list[int]  # benign pairs with value ≥ values[i]
    gapless: bool = False

    @classmethod
    def fit(cls, samples: Sequence[float], exact_top: int = 64) -> Tail:
        ordered = np.sort(np.asarray(samples, dtype=np.float64))
        values = np.unique(ordered)
        at_least = len(ordered) - np.searchsorted(ordered, values, side="left")
        octave = np.floor(np.log2(np.maximum(at_least, 1)))
        keep = np.ones(len(values), dtype=bool)
        keep[1:] = octave[1:] != octave[:-1]
        keep[:-1] |= octave[:-1] != octave[1:]
        keep[-exact_top:] = True
        kept = at_least[keep].astype(int).tolist()
        return cls(len(ordered), values[keep].tolist(), kept, gapless=True)

    def p_value(self, value: float) -> float:
        """Conservative tail probability (add-one smoothed, so never 0)."""
        if not self.values or value <= self.values[0]:
            return 1.0
        if value > self.values[-1]:
            return 1.0 / (self.pairs + 1)
        index = bisect.bisect_right(self.values, value) - 1
        if (
            self.values[index] < value
            and self.gapless
            and _octave(self.at_least[index]) != (_octave(self.at_least[index + 1]))
        ):
            index += 1  # nothing benign between the last value of a halving and the next
        return (self.at_least[index] + 1) / (self.pairs + 1)


def _octave(count: int) -> int:
    return max(count, 1).bit_length()


def strength(
    tails: Mapping[str, Tail], values: Mapping[str, float | None]
) -> tuple[float, dict[str, float]]:
    """Total surprise (each family's strongest piece: −log10 of its benign tail probability)
    and the pieces. A piece the calibration has no tail for (an older file) adds nothing."""
    surprise = {
        piece: -math.log10(tails[piece].p_value(value))
        for piece, value in values.items()
        if value is not None and piece in tails and tails[piece].pairs
    }
    return sum(families(surprise).values()), surprise


def families(surprise: Mapping[str, float]) -> dict[str, float]:
    """Each family's strongest surprise."""
    strongest: dict[str, float] = {}
    for piece, value in surprise.items():
        family = FAMILY.get(piece, piece)
        strongest[family] = max(value, strongest.get(family, 0.0))
    return strongest


def rare_surprise(tail: Tail, piece_alpha: float) -> float:
    """Surprise that makes a piece count as rare: `piece_alpha`, or beyond every benign pair
    when the calibration had too few pairs to resolve `piece_alpha`."""
    return min(-math.log10(piece_alpha), math.log10(tail.pairs + 1))


def edge(
    values: Mapping[str, float | None],
    scored: tuple[float, dict[str, float]],
    tails: Mapping[str, Tail],
    threshold: float,
    piece_alpha: float,
    min_pieces: int,
) -> dict[str, Any] | None:
    """The link between two accounts with these piece values and their `strength` (`scored`,
    computed once: a pair is tried as an edge, then as a weak link), or None when the evidence
    is too weak in total or rests on fewer than `min_pieces` rare families (the link names its
    rare pieces: `acts_alike` reads them)."""
    total, surprise = scored
    if total < threshold:
        return None  # most pairs: no need to count their rare families
    rare = {piece for piece, s in surprise.items() if s >= rare_surprise(tails[piece], piece_alpha)}
    if len({FAMILY.get(piece, piece) for piece in rare}) >= min_pieces:
        return {
            "strength": round(total, 3),
            "surprise": {p: round(s, 3) for p, s in surprise.items() if s > 0},
            "values": {p: round(v, 4) for p, v in values.items() if v is not None},
            "rare": sorted(rare),
        }
    return None


def shows_operator(surprise: Mapping[str, float], tails: Mapping[str, Tail], alpha: float) -> bool:
    """Whether a link's evidence shows one operator: a piece that separate harvesting tools do
    not share (infrastructure, hours, schedule, templates) rare at the edges' own `alpha`, not
    only at the weak links' looser one. At the looser one any hour two accounts shared beyond
    chance counted: on `sharegpt-chat` a low-and-slow attackers' pair was merged into the
    40-account campaign on an hours kappa of 0.001-0.07, and before parameters were set apart,
    three other strategies' attackers on the temperature-0 settings they all used."""
    return any(
        value >= rare_surprise(tails[piece], alpha)
        for piece, value in surprise.items()
        if piece not in SHARED_BY_TOOLS and piece in tails
    )


def acts_alike(link: Mapping[str, Any]) -> bool:
    """Whether a weak link may merge two clusters: its `operator` mark (`shows_operator`, set
    when the link was made); a link saved before the mark, when it names a rare piece that
    separate tools do not share."""
    operator = link.get("operator")
    if operator is not None:
        return bool(operator)
    return not SHARED_BY_TOOLS.issuperset(link.get("rare", PIECES))
