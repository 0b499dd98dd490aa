"""The campaign linker's settings, in one frozen value: a calibration file stores them (as
`asdict`) and loading it restores them, so a saved linker links as the fitted one did.

>>> LinkerParams().window_ms // 86_400_000, LinkerParams(min_pieces=3).min_pieces
(7, 3)
"""

from __future__ import annotations

from dataclasses import dataclass

from core.timeutil import DAY_MS, HOUR_MS


@dataclass(frozen=True)
class LinkerParams:
    """How far back linking looks, how rare evidence must be, and how much work it may do."""

    # -- what links two accounts
    window_ms: int = 7 * DAY_MS  # profiles remember this much event time
    # accounts (with their whole cluster) quiet this long are forgotten (`CampaignLinker._retire`)
    retire_ms: int = 30 * DAY_MS
    false_link_rate: float = 1e-5  # share of benign account pairs an edge may join
    piece_alpha: float = 0.001  # a piece is "rare" at this benign tail probability
    min_pieces: int = 2  # an edge needs at least this many rare pieces (families)
    # -- weak links: two clusters are one actor when several disjoint member pairs are unusual
    weak_link_rate: float = 0.01  # share of benign account pairs a weak link may join
    weak_piece_alpha: float = 0.05  # a piece of a weak link is "unusual" at this tail
    # -- near-duplicate prompts
    max_hamming: int = 6  # SimHash distance of a near-duplicate
    min_cosine: float = 0.92  # embedding similarity of a near-duplicate
    neighbour_k: int = 8  # neighbours asked of the prompt index per prompt
    min_prompt_chars: int = 24  # shorter prompts are too generic to link accounts
    # -- what honest accounts share (not evidence)
    common_accounts: int = 2  # shared by this many benign accounts: common
    rare_signature_share: float = 0.05  # parameter signatures rarer than this carry weight
    # -- evidence pieces
    max_posting: int = 256  # partners taken from one crowded posting
    # a pair is evaluated again once either account has sent this share more requests since the
    # pair's last evaluation (at least one), or the two share new prompts
    reevaluate_growth: float = 0.125
    timing_prior: float = 2.0  # shrinks shared-hour overlap of quiet accounts
    min_topic_prompts: int = 8  # topic overlap needs this many embedded prompts each
    template_prior: float = 2.0  # requests added to each account's count for template share
    min_template_share: float = 0.05  # a template this small a share of traffic proves nothing
    rhythm_prior: float = 4.0  # population pseudo-counts in each account's schedule
    topic_k: int = 32  # benign topic centroids when none are given
    # -- calibration
    calibration_batch_ms: int = HOUR_MS  # benign traffic is replayed in batches this long
    max_calibration_pairs: int = 200_000  # benign pairs measured per window, at most
