"""The fused extraction detector: every signal, benign-calibrated, added up, explained.

How a score comes about:
1. Each signal's value is compared with benign accounts' values at a comparable window size
   (buckets of 4, 8, …, 256 requests; whole-history signals with benign whole histories): its
   *surprise* is −log10 of the benign tail probability.
2. An IsolationForest fitted on benign accounts' surprise vectors adds one more surprise for
   unusual *combinations* of individually ordinary signals.
3. The raw score is 2·√(content surprise · behaviour surprise), weighed by the credibility of
   the account's harvest (√(distinct prompts / 32), at most 1; see `fused`). Calibration
   replays benign history through the same code and records each benign account's highest raw
   score over its lifetime, *out of fold* (scored against the other accounts only, as a new
   honest account will be: `calibration`); the thresholds are conformal quantiles of those
   maxima (an exponential tail fitted above the 90th percentile where the history is too small
   to measure the rate): `extraction` at `target_fpr` (default 0.1% of accounts), `suspicious`
   at `suspicious_fpr` (1%). The held-out false-positive rate they give is measured and saved
   with the calibration (`calibration_report`).
4. `score = 1 − 2^(−raw / extraction_threshold)`: 0.5 is exactly the extraction threshold.

Tiered embedding (CPU deployments, the default): SimHash, parameters, timing, the reasoning
classifier and language are computed for every event; MiniLM embeds each account's 32nd, 64th, …
request (`sample_every`: the campaign linker's topic evidence) and, once an account is under
suspicion, its whole window and everything after (`AccountWindow.deep`). Suspicion is the sum of
the cheap signals' surprises reaching `deep_threshold_`, calibrated so that honest accounts that
ever get there carry at most `deep_share` (default 5%) of benign requests: that share is the
embedding budget (see `deep_threshold`). The embedding signals
(coverage, dispersion, MMD, PRADA) are computed for deep accounts only, against benign windows
embedded in full at calibration. `tiered=False` embeds every event and scores every account with
every signal.

Modules: `benign` (benign distributions, surprise, the forest, thresholds), `calibration`
(cross-fitting, the held-out report, history against live traffic), `scoring` (fusion
into a score and a label), `tiering` (which requests are embedded), `explanation` (reasons),
`window` (per-account memory and checkpoint), `pooling` (campaigns scored as one account),
`persistence` (the calibration file), `detector` (`ExtractionDetector`).
"""

from detectors.fusion.benign import BUCKETS, bucket_of, lifetime_maxima, tail_threshold
from detectors.fusion.detector import BURST_STEP, ExtractionDetector, Scorer
from detectors.fusion.scoring import fused
from detectors.fusion.tiering import cheap_surprises, deep_threshold
from detectors.fusion.window import AccountWindow

__all__ = [
    "BUCKETS",
    "BURST_STEP",
    "AccountWindow",
    "ExtractionDetector",
    "Scorer",
    "bucket_of",
    "cheap_surprises",
    "deep_threshold",
    "fused",
    "lifetime_maxima",
    "tail_threshold",
]
