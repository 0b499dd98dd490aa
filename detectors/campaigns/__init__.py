"""Campaign linking: many small accounts that are one harvest.

A campaign splits its harvest over accounts so that each stays under every per-account threshold,
but the accounts still share things honest strangers rarely share: client infrastructure (one /24
and one user agent on the same days), the same active hours, near-duplicate prompts, an unusual
parameter profile, topics. Each of these is weak alone and some are common among honest users
(offices share a prefix, everyone types "continue"), so every piece of evidence is scored by how
rare it is between *benign* account pairs (its empirical tail probability, as a surprise in
decades: −log10 p), pieces are summed, and an edge needs both a total above a benign-calibrated
threshold and at least `min_pieces` individually rare pieces. Accounts joined by edges form a
cluster (union-find); the pipeline scores each cluster as a whole.

Calibration (`fit`) reads benign traffic only. What several benign accounts share (prompts and
their near-duplicates, client contexts, parameter signatures) is ignored as evidence; the benign
distribution of each piece is measured over benign account pairs with that "common" knowledge
learnt on the other half of the accounts (cross-fitting, so the chance overlaps of honest
accounts the calibration never saw are in the reference), and the edge threshold is the benign
pair strength at `false_link_rate`.

Modules: `params` (the linker's settings), `profiles` (what is remembered per account, and the
postings that find candidate pairs), `evidence` (the pieces and their benign tails),
`calibration` (what honest accounts share, the threshold), `clustering` (union-find, stable
cluster ids, cluster evidence), `persistence` (calibration files and checkpoints), `linker`.
"""

from detectors.campaigns.calibration import time_batches
from detectors.campaigns.clustering import Cluster
from detectors.campaigns.evidence import PIECES, Tail
from detectors.campaigns.linker import CampaignLinker
from detectors.campaigns.params import LinkerParams
from detectors.campaigns.profiles import AccountProfile, param_signature

__all__ = [
    "PIECES",
    "AccountProfile",
    "CampaignLinker",
    "Cluster",
    "LinkerParams",
    "Tail",
    "param_signature",
    "time_batches",
]
