"""Tiered embedding: which requests MiniLM embeds, so a CPU deployment keeps up.

SimHash, parameters, timing, the reasoning classifier and language are computed for every event;
MiniLM embeds each account's 32nd, 64th, … request (`sample_every`: the campaign linker's topic
evidence) and, once an account is under suspicion, its whole window and everything after
(`AccountWindow.deep`). Suspicion is the sum of the cheap signals' surprises reaching the deep
threshold, calibrated so that honest accounts that ever get there carry at most `deep_share` of
benign requests: that share is the embedding budget (see `deep_threshold`).

>>> deep_threshold({"heavy": 9.0, "odd": 5.0, "quiet": 1.0}, {"heavy": 80, "odd": 2, "quiet": 18},
...                budget=0.05)
9.000001
>>> [wants_embedding(position, sample_every=32, tiered=True, deep=False) for position in (0, 31)]
[False, True]
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from core.embedder import Embedder
from detectors.features import EventFeatures
from detectors.signals import SIGNALS

EMBEDDING_SIGNALS = np.array([s.needs_embeddings for s in SIGNALS])


def cheap_surprises(surprises: np.ndarray) -> np.ndarray:
    """Summed surprise of the signals that need no embedding, per row: the suspicion trigger."""
    return surprises[..., ~EMBEDDING_SIGNALS].sum(axis=-1)


def deep_threshold(peaks: dict[str, float], sizes: dict[str, int], budget: float) -> float:
    """The lowest suspicion threshold at which benign accounts that would go deep (their
    lifetime peak of cheap surprise reaches it; their whole history is then embedded) hold at
    most `budget` of all benign requests: the embedding budget is a share of events, because a
    few heavy honest accounts carry most of them."""
    total = sum(sizes.values()) or 1
    spent, threshold = 0, 1.0
    for account, peak in sorted(peaks.items(), key=lambda item: -item[1]):
        if (spent + sizes[account]) / total > budget:
            return max(peak + 1e-6, threshold)
        spent += sizes[account]
    return threshold


def wants_embedding(position: int, sample_every: int, tiered: bool, deep: bool) -> bool:
    """Whether an account's request at `position` (0-based) is embedded on arrival."""
    sampled = position % sample_every == sample_every - 1
    return not tiered or deep or sampled


def embed(embedder: Embedder, features: list[EventFeatures]) -> None:
    """Set the embedding of each of `features` (one embedder call)."""
    if features:
        vectors = embedder([f.prompt for f in features])
        for item, vector in zip(features, vectors, strict=True):
            item.embedding = np.asarray(vector, dtype=np.float32)


def embed_missing(embedder: Embedder | None, features: Iterable[EventFeatures]) -> None:
    """Embed those of `features` not embedded yet."""
    missing = [f for f in features if f.embedding is None]
    if missing and embedder is not None:
        embed(embedder, missing)
