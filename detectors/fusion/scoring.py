"""Fusion: signal surprises into one raw score, then a score in [0, 1] and a label.

The raw score is 2·√(content surprise · behaviour surprise), weighed by how many distinct prompts
the account sent (see `fused`); calibration puts the
extraction threshold at the benign accounts' (1 − target_fpr) quantile of their lifetime peak,
and `score = 1 − 2^(−raw / extraction_threshold)`: 0.5 is exactly the extraction threshold.

>>> thresholds = {"suspicious": 2.0, "extraction": 4.0}
>>> [score_and_label(raw, thresholds) for raw in (0.0, 2.0, 4.0)]
[(0.0, 'benign'), (0.2928932188134524, 'suspicious'), (0.5, 'extraction')]
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from core.verdicts import Label
from detectors.features import EventFeatures
from detectors.signals import SIGNALS

GROUPS = sorted({s.group for s in SIGNALS})
GROUP_MEMBERS = np.array([[s.group == g for s in SIGNALS] for g in GROUPS])  # (groups, signals)
GROUP_CONTENT = np.array([next(s.content for s in SIGNALS if s.group == g) for g in GROUPS])


CREDIBLE_PROMPTS = 32  # distinct prompts from which a score counts in full


def credibility(distinct_prompts: np.ndarray | float) -> np.ndarray:
    """How much of its fused surprise an account's score keeps: √(distinct prompts / 32), at
    most 1. Extraction is a harvest; an account with a handful of distinct prompts cannot have
    taken much, and its window statistics are the noisiest (honest accounts with 8 requests were
    the highest-scoring honest accounts on every traffic world). A campaign is scored pooled, so
    its members' small histories add up."""
    return np.sqrt(np.minimum(1.0, np.asarray(distinct_prompts, np.float64) / CREDIBLE_PROMPTS))


def distinct_prompts(values: dict[str, float], count: int) -> float:
    """The account's distinct prompts over its whole history (its window size when unknown)."""
    return values.get("lifetime_distinct_prompts", float(count))


ACTIVE_DAYS = "active_days"  # a window's value beside the signals: the account's active days
OUTPUT_BUDGET = "output_budget"  # beside the signals too: the window's median max_tokens asked
FULL_ANSWER_TOKENS = 128  # an answer budget from which a request yields a whole answer
HARVEST_DAYS = 2  # the harvest arm speaks once a history spans this many active days


def active_days(values: dict[str, float]) -> float:
    """The account's active days over its whole history (unknown: as if spread out)."""
    return values.get(ACTIVE_DAYS, float(HARVEST_DAYS))


def asked_budget(features: Iterable[EventFeatures]) -> float:
    """The median `max_tokens` the requests asked for (NaN when none says)."""
    known = [f.max_tokens for f in features if f.max_tokens is not None]
    return float(np.median(known)) if known else math.nan


def output_budget(values: dict[str, float]) -> float:
    """The window's median `max_tokens` asked (NaN when the log does not say)."""
    return values.get(OUTPUT_BUDGET, math.nan)


def output_weight(budget: np.ndarray | float) -> np.ndarray:
    """How much of its evidence an account's score keeps for the answers it asks for:
    √(max_tokens / 128), at most 1 (1 where the log has no `max_tokens`). Distillation harvests
    the teacher's text; a request capped at a few tokens yields a label, not an answer. Honest
    pipelines that run one task over many texts (moderation, classification, evaluation
    harnesses at `max_tokens` 2-60) were the highest-scoring honest accounts of the worlds
    whose hands wrote them, and set the thresholds above every attacker (`business-ops`: 0 of
    61 flagged); the harvesters asked for 192 to 4,096 tokens. Label extraction with
    log-probabilities at a few tokens loses weight too: it is a classifier's extraction, not an
    LLM's."""
    budget = np.asarray(budget, dtype=np.float64)
    share = np.clip(np.nan_to_num(budget / FULL_ANSWER_TOKENS, nan=1.0), 0.0, 1.0)
    return np.sqrt(share)


def fused(
    surprises: np.ndarray,
    forest: np.ndarray | float,
    distinct: np.ndarray | float,
    weight: np.ndarray | float,
) -> np.ndarray:
    """2·√(content · behaviour) · credibility(distinct prompts): an account must be unusual
    both in *what* it asks and in *how* it asks, and have asked enough for it to matter.
    Harvest parameters alone (a researcher at temperature 0 with logprobs) or unusual topics
    alone (a specialist) are not enough. The forest's surprise (an unusual combination, in
    practice of behaviour signals) counts as behaviour: it must not stand in for content.
    `weight`: the `output_weight` of the answers asked for."""
    by_group = np.where(GROUP_MEMBERS, surprises[..., None, :], 0.0).max(axis=-1)
    content = by_group[..., GROUP_CONTENT].sum(axis=-1)
    behaviour = by_group[..., ~GROUP_CONTENT].sum(axis=-1) + forest
    return 2 * np.sqrt(content * behaviour) * credibility(distinct) * weight


def score_and_label(raw: float, thresholds: dict[str, float]) -> tuple[float, Label]:
    """The raw score on the [0, 1) scale (0.5 at the extraction threshold) and its label."""
    threshold = thresholds["extraction"]
    score = 1.0 - 2.0 ** (-raw / threshold)
    label: Label = (
        "extraction"
        if raw >= threshold
        else "suspicious"
        if raw >= thresholds["suspicious"]
        else "benign"
    )
    return score, label


HARVEST_SIGNALS = ("lifetime_distinct_prompts", "lifetime_topic_breadth")
_HARVEST_COLUMNS = [[s.name for s in SIGNALS].index(name) for name in HARVEST_SIGNALS]


def harvest(
    surprises: np.ndarray, days: np.ndarray | float, weight: np.ndarray | float
) -> np.ndarray:
    """2·√(distinct-prompts surprise · topic-breadth surprise), both over the whole history: a
    harvest is many distinct prompts across many topics. It is the evidence an attacker cannot
    hide by copying honest parameters and timing, and the one the fused sum dilutes most: an
    honest heavy user's dozen noisy window signals add up to as much (sdk-developers, every
    prompt embedded: 20 of its 21 single attackers lie above every honest account on it). It
    needs the account's prompts embedded: in tiered mode, an account that never goes deep has
    only its sampled prompts' topics.

    A history of one active day (`days`) has no harvest evidence: a one-day burst is what the
    window signals judge, and it is an honest batch job's shape (an evaluation run, a weekend's
    test generation) as much as a harvest's; the arm is for evidence spread over time. Days are
    UTC days (`sketches.Lifetime`), so a burst across midnight UTC counts as two. `weight`: the
    `output_weight` of the answers asked for, as the fused score."""
    first, second = (surprises[..., column] for column in _HARVEST_COLUMNS)
    evidence = 2 * np.sqrt(first * second) * weight
    return np.where(np.asarray(days) >= HARVEST_DAYS, evidence, 0.0)
