"""An account's whole history in bounded memory, for evidence that outlives the signal window.

The per-account window holds the latest 256 requests. A low-and-slow attacker spreads its
harvest over a month, and a paraphrase blender dilutes it with cover traffic, so neither shows
in any 256-request window. `Lifetime` keeps, in constant space per account:

- a k-minimum-values sketch of the prompt hashes: how many *distinct* prompts the account ever
  sent (a harvest needs many; an honest developer re-sends the same few), within a few percent;
- the topics of every embedded prompt that has left the window (topic breadth over the whole
  history, the window's own prompts are added when the signal is computed);
- its active days.

Sketches of several accounts merge (`merged`), so a campaign is measured as one actor.

>>> life = Lifetime()
>>> life.add([f"{i:016x}" for i in range(10)] * 3, [0, 86_400_000], [])
>>> life.distinct_prompts(), life.active_days()
(10.0, 2)
>>> many = Lifetime()
>>> many.add([f"{i * 0x9E3779B97F4A7C15 % 2**64:016x}" for i in range(5000)], [], [])
>>> 0.85 < many.distinct_prompts() / 5000 < 1.15
True
>>> Lifetime.from_state(merged([life, many]).to_state()).distinct_prompts() > 4000
True
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from core.timeutil import DAY_MS

SKETCH_SIZE = 256  # k of the KMV sketch: relative error about 1/sqrt(k - 2), ~6 %
MAX_DAYS = 400  # active days remembered (beyond, the count stops growing: that is plenty)
HASH_SPACE = 2.0**64


@dataclass
class Lifetime:
    """Whole-history evidence of one account (or, merged, of a campaign)."""

    smallest: list[int] = field(default_factory=list)  # the k smallest prompt hashes, sorted
    topics: Counter[int] = field(default_factory=Counter)  # evicted embedded prompts' topics
    days: set[int] = field(default_factory=set)

    def add(
        self, prompt_keys: Iterable[str], timestamps_ms: Iterable[int], topics: Iterable[int]
    ) -> None:
        """Absorb requests: their prompt keys (16 hex characters of a uniform hash), their
        times, and the topics of those that leave the window embedded."""
        self.smallest = _k_smallest(self.smallest, (int(k, 16) for k in prompt_keys))
        self.topics.update(topics)
        for moment in timestamps_ms:
            if len(self.days) < MAX_DAYS:
                self.days.add(moment // DAY_MS)

    def distinct_prompts(self) -> float:
        """Distinct prompts ever sent: exact below k, the KMV estimate (k − 1) / U(k) above."""
        if len(self.smallest) < SKETCH_SIZE:
            return float(len(self.smallest))
        return (SKETCH_SIZE - 1) / ((self.smallest[-1] + 1) / HASH_SPACE)

    def active_days(self) -> int:
        return len(self.days)

    def to_state(self) -> dict[str, Any]:
        return {
            "k": [f"{h:016x}" for h in self.smallest],
            "t": {str(t): c for t, c in self.topics.items()},
            "d": sorted(self.days),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any] | None) -> Lifetime:
        state = state or {}
        return cls(
            smallest=sorted(int(k, 16) for k in state.get("k", [])),
            topics=Counter({int(t): int(c) for t, c in state.get("t", {}).items()}),
            days={int(d) for d in state.get("d", [])},
        )


def _k_smallest(current: list[int], new: Iterable[int]) -> list[int]:
    """The SKETCH_SIZE smallest distinct values of `current` and `new`, sorted."""
    return heapq.nsmallest(SKETCH_SIZE, set(current).union(new))


def merged(lifetimes: Iterable[Lifetime]) -> Lifetime:
    """One sketch for several accounts: the KMV sketch of the union of their prompts."""
    result = Lifetime()
    for life in lifetimes:
        result.smallest = _k_smallest(result.smallest, life.smallest)
        result.topics.update(life.topics)
        result.days |= set(list(life.days)[: MAX_DAYS - len(result.days)])
    return result
