"""Why a verdict: each surprising signal's share of the score, with what it means, how rare it
is among honest accounts, and example prompts on the top reason.

>>> import numpy as np
>>> from detectors.signals import SIGNALS
>>> surprises = np.zeros(len(SIGNALS))
>>> surprises[[s.name for s in SIGNALS].index("greedy_share")] = 3.0
>>> found = reasons({"greedy_share": 1.0}, surprises, forest=1.0, score=0.8, count=40, embedded=0)
>>> [(r.signal, r.contribution) for r in found]
[('greedy_share', 0.6), ('isolation_forest', 0.2)]
>>> found[0].evidence["benign_tail_probability"]
0.001
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from core.verdicts import Reason
from detectors.campaigns import Cluster
from detectors.features import EventFeatures
from detectors.fusion.scoring import FULL_ANSWER_TOKENS, output_budget, output_weight
from detectors.signals import SIGNALS

ISOLATION = "isolation_forest"
COORDINATION = "coordination"
EXAMPLES = 3
MIN_SURPRISE = 0.5  # a signal below this (p > 0.32) is not a reason


def _floor4(value: float) -> float:
    """Rounded down to 4 decimals, so contributions never add up to more than the score."""
    return math.floor(value * 1e4) / 1e4


def reasons(
    values: dict[str, float],
    surprises: np.ndarray,
    forest: float,
    score: float,
    count: int,
    embedded: int,
    coordination: float = 0.0,
) -> list[Reason]:
    """The signals (and the forest, and a cluster's coordination) that say something, largest
    contribution first; each contributes its share of the total surprise times the score."""
    share = float(surprises.sum() + forest + coordination) or 1.0
    found = []
    for signal, surprise in zip(SIGNALS, surprises, strict=True):
        if signal.name not in values or surprise < MIN_SURPRISE:
            continue
        p = 10 ** (-float(surprise))
        found.append(
            Reason(
                signal=signal.name,
                value=round(values[signal.name], 4),
                contribution=_floor4(score * float(surprise) / share),
                evidence={
                    "explanation": signal.explanation,
                    "benign_tail_probability": float(f"{p:.3g}"),  # 1e-6 stays 1e-6
                    **(
                        {"compared_with": "benign accounts' whole histories"}
                        if signal.lifetime
                        else {
                            "compared_at_requests": embedded if signal.needs_embeddings else count
                        }
                    ),
                },
            )
        )
    beyond_signals = {
        ISOLATION: (forest, {"explanation": "unusual combination of signals for benign accounts"}),
        COORDINATION: (
            coordination,
            {
                "explanation": "linked accounts acting as one: their links are this many decades "
                "rarer among independent honest accounts than chance over every pair compared",
                "benign_tail_probability": float(f"{10 ** -float(coordination):.3g}"),
            },
        ),
    }
    for name, (surprise, evidence) in beyond_signals.items():
        if surprise >= MIN_SURPRISE:
            found.append(
                Reason(
                    signal=name,
                    value=round(float(surprise), 4),
                    contribution=_floor4(score * float(surprise) / share),
                    evidence=evidence,
                )
            )
    found.sort(key=lambda r: r.contribution, reverse=True)
    budget = answer_budget(values)
    if found and budget is not None:
        found.append(budget)
    return found


def answer_budget(values: dict[str, float]) -> Reason | None:
    """Why the score is lower than its signals say, when it is: the account asks for short
    answers, so its evidence counts less (`scoring.output_weight`). The analyst reads it beside
    the signals: a pipeline asking for a label is not harvesting answers. None for whole
    answers or a log that does not say.

    >>> answer_budget({"output_budget": 8.0}).evidence["weight"]
    0.25
    >>> answer_budget({"output_budget": 512.0}) is None, answer_budget({}) is None
    (True, True)
    """
    budget = output_budget(values)
    weight = float(output_weight(budget))  # 1 for whole answers and for an unlogged budget
    if weight >= 1.0:
        return None
    return Reason(
        signal="answer_budget",
        value=budget,
        contribution=0.0,
        evidence={
            "explanation": f"asks for short answers (median max_tokens {budget:g}; a whole answer "
            f"needs {FULL_ANSWER_TOKENS}): its evidence counts x{weight:.2f}",
            "weight": round(weight, 4),
        },
    )


def with_examples(found: list[Reason], features: Iterable[EventFeatures]) -> list[Reason]:
    """The account's latest prompts on the top reason: what an analyst reads first."""
    if found:
        examples = [f.prompt for f in list(features)[-EXAMPLES:]]
        found[0].evidence = {**(found[0].evidence or {}), "example_prompts": examples}
    return found


def campaign_reason(cluster: Cluster) -> Reason:
    """The campaign as a reason on each member's verdict (no contribution of its own)."""
    return Reason(
        signal="campaign",
        value=float(len(cluster.members)),
        contribution=0.0,
        evidence={
            "explanation": "linked accounts scored together as one campaign",
            "cluster_id": cluster.cluster_id,
            "members": cluster.members[:50],
            # the pair links stay on the campaign (its graph), not on every member's verdict
            **{k: v for k, v in cluster.evidence.items() if k != "links"},
        },
    )
