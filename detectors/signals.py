"""Per-account signals over a sliding window of an account's recent requests.

Each signal is a small pure function of the window (and, for the embedding signals, of the benign
reference), oriented so that *larger is more extraction-like*. Signals are weak alone; fusion
(`detectors/fusion/`) turns each into a benign-calibrated surprise and adds them up.

| signal | why an extraction harvest shows it |
|---|---|
| near_duplicate_rate | templates and enumerations repeat the same words with new fillers |
| single_shot_share | harvesting sends independent prompts; people follow up in sessions |
| greedy_share, logprobs_share, multi_sample_share | harvesting parameters |
| timing_regularity | scripts send at steady intervals; people pause irregularly |
| peak_hourly_volume, peak_daily_volume | harvests need many requests |
| reasoning_share | reasoning-trace elicitation |
| language_switch_rate | coverage attacks hop across languages |
| unusual_openings | a harvest opens its prompts its own way, not as the population's apps do |
| coverage | many distinct benign topics for few requests |
| dispersion | prompts spread far apart in embedding space |
| mmd | the account's prompt distribution differs from benign traffic |
| prada | the bulk of PRADA's minimum distances departs from normal (Juuti et al. 2019) |
| lifetime_distinct_prompts | a harvest is many distinct prompts, however slowly they are sent |
| lifetime_topic_breadth | a harvest covers many topics over the whole history |

The two `lifetime` signals read the account's whole history (`detectors/sketches.py`), not
the window: they are compared with benign accounts' whole histories, not window by window.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from detectors.features import EventFeatures
from detectors.index import window_duplicate_rate
from detectors.language import switch_rate
from detectors.sketches import Lifetime

KERNEL_MEANS_KEPT = 100_000  # prompts whose MMD cross term is remembered (about 10 MB)
NEAR_DUPLICATE_BITS = 8  # SimHash Hamming radius; unrelated prompts sit ~32 bits apart
SESSION_GAP_MS = 30 * 60_000
PRADA_TRIM = 0.01  # share of PRADA's nearest distances left out at each end (`central`)


@dataclass
class Window:
    """Column view of an account's window, built once per assessment."""

    timestamps: np.ndarray
    simhashes: np.ndarray
    followup: np.ndarray
    greedy: np.ndarray
    logprobs: np.ndarray
    multi_sample: np.ndarray
    reasoning: np.ndarray
    languages: list[str]
    unusual_openings: np.ndarray  # opens in a way few benign accounts' prompts do
    embeddings: np.ndarray  # (m, d) of the embedded events only
    lifetime: Lifetime  # the account's whole history (the window included)
    embedded_keys: list[str] = field(default_factory=list)  # prompt keys of `embeddings`' rows

    @classmethod
    def of(
        cls,
        features: list[EventFeatures],
        lifetime: Lifetime | None = None,
        unusual_opening: Callable[[EventFeatures], bool] | None = None,
    ) -> Window:
        """`unusual_opening`: whether a request opens in a way few benign accounts' do (from
        calibration; without one, none does)."""
        vectors = [f.embedding for f in features if f.embedding is not None]
        return cls(
            timestamps=np.fromiter((f.timestamp_ms for f in features), np.int64, len(features)),
            simhashes=np.fromiter((f.simhash for f in features), np.uint64, len(features)),
            followup=np.fromiter((f.followup for f in features), bool, len(features)),
            greedy=np.fromiter((f.temperature == 0 for f in features), bool, len(features)),
            logprobs=np.fromiter((f.logprobs for f in features), bool, len(features)),
            multi_sample=np.fromiter((f.n > 1 for f in features), bool, len(features)),
            reasoning=np.fromiter((f.reasoning for f in features), np.float32, len(features)),
            languages=[f.language for f in features],
            unusual_openings=np.fromiter(
                (unusual_opening is not None and unusual_opening(f) for f in features),
                bool,
                len(features),
            ),
            embeddings=np.stack(vectors).astype(np.float32)
            if vectors
            else np.zeros((0, 0), np.float32),
            lifetime=lifetime or Lifetime(),
            embedded_keys=[f.prompt_key for f in features if f.embedding is not None],
        )

    @property
    def size(self) -> int:
        return len(self.timestamps)

    @cached_property
    def similarity(self) -> np.ndarray:
        """Cosine similarity of every pair of embedded prompts (unit vectors), computed once for
        dispersion, MMD and PRADA: each computed it, and the three products were most of their
        cost on a deep account's every update."""
        return self.embeddings @ self.embeddings.T

    def topics(self, centroids: np.ndarray) -> np.ndarray:
        """Each embedded prompt's nearest benign topic centroid, computed once per window for
        coverage and topic breadth."""
        cached = self.__dict__.get("_topics")
        if cached is None or cached[0] is not centroids:
            cached = (centroids, np.argmax(self.embeddings @ centroids.T, axis=1))
            self.__dict__["_topics"] = cached
        return cached[1]


def near_duplicate_rate(window: Window) -> float:
    """Share of prompts with a near-duplicate (SimHash Hamming distance) earlier in the
    window."""
    return window_duplicate_rate(window.simhashes, NEAR_DUPLICATE_BITS)


def single_shot_share(window: Window) -> float:
    return float(1.0 - window.followup.mean()) if window.size else 0.0


def greedy_share(window: Window) -> float:
    return float(window.greedy.mean()) if window.size else 0.0


def logprobs_share(window: Window) -> float:
    return float(window.logprobs.mean()) if window.size else 0.0


def multi_sample_share(window: Window) -> float:
    return float(window.multi_sample.mean()) if window.size else 0.0


def timing_regularity(window: Window) -> float:
    """1 / (1 + coefficient of variation) of in-session gaps: 1 for a metronome."""
    gaps = np.diff(np.sort(window.timestamps)).astype(np.float64)
    gaps = gaps[gaps < SESSION_GAP_MS]
    if len(gaps) < 4 or gaps.mean() <= 0:
        return 0.0
    return float(1.0 / (1.0 + gaps.std() / gaps.mean()))


def _peak_count(window: Window, span_ms: int) -> float:
    """Most requests in any sliding span of the window."""
    if not window.size:
        return 0.0
    times = np.sort(window.timestamps)
    ends = np.searchsorted(times, times + span_ms, side="left")
    return float((ends - np.arange(len(times))).max())


def peak_hourly_volume(window: Window) -> float:
    return _peak_count(window, 3_600_000)


def peak_daily_volume(window: Window) -> float:
    return _peak_count(window, 86_400_000)


def reasoning_share(window: Window) -> float:
    return float(window.reasoning.mean()) if window.size else 0.0


def language_switch_rate(window: Window) -> float:
    return switch_rate(window.languages)


def unusual_opening_share(window: Window) -> float:
    """Share of prompts that open in a way few benign accounts' prompts do. Honest apps and
    pipelines wrap what they send in their own few templates, which calibration learns from the
    population's history; a harvest sends its own wording or bare questions. Where honest
    prompts are free-form (chat), most of theirs are unusual too and the surprise stays small."""
    return float(window.unusual_openings.mean()) if window.size else 0.0


def lifetime_distinct_prompts(window: Window) -> float:
    return window.lifetime.distinct_prompts()


@dataclass
class Reference:
    """Benign reference for the embedding signals: topic centroids and a prompt sample."""

    centroids: np.ndarray
    sample: np.ndarray
    bandwidth: float
    sample_self_kernel: float = 0.0  # the MMD term of the sample with itself, computed once
    _kernel_means: dict[str, float] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        n = len(self.sample)
        if n > 1 and not self.sample_self_kernel:
            kyy = rbf(self.sample, self.sample, self.bandwidth)
            self.sample_self_kernel = float((kyy.sum() - np.trace(kyy)) / (n * (n - 1)))

    def kernel_means(self, vectors: np.ndarray, keys: list[str]) -> np.ndarray:
        """Each vector's mean RBF kernel to the sample (MMD's cross term), remembered by prompt
        key: a deep account's window is rescored on every request, and each prompt's term
        never changes under one reference. Without keys, computed afresh."""
        if len(keys) != len(vectors):
            return rbf(vectors, self.sample, self.bandwidth).mean(axis=1)
        missing = [i for i, key in enumerate(keys) if key not in self._kernel_means]
        if missing:
            if len(self._kernel_means) + len(missing) > KERNEL_MEANS_KEPT:
                self._kernel_means.clear()
            means = rbf(vectors[missing], self.sample, self.bandwidth).mean(axis=1)
            self._kernel_means.update(zip([keys[i] for i in missing], means.tolist(), strict=True))
        return np.array([self._kernel_means[key] for key in keys])


def rbf(a: np.ndarray, b: np.ndarray, bandwidth: float) -> np.ndarray:
    """RBF kernel between unit vectors (||a − b||² = 2 − 2 a·b)."""
    return rbf_of_similarity(a @ b.T, bandwidth)


def rbf_of_similarity(similarity: np.ndarray, bandwidth: float) -> np.ndarray:
    """`rbf` from the unit vectors' dot products."""
    return np.exp(-np.maximum(0.0, 2.0 - 2.0 * similarity) / (2 * bandwidth**2))


def coverage(window: Window, reference: Reference) -> float:
    """Distinct benign topic centroids hit, per embedded prompt."""
    if len(window.embeddings) == 0 or len(reference.centroids) == 0:
        return 0.0
    topics = window.topics(reference.centroids)
    return len(np.unique(topics)) / len(topics)


def dispersion(window: Window, reference: Reference) -> float:
    """Mean pairwise cosine distance between the account's prompts."""
    vectors = window.embeddings
    m = len(vectors)
    if m < 2:
        return 0.0
    similarity = window.similarity
    return float(1.0 - (similarity.sum() - np.trace(similarity)) / (m * (m - 1)))


def mmd(window: Window, reference: Reference) -> float:
    """Unbiased MMD² (RBF kernel) between the account's prompts and a benign reference sample."""
    x = window.embeddings
    if len(x) < 2 or len(reference.sample) < 2:
        return 0.0
    kxx = rbf_of_similarity(window.similarity, reference.bandwidth)
    m = len(x)
    term_x = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    cross = reference.kernel_means(x, window.embedded_keys).mean()
    return float(term_x + reference.sample_self_kernel - 2 * cross)


def prada(window: Window, reference: Reference) -> float:
    """1 − Shapiro–Wilk W of each prompt's distance to its nearest earlier prompt (PRADA), the
    1 % at each end left out (`central`: two of a full window's 255, none under 100). W tests
    normality, and in a window of 255 distances a few far-off prompts (a pasted log, a question
    in another language) drag it down as far as a harvest's whole shape does: an analyst's
    overnight batch of conversation summaries (`enterprise-nat`) crossed the threshold when a few
    unusual transcripts entered its window, PRADA's surprise jumping from 0.9 to 3.3 decades.
    PRADA's evidence is the shape of the bulk; repeats are `near_duplicate_rate`'s."""
    vectors = window.embeddings
    if len(vectors) < 8:
        return 0.0
    distances = np.sqrt(np.maximum(0.0, 2.0 - 2.0 * window.similarity))
    nearest = central(nearest_earlier(distances), PRADA_TRIM)
    if np.ptp(nearest) < 1e-9:
        return 1.0  # identical distances: as far from normal as a sample gets
    return 1.0 - shapiro_w(nearest)


def central(sample: np.ndarray, share: float) -> np.ndarray:
    """The sample sorted, without its `share` smallest and `share` largest values (rounded down:
    a sample under 1 / share keeps every value).

    >>> central(np.array([9.0, 1, 5, 3, 7]), 0.2).tolist()
    [3.0, 5.0, 7.0]
    >>> central(np.array([2.0, 1]), 0.2).tolist()
    [1.0, 2.0]
    """
    ordered = np.sort(sample)
    cut = int(share * len(ordered))
    return ordered[cut : len(ordered) - cut]


def shapiro_w(sample: np.ndarray) -> float:
    """Shapiro–Wilk W of a 1-d sample without NaN. scipy's `shapiro` under its `nan_policy` and
    array-API wrapper (`__wrapped__`, kept by `functools.wraps`): the wrapper was nine tenths of
    a call on a window's 255 distances, and it runs on every deep update."""
    from scipy.stats import shapiro

    compute = getattr(shapiro, "__wrapped__", shapiro)
    # A campaign scored as one account pools its members' windows, past 5,000 prompts: scipy
    # then warns that its p-value may be off, and only the statistic is read here.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "scipy.stats.shapiro: For N > 5000", UserWarning)
        return float(compute(sample).statistic)


def nearest_earlier(distances: np.ndarray) -> np.ndarray:
    """Each row's smallest distance to an earlier row (rows 1…m−1), in one masked reduction: a
    Python loop over the rows was half of PRADA's cost, which runs on every deep update.

    >>> nearest_earlier(np.array([[0.0, 3, 1], [3, 0, 2], [1, 2, 0]])).tolist()
    [3.0, 1.0]
    """
    earlier = np.tri(len(distances), k=-1, dtype=bool)
    return np.where(earlier, distances, np.inf).min(axis=1)[1:]


def lifetime_topic_breadth(window: Window, reference: Reference) -> float:
    """Distinct benign topics among every prompt ever embedded: those that left the window
    (counted by the sketch) and those still in it."""
    if len(reference.centroids) == 0:
        return 0.0
    topics = set(window.lifetime.topics)
    if len(window.embeddings):
        topics.update(window.topics(reference.centroids).tolist())
    return float(len(topics))


@dataclass(frozen=True)
class Signal:
    """`content` signals say *what* an account asks, the others *how* it asks. Signals of one
    `family` measure one habit (harvest parameters; volume) and count once, at the strongest."""

    name: str
    compute: Callable[..., float]
    needs_embeddings: bool = False
    explanation: str = ""
    content: bool = False
    family: str = ""
    lifetime: bool = False  # reads the whole history: compared with benign whole histories

    @property
    def group(self) -> str:
        return self.family or self.name


PARAMS, VOLUME = "harvest_parameters", "volume"
SIGNALS: tuple[Signal, ...] = (
    Signal("near_duplicate_rate", near_duplicate_rate, False, "prompts repeat one template", True),
    Signal("single_shot_share", single_shot_share, False, "independent prompts, no follow-ups"),
    Signal(
        "greedy_share", greedy_share, False, "temperature 0 (deterministic answers)", False, PARAMS
    ),
    Signal(
        "logprobs_share", logprobs_share, False, "asks for token log-probabilities", False, PARAMS
    ),
    Signal(
        "multi_sample_share",
        multi_sample_share,
        False,
        "asks for several samples (n>1)",
        False,
        PARAMS,
    ),
    Signal("timing_regularity", timing_regularity, False, "requests at machine-steady intervals"),
    Signal(
        "peak_hourly_volume", peak_hourly_volume, False, "many requests in one hour", False, VOLUME
    ),
    Signal(
        "peak_daily_volume", peak_daily_volume, False, "many requests in one day", False, VOLUME
    ),
    Signal("reasoning_share", reasoning_share, False, "asks the model to show its reasoning", True),
    Signal("language_switch_rate", language_switch_rate, False, "switches language often", True),
    Signal(
        "unusual_openings",
        unusual_opening_share,
        False,
        "prompts open unlike honest traffic's (wordings few benign accounts use)",
        True,
    ),
    Signal("coverage", coverage, True, "touches many distinct benign topics", True),
    Signal("dispersion", dispersion, True, "prompts far apart from each other", True),
    Signal("mmd", mmd, True, "prompt distribution differs from benign traffic", True),
    Signal("prada", prada, True, "PRADA nearest-distance statistic is not normal", True),
    Signal(
        "lifetime_distinct_prompts",
        lifetime_distinct_prompts,
        False,
        "many distinct prompts over the account's whole history",
        False,
        VOLUME,
        lifetime=True,
    ),
    Signal(
        "lifetime_topic_breadth",
        lifetime_topic_breadth,
        True,
        "covers many benign topics over the account's whole history",
        True,
        lifetime=True,
    ),
)
