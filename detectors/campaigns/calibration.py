"""Calibration helpers: what honest accounts share (ignored as evidence), the cross-fitting
split, benign pair sampling and the edge threshold at a false-link rate.

Calibration reads benign traffic only. What several benign accounts share is learnt on one half
of the accounts and applied to pairs of the other half, so the chance overlaps of honest
accounts the calibration never saw are in the reference distribution.

>>> edge_threshold([], false_link_rate=1e-5)
5.0
>>> edge_threshold([0.5] * 999 + [3.0], false_link_rate=1e-5)  # 1000 pairs: 2 decades missing
5.0
>>> edge_threshold([float(i) for i in range(1000)], false_link_rate=0.01)
990.0
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

import numpy as np

from detectors.campaigns.evidence import PIECES, Pair, PieceValues, pair
from detectors.campaigns.profiles import client_context, param_signature
from detectors.campaigns.skeletons import skeleton_keys
from detectors.features import EventFeatures
from detectors.index import RecentPromptIndex, SimhashSet


class Common(NamedTuple):
    """Prompts, near-duplicate prompts, client contexts, parameter signatures and prompt
    skeletons that several benign accounts share: honest overlap, not evidence."""

    keys: set[str]
    contexts: set[str]
    simhashes: SimhashSet
    param_rarity: dict[str, float]  # signature -> −log10 of its benign share (0: common)
    skeletons: set[str]


def fit_common(
    features: Sequence[EventFeatures],
    common_accounts: int,
    rare_signature_share: float,
    max_hamming: int,
) -> Common:
    """What `common_accounts` or more benign accounts share."""
    key_accounts: dict[str, set[str]] = defaultdict(set)
    context_accounts: dict[str, set[str]] = defaultdict(set)
    signature_accounts: dict[str, set[str]] = defaultdict(set)
    skeleton_accounts: dict[str, set[str]] = defaultdict(set)
    skeletons: dict[str, list[str]] = {}  # prompt key -> its skeleton keys (computed once)
    for f in features:
        key_accounts[f.prompt_key].add(f.account_id)
        if f.prompt_key not in skeletons:
            skeletons[f.prompt_key] = skeleton_keys(f.prompt)
        for skeleton in skeletons[f.prompt_key]:
            skeleton_accounts[skeleton].add(f.account_id)
        context = client_context(f)
        if context is not None:
            context_accounts[context].add(f.account_id)
        signature_accounts[param_signature(f)].add(f.account_id)
    accounts = len({f.account_id for f in features})
    share = {s: (len(a) + 1) / (accounts + 1) for s, a in signature_accounts.items()}
    rarity = {s: -math.log10(p) if p <= rare_signature_share else 0.0 for s, p in share.items()}
    rarity[""] = math.log10(accounts + 1)  # a signature no benign account used
    return Common(
        {k for k, a in key_accounts.items() if len(a) >= common_accounts},
        {c for c, a in context_accounts.items() if len(a) >= common_accounts},
        SimhashSet(common_simhashes(features, common_accounts, max_hamming)),
        rarity,
        {s for s, a in skeleton_accounts.items() if len(a) >= common_accounts},
    )


def common_simhashes(
    features: Sequence[EventFeatures], common_accounts: int, max_hamming: int
) -> list[int]:
    """SimHashes whose near-duplicates reach `common_accounts` benign accounts."""
    index = RecentPromptIndex(window_ms=2**62)
    index.add(features)
    needed = max(1, common_accounts - 1)  # other accounts besides the sender
    hits = index.simhash_neighbours(features, k=needed * 4, max_hamming=max_hamming)
    return sorted(
        {
            f.simhash
            for f, found in zip(features, hits, strict=True)
            if len({n.account_id for n in found}) >= needed
        }
    )


def halves(features: Sequence[EventFeatures]) -> list[set[str]]:
    """Benign accounts split in two by a hash of their id (the cross-fitting folds)."""
    return [{f.account_id for f in features if _half(f.account_id) == half} for half in (0, 1)]


def _half(account_id: str) -> int:
    return hashlib.blake2b(account_id.encode(), digest_size=1).digest()[0] & 1


def sample_pairs(active: Sequence[str], max_pairs: int) -> set[Pair]:
    """Every pair of `active` accounts (sorted), or a seeded uniform sample of `max_pairs`."""
    if len(active) * (len(active) - 1) // 2 <= max_pairs:
        return set(itertools.combinations(active, 2))
    rows = np.random.default_rng(0).integers(0, len(active), (max_pairs, 2))
    return {pair(active[i], active[j]) for i, j in rows.tolist() if i != j}


def merge_max(into: dict[Pair, PieceValues], measured: Mapping[Pair, PieceValues]) -> None:
    """Keep the largest value each piece of each pair reached (a conservative reference)."""
    for both, values in measured.items():
        seen = into.setdefault(both, dict.fromkeys(PIECES))
        for piece, value in values.items():
            if value is not None:
                seen[piece] = max(value, seen[piece] or 0.0)


def edge_threshold(strengths: Sequence[float], false_link_rate: float) -> float:
    """The (1 − false_link_rate) quantile of benign pair strength (sorted); when there are too
    few benign pairs to see that quantile, the strongest benign pair plus one decade of surprise
    per missing decade of data."""
    if not strengths:
        return math.log10(1 / false_link_rate)
    position = (1 - false_link_rate) * len(strengths)
    if position < len(strengths) - 1:
        return float(strengths[int(position)])
    missing = math.log10(1 / (false_link_rate * len(strengths)))
    return float(strengths[-1]) + max(0.0, missing)


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
