"""What the linker saves: its calibration (`calibrate --out`, a JSON document) and its streaming
state (the cross-account checkpoint a restarted worker resumes from). The layouts are the ones
files and `account_state` rows already hold: change them only with a migration.

>>> state = LinkState.empty(window_ms=3_600_000)
>>> sorted(state.to_json())  # doctest: +NORMALIZE_WHITESPACE
['cluster_born', 'cluster_of', 'edges', 'evaluated', 'examples', 'index', 'now_ms',
 'profiles', 'shared', 'weak']
>>> LinkState.from_json(state.to_json(), window_ms=3_600_000).now_ms
0
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Set
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from detectors.campaigns.clustering import ClusterIds
from detectors.campaigns.evidence import Pair, SharedPrompts, Tail
from detectors.campaigns.params import LinkerParams
from detectors.campaigns.profiles import Profiles
from detectors.campaigns.rhythm import Rhythm
from detectors.index import BenignReference, RecentPromptIndex, SimhashSet

if TYPE_CHECKING:
    from detectors.campaigns.linker import CampaignLinker


# The near-duplicate index searches IVF cells once it holds 39 × INDEX_CELLS prompts (exact
# before): a near-duplicate (cosine ≥ 0.92) lies in one of the 16 cells searched nearest its
# query, and a week of prompts is scanned in a quarter of the time.
INDEX_CELLS = 64


class PairStamp(NamedTuple):
    """What a pair's last evaluation saw (`CampaignLinker._due`)."""

    requests_a: int
    requests_b: int
    shared: int  # near-duplicate prompts the two shared
    at_ms: int  # event time of the evaluation


@dataclass
class LinkState:
    """Everything the linker learnt from the stream (calibration aside)."""

    prompt_index: RecentPromptIndex
    profiles: Profiles = field(default_factory=Profiles)
    shared: SharedPrompts = field(default_factory=SharedPrompts)
    edges: dict[Pair, dict[str, Any]] = field(default_factory=dict)
    weak: dict[Pair, dict[str, Any]] = field(default_factory=dict)  # weak links
    ids: ClusterIds = field(default_factory=ClusterIds)
    now_ms: int = 0
    evaluated: dict[Pair, PairStamp] = field(default_factory=dict)

    @classmethod
    def empty(cls, window_ms: int) -> LinkState:
        return cls(RecentPromptIndex(window_ms=window_ms, nlist=INDEX_CELLS))

    def forget(self, accounts: Set[str]) -> set[str]:
        """Drop every trace of `accounts` (profiles and postings, links, pair stamps, shared
        prompts, cluster ids); returns the cluster ids left without a member. Their prompts
        leave the index by age."""
        self.profiles.forget(accounts)
        shared = self.shared
        for table in (self.edges, self.weak, self.evaluated, shared.keys, shared.examples):
            for both in [both for both in table if both[0] in accounts or both[1] in accounts]:
                del table[both]
        return self.ids.forget(accounts)

    def to_json(self) -> dict[str, Any]:
        """JSON; the prompt index as base64."""
        return {
            "now_ms": self.now_ms,
            "profiles": self.profiles.to_json(),
            **self.shared.to_json(),
            "edges": [[*both, edge] for both, edge in self.edges.items()],
            "weak": [[*both, link] for both, link in self.weak.items()],
            "cluster_of": self.ids.of,
            "cluster_born": self.ids.born,
            "evaluated": [[*both, *stamp] for both, stamp in self.evaluated.items()],
            "index": base64.b64encode(self.prompt_index.snapshot()).decode("ascii"),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], window_ms: int) -> LinkState:
        """Resume from `to_json()`: postings are rebuilt from the profiles."""
        state = cls(
            RecentPromptIndex(window_ms=window_ms, nlist=INDEX_CELLS),
            Profiles.from_json(data["profiles"]),
            SharedPrompts.from_json(data),
            {(a, b): edge for a, b, edge in data["edges"]},
            {(a, b): link for a, b, link in data.get("weak", [])},  # absent in older states
            ClusterIds(data["cluster_of"], data["cluster_born"]),
            data["now_ms"],
            {  # absent in older states: every pair is then due once
                (a, b): PairStamp(*stamp) for a, b, *stamp in data.get("evaluated", [])
            },
        )
        state.prompt_index.restore(base64.b64decode(data["index"]))
        return state


def calibration_to_json(linker: CampaignLinker) -> dict[str, Any]:
    """The fitted linker's parameters and benign statistics (JSON)."""
    return {
        "params": asdict(linker.params),
        "common_keys": sorted(linker.common_keys_),
        "common_contexts": sorted(linker.common_contexts_),
        "common_simhashes": [str(s) for s in linker.common_simhashes_.simhashes],
        "param_rarity": linker.param_rarity_,
        "common_skeletons": sorted(linker.common_skeletons_),
        "rhythm": linker.rhythm_.to_json(),
        "tails": {piece: asdict(tail) for piece, tail in linker.tails_.items()},
        "threshold": linker.threshold_,
        "weak_threshold": linker.weak_threshold_,
        "benign_pairs": linker.benign_pairs_,
        "reference": linker.reference_.to_dict() if linker.reference_ is not None else None,
    }


def load_calibration_json(linker: CampaignLinker, data: Mapping[str, Any]) -> None:
    """Set the linker's parameters and fitted attributes from `calibration_to_json`."""
    linker.params = LinkerParams(**data["params"])
    linker.common_keys_ = set(data["common_keys"])
    linker.common_contexts_ = set(data["common_contexts"])
    linker.common_simhashes_ = SimhashSet(int(s) for s in data["common_simhashes"])
    linker.param_rarity_ = dict(data["param_rarity"])
    linker.common_skeletons_ = set(data.get("common_skeletons", ()))  # absent in older files
    linker.rhythm_ = Rhythm.from_json(data.get("rhythm"))
    linker.tails_ = {piece: Tail(**tail) for piece, tail in data["tails"].items()}
    linker.threshold_ = data["threshold"]
    linker.weak_threshold_ = data.get("weak_threshold", float("inf"))  # older files: none
    linker.benign_pairs_ = data["benign_pairs"]
    reference = data["reference"]
    linker.reference_ = BenignReference.from_dict(reference) if reference else None
