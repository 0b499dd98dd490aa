"""The verdict contract (ARCHITECTURE.md) and the rule for when a verdict is worth emitting."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

Label = Literal["benign", "suspicious", "extraction"]
LABEL_RANK: dict[str, int] = {"benign": 0, "suspicious": 1, "extraction": 2}
MATERIAL_SCORE_CHANGE = 0.1


class Reason(BaseModel):
    """One signal's part in a verdict: its value and how much it moved the score."""

    signal: str
    value: float
    contribution: float
    evidence: dict[str, Any] | None = None


class Assessment(BaseModel):
    """What a detector thinks of an account right now."""

    score: float = Field(ge=0.0, le=1.0)
    label: Label
    reasons: list[Reason] = Field(default_factory=list)
    cluster_id: str | None = None  # the campaign the account was linked into, if any
    observed_at: datetime | None = None  # when an assessment comes without new events
    # The label was reached after this many of the batch's new requests (bursts are assessed in
    # steps), so the verdict records the request that crossed the threshold, not the batch end.
    requests_at_label: int | None = None
    # A graver assessment the account reached earlier in the same batch and left again: a live
    # worker polling a few requests at a time would have emitted it, so the pipeline does too,
    # and a verdict does not depend on how many of an account's requests one batch holds.
    peak: Assessment | None = None


class Verdict(BaseModel):
    """An explained decision about an account, as stored and as written to verdict files."""

    account_id: str
    cluster_id: str | None = None
    timestamp: datetime
    requests_seen: int
    score: float = Field(ge=0.0, le=1.0)
    label: Label
    reasons: list[Reason]
    detector_version: str

    @property
    def verdict_id(self) -> str:
        """Same account, point in its stream, label and detector: the same verdict (idempotent).
        The label is part of it because a campaign link can relabel an account between two of
        its own requests, and that later verdict must not overwrite the earlier one."""
        parts = (self.account_id, str(self.requests_seen), self.label, self.detector_version)
        key = "\x1f".join(parts)
        return hashlib.sha256(key.encode()).hexdigest()[:32]


class ClusterVerdict(BaseModel):
    """A campaign: accounts linked as one operator, scored together, and why they were linked."""

    cluster_id: str
    updated: datetime  # the latest member activity the link rests on
    members: list[str]
    score: float = Field(ge=0.0, le=1.0)
    # a verdict label, "unscored" before fusion has scored the campaign, or "dissolved" once the
    # linker no longer links its members (the row keeps its last members as history)
    label: str
    evidence: dict[str, Any] = Field(default_factory=dict)


def is_material(previous: tuple[str, float] | None, current: Assessment) -> bool:
    """Emit on first sight, on any label change, or on a score move of 0.1 or more."""
    if previous is None:
        return True
    label, score = previous
    return label != current.label or abs(score - current.score) >= MATERIAL_SCORE_CHANGE


def first_flags(verdicts: Iterable[Verdict], label: Label = "extraction") -> dict[str, Verdict]:
    """Each account's first verdict at `label` or graver, in stream order: what "detected at
    request N" means in validation and in the benchmark (`extraction` is the default threshold;
    `suspicious` is the early-warning tier)."""
    flags: dict[str, Verdict] = {}
    for verdict in verdicts:
        if LABEL_RANK[verdict.label] >= LABEL_RANK[label]:
            flags.setdefault(verdict.account_id, verdict)
    return flags
