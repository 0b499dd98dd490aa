"""`distillguard provenance experiment`: does the watermark survive real distillation, and does
fingerprint attribution name the accounts that harvested a suspect's training data?

Real parts only: the SmolLM2 teacher answers real prompts (ShareGPT) with and without the
watermark; real students (students/pruned.py: by default the teacher keeping every 10th block,
fine-tuned for 6 epochs; students/distill.py's scratch student in `--quick`) are trained on
answer sets of which a share (0, 1, 2, 5, 10, 20, 50, 100 % by default: the dose-response curve)
came watermarked from our API, the rest from the same teacher unwatermarked (standing in for any
other source). Per student:

* closed-model test: the student answers the prompts the harvesting accounts sent (every
  training prompt for a clean student), greedily as it would at temperature 0, and its answers
  are scored;
* open-model test: the student reads the answers served to the harvesting accounts (what
  `provenance radioactivity --mode open --account` feeds; a clean student: every watermarked
  answer to the attacker's prompts) and its next-token predictions are scored;
* the same open-model test on watermarked answers no student trained on (benign accounts'
  logged responses): radioactivity beyond what a student memorised;
* attribution: the harvesting accounts' requests and hundreds of benign accounts' requests go
  through the DistillGuard pipeline into a store (response fingerprints at ingest); the student
  answers every logged prompt; `attribute` ranks accounts by text, `attribute_by_watermark` by
  watermark, and `combine_attributions` ranks them by both.

Every test leaves out the windows of a reference: the teacher's own answers to the attacker's
prompts without the watermark, sampled as it serves (temperature 0.7) with another seed than any
student's answers (what a provider can always produce: ask its model the same questions with the
watermark off). They are the prompts the watermarked students are asked, and about two thirds of
each clean student's. A reference of greedy answers (its favourite phrases only) left 2 of 40
clean tests below 0.01 on the default run, where this one left none. See
provenance/radioactivity.py for why; each student also records its p-values without that filter,
to show what it changes.

Clean students (never trained on watermarked text, each on its own draw of plain answers) give
the false-accusation rate at the threshold reports use (provenance/error_rates.py): the share of
their tests with p < 0.01, over `clean_seeds` students, and over `null_keys` further keys each.

The teacher's answers are cached on disk (students/teacher.py `ResponseCache`, under
`<data_dir>/teacher/`): one entry per answer, keyed by the conversation (the prompt), the
generation settings (temperature, max tokens, seed), the model and, for watermarked answers, the
key's id (an HMAC of the secret with gamma, delta and context width). A rerun generates nothing;
changing any of those generates only the answers it changes.

Students train with a trimmed vocabulary (students/vocabulary.py): their softmax covers the
tokens of their own training set, several times cheaper per step than all 49k, and they still
answer and predict in the teacher's token ids. A clean student's vocabulary comes from plain
answers alone, so it cannot carry the key.
"""

from __future__ import annotations

import os
import random
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from statistics import median

import orjson

from core.settings import Settings
from provenance.chat import Pair, answer
from provenance.error_rates import FALSE_ACCUSATION_ALPHA, bonferroni, save_error_rates
from provenance.radioactivity import (
    RadioactivityResult,
    Window,
    open_model_windows,
    reference_windows,
    scored,
    without_reference,
)
from provenance.watermark import (
    GreenList,
    WatermarkKey,
    score_window_sets,
    score_windows,
    text_windows,
)
from students.distill import (
    PRECISION_LABELS,
    Precision,
    resolved_precision,
    train_student,
    trains_in_bf16,
)
from students.prompts import attack_pool, benign_conversations
from students.pruned import TEACHER_BLOCKS, StudentSpec, kept_layers
from students.teacher import MODEL_NAME, GenerationSettings, Teacher, watermarked
from students.workers import end_with_parent

PROMPT_CHARS = 500  # longer prompts make teacher prefill (CPU) several times slower
START_MS = int(datetime(2026, 11, 2, tzinfo=UTC).timestamp() * 1000)


@dataclass(frozen=True)
class ExperimentConfig:
    training_pairs: int  # the student's training set size
    max_tokens: int  # teacher answer length
    benign_accounts: int
    benign_requests: int  # per benign account
    fractions: tuple[float, ...]  # watermarked shares of the training set (besides 0)
    clean_seeds: int  # students never trained on watermarked text
    null_keys: int  # further keys every clean student is scored under
    epochs: int  # passes over the training set (steps: epochs x training_pairs / 8)
    clean_pool: float = 3  # clean students draw training prompts from this many times as many
    harvesters: int = 3
    temperature: float = 0.7
    seed: int = 0
    student: StudentSpec = StudentSpec("scratch")
    device: str = "cpu"  # where students train and answer ("cuda" on a GPU machine)
    # students' training arithmetic (students.distill.train_student): "auto" is bf16 mixed
    # precision where the device multiplies bf16 natively; `run_experiment` records which ran
    precision: Precision = "auto"
    # attribution by text too (the log through the pipeline into a chDB store); off where chDB
    # is not installed (`scripts/device-provenance`): by watermark alone, no combined ranking
    text_attribution: bool = True
    # clean students' seeds (their draw of plain answers and their training) run from here: a
    # later block gives students no earlier run looked at, for a confirmation
    first_clean_seed: int = 0

    @property
    def clean_student_seeds(self) -> range:
        return range(self.first_clean_seed, self.first_clean_seed + self.clean_seeds)

    @property
    def pool_size(self) -> int:
        return max(self.training_pairs, round(self.training_pairs * self.clean_pool))

    @property
    def benign_answers(self) -> int:
        return self.benign_accounts * self.benign_requests

    def watermarked_pairs(self, fraction: float) -> int:
        return max(1, round(fraction * self.training_pairs)) if fraction else 0


# What one unit of work costs on the project's 2-core VM (CPU; seconds), for `estimate`. Scratch
# figures are CPU seconds measured 2026-12-03 at the default sizes (640 answers of 48 tokens,
# 7.3k kept tokens, one thread; the machine was shared, so wall time was up to 4x these); pruned
# figures measured 2026-12-05 (one thread, trimmed vocabulary, two students side by side):
# - a teacher answer of 48 tokens in batches of 32: 1.0 s (the 64-pair run's 656 answers, 11 min);
# - a pair-epoch: scratch student with a trimmed vocabulary, 0.023 s (one epoch over 640 pairs,
#   its encoding and trimming included: 14.8 s); pruned teacher 0.015 s plus 0.02 s a kept block
#   (every 6th block, 5 kept: 6 epochs over 640 pairs in 440 s; every 10th, 3 kept: 287 s);
# - a student's 48-token greedy answer, batches of 32: scratch 0.042 s (640 in 26.7 s); pruned
#   0.043 s (a clean student's 1,104 in 47.5 s, pyinstrument, 2026-12-05);
# - the open test's forward pass over one fed answer: scratch 0.046 s (400 in 18.5 s); pruned
#   0.039 s (1,040 in 40.6 s, logits at the scored positions only);
# - one key's tests (closed + open windows; ~3.4k distinct contexts, a green list each): 6 s
#   (pruned clean student: the three sets under one other key 4.5 s, under ours 12.7 s);
# - one attribution (ingest up to ~1k events into the embedded store, `attribute`): ~10 s.
TEACHER_ANSWER_S = 1.0
SCRATCH_PAIR_EPOCH_S = 0.023
PRUNED_PAIR_EPOCH_S = (0.015, 0.02)  # fixed, and per kept block
# a pruned pair-epoch in bf16 mixed precision, of its float32 time on the same CPU (AMD EPYC,
# 2026-12-06: 0.0515 against 0.090 s alone; 260 against 450 s a student, two side by side)
PRUNED_BF16_FACTOR = 0.58
STUDENT_ANSWER_S = {"scratch": 0.042, "pruned": 0.043}
OPEN_TEXT_S = {"scratch": 0.046, "pruned": 0.039}
KEY_TESTS_S = 6.0
ATTRIBUTION_S = 10.0
BENCH_BUDGET_S = 2 * 3600  # `make bench` runs FULL: it must fit in 2 h on 2 CPU cores
BENCH_JOBS = 2  # students side by side in `make bench` (one per core)
# A clean student is attributed by watermark on the log of this share's harvest (which it never
# saw): an account it names at p < alpha is a false attribution.
CLEAN_ATTRIBUTION_SHARE = 0.10


def pair_epoch_seconds(student: StudentSpec, bf16: bool = False) -> float:
    """One training pair, one epoch, on one CPU thread (`bf16`: in mixed precision)."""
    if student.kind == "scratch":
        return SCRATCH_PAIR_EPOCH_S
    fixed, per_block = PRUNED_PAIR_EPOCH_S
    seconds = fixed + per_block * len(kept_layers(TEACHER_BLOCKS, student.every))
    return seconds * (PRUNED_BF16_FACTOR if bf16 else 1.0)


def estimate(config: ExperimentConfig, jobs: int = 1) -> dict[str, float]:
    """Expected seconds per phase on the 2-core VM (CPU): teacher answers (a cold cache; a warm
    one makes this ~0), students' training, students' tests, `jobs` students side by side (at
    most one per core)."""
    kind = config.student.kind
    parallel = max(1, min(jobs, 2))
    answers = config.pool_size + 2 * config.training_pairs + config.benign_answers
    teacher = answers * TEACHER_ANSWER_S * config.max_tokens / 48
    students = len(config.fractions) + config.clean_seeds
    bf16 = trains_in_bf16(config.device, config.precision)
    training = (
        students * config.training_pairs * config.epochs * pair_epoch_seconds(config.student, bf16)
    )
    per_answer = STUDENT_ANSWER_S[kind] * config.max_tokens / 48
    unseen = config.benign_answers * OPEN_TEXT_S[kind]
    clean = config.clean_seeds * (
        config.training_pairs * (per_answer + OPEN_TEXT_S[kind])
        + unseen
        + (1 + config.null_keys) * KEY_TESTS_S
        + (config.watermarked_pairs(CLEAN_ATTRIBUTION_SHARE) + config.benign_answers) * per_answer
    )
    marked = sum(
        (2 * config.watermarked_pairs(f) + config.benign_answers) * per_answer
        + config.watermarked_pairs(f) * OPEN_TEXT_S[kind]
        + unseen
        + KEY_TESTS_S
        + ATTRIBUTION_S
        for f in config.fractions
    )
    training, tests = training / parallel, (clean + marked) / parallel
    return {
        "teacher": round(teacher),
        "training": round(training),
        "tests": round(tests),
        "total": round(teacher) + round(training) + round(tests),
    }


# 27 students (7 shares + 20 clean) on 640 answers, 6 epochs. 5 % is 32 watermarked answers.
# The student is the teacher keeping every 10th of its 30 blocks (3): a pretrained student
# memorises what it is taught in 6 epochs, as a real one fine-tuned on harvested answers does,
# where the 6.7M scratch student learned too little for any test to find 32 watermarked answers
# (closed p 0.80 at 5 %, 2026-12-04). Measured 2026-12-06 (AMD EPYC, bf16 mixed precision, the
# teacher's answers cached): 1 h 23 min, ~258 s a student's training two side by side, ~120 s a
# clean student's tests, ~50-90 s a watermarked one's. In float32 on the Intel VM, where
# `estimate(FULL, BENCH_JOBS)` says training 65 min, tests 25 min (measured 2026-12-05 with both
# attributions and the clean students' attribution: 1 h 38 min, ~290 s a student's training,
# ~125 s a clean student's tests, the first 12 min shared with a stray process); a cold cache
# adds 33-44 min.
FULL = ExperimentConfig(
    training_pairs=640,
    max_tokens=48,
    benign_accounts=200,
    benign_requests=2,
    fractions=(0.01, 0.02, 0.05, 0.10, 0.20, 0.50, 1.0),
    clean_seeds=20,
    null_keys=5,
    epochs=6,
    clean_pool=1.5,
    student=StudentSpec("pruned", every=10),
)
# the scratch student's tensors are too small for bf16 to pay: float32, as `make test` measured it
QUICK = ExperimentConfig(16, 32, 20, 2, (1.0,), 2, 5, 150, precision="fp32")


# the three radioactivity tests a student takes: its answers to the harvesters' prompts (closed
# model), its predictions fed the answers served to them (open model, as `provenance
# radioactivity --mode open --account` runs it), and fed watermarked answers it never trained on
TESTS = ("closed", "open", "unseen")
TEST_LABELS = {
    "closed": "closed-model p",
    "open": "open-model p (answers served to the harvesters)",
    "unseen": "open-model p (answers it never trained on)",
}


@dataclass
class StudentResult:
    fraction: float
    seed: int
    watermarked_pairs: int
    closed: RadioactivityResult
    open: RadioactivityResult  # fed the answers served to the harvesting accounts
    unseen: RadioactivityResult  # open test fed watermarked answers it never trained on
    open_unfiltered_p: float  # the open test's predictions without the copyable-window filter
    unreferenced_p: tuple[float, float]  # (closed, open) p without the reference filter
    null_p_values: list[float] = field(default_factory=list)  # clean students, other keys
    top_accounts: list[str] = field(default_factory=list)  # attribution by text
    precision_at_3: float | None = None
    watermark_top_accounts: list[str] = field(default_factory=list)  # attribution by watermark
    watermark_p_adjusted: list[float] = field(default_factory=list)  # theirs (Bonferroni)
    watermark_precision_at_3: float | None = None
    combined_top_accounts: list[str] = field(default_factory=list)  # both (combine_attributions)
    combined_p_adjusted: list[float] = field(default_factory=list)
    combined_precision_at_3: float | None = None
    train_seconds: float = 0.0
    test_seconds: float = 0.0  # its answers, the open tests, other keys and attribution

    def p_values(self) -> dict[str, float]:
        """Each radioactivity test's p-value, by `TESTS` name."""
        return {test: getattr(self, test).p_value for test in TESTS}


@dataclass
class ExperimentReport:
    config: ExperimentConfig
    key_id: str
    students: list[StudentResult]
    seconds: dict[str, float]

    def clean(self) -> list[StudentResult]:
        return [s for s in self.students if s.watermarked_pairs == 0]

    def false_accusations(self) -> dict:
        """How often a student never trained on watermarked text gets p < alpha."""
        clean = self.clean()
        keys = [p for s in clean for p in s.null_p_values]
        tests = [p for s in clean for p in s.p_values().values()]
        accused = sum(p < FALSE_ACCUSATION_ALPHA for p in tests)
        # the account each clean student's attribution by watermark ranks first (adjusted p)
        named = [s.watermark_p_adjusted[0] for s in clean if s.watermark_p_adjusted]
        return {
            "alpha": FALSE_ACCUSATION_ALPHA,
            "clean_students": len(clean),
            "tests": len(tests),
            "false_accusations": accused,
            "rate_upper_95": upper_95(accused, len(tests)),
            "students_accused": sum(
                min(s.p_values().values()) < FALSE_ACCUSATION_ALPHA for s in clean
            ),
            # each student's tests combined as a report combines a suspect's (Bonferroni)
            "students_accused_combined": sum(
                bonferroni(min(s.p_values().values()), len(TESTS)) < FALSE_ACCUSATION_ALPHA
                for s in clean
            ),
            "min_p_value": min(tests, default=1.0),
            "other_key_tests": len(keys),
            "other_key_false_accusations": sum(p < FALSE_ACCUSATION_ALPHA for p in keys),
            "unfiltered_open_false_accusations": sum(
                s.open_unfiltered_p < FALSE_ACCUSATION_ALPHA for s in clean
            ),
            "unreferenced_tests": sum(len(s.unreferenced_p) for s in clean),
            "unreferenced_false_accusations": sum(
                p < FALSE_ACCUSATION_ALPHA for s in clean for p in s.unreferenced_p
            ),
            "unreferenced_closed_median_p": median(s.unreferenced_p[0] for s in clean)
            if clean
            else 1.0,
            "watermark_attributions": len(named),
            "watermark_false_attributions": sum(p < FALSE_ACCUSATION_ALPHA for p in named),
            "watermark_attribution_min_p": min(named, default=1.0),
        }

    def dose_response(self) -> list[DosePoint]:
        """p-values against the watermarked share: the clean students (each test's median, and
        the smallest p of any) at 0, then one student per share."""
        points = []
        clean = self.clean()
        if clean:
            each = [s.p_values() for s in clean]
            values = {test: [p[test] for p in each] for test in TESTS}
            unreferenced = (
                median(s.unreferenced_p[0] for s in clean),
                median(s.unreferenced_p[1] for s in clean),
            )
            points.append(
                DosePoint(
                    0.0,
                    0,
                    {test: median(v) for test, v in values.items()},
                    {test: min(v) for test, v in values.items()},
                    None,
                    None,
                    unreferenced,
                )
            )
        for s in sorted(self.students, key=lambda s: s.fraction):
            if s.watermarked_pairs:
                p = s.p_values()
                points.append(
                    DosePoint(
                        s.fraction,
                        s.watermarked_pairs,
                        p,
                        p,
                        s.precision_at_3,
                        s.watermark_precision_at_3,
                        s.unreferenced_p,
                        s.combined_precision_at_3,
                    )
                )
        return points

    def to_dict(self) -> dict:
        return {
            **asdict(self),
            "false_accusation": self.false_accusations(),
            "dose_response": [asdict(point) for point in self.dose_response()],
        }


@dataclass(frozen=True)
class DosePoint:
    """One watermarked share: its students' p-value per test (at 0 %: the clean students'
    median, and in `min_p` their smallest), attribution precision@3 (by text, by watermark,
    both combined) where a student was attributed, and the (closed, open) p-values without the
    reference filter (at 0 %: their medians)."""

    fraction: float
    watermarked_pairs: int
    p: dict[str, float]
    min_p: dict[str, float]
    precision_at_3: float | None
    watermark_precision_at_3: float | None
    unreferenced_p: tuple[float, float]
    combined_precision_at_3: float | None = None


def upper_95(events: int, trials: int) -> float:
    """One-sided 95 % Clopper-Pearson upper bound of a rate seen `events` times in `trials`
    (0 of 40 tests bounds the false-accusation rate at 7.2 %)."""
    from scipy.stats import beta

    if not trials:
        return 1.0
    return 1.0 if events >= trials else float(beta.ppf(0.95, events + 1, trials - events))


def _teacher_answers(
    teacher: Teacher, prompts: Sequence[str], settings: GenerationSettings, log: Callable
) -> list[str]:
    answers: list[str] = []
    for start in range(0, len(prompts), 32):
        chunk = prompts[start : start + 32]
        done = teacher.complete([[{"role": "user", "content": p}] for p in chunk], settings)
        answers.extend(choices[0].text for choices in done)
        log(f"  {teacher.model_tag}: {len(answers)}/{len(prompts)} answers")
    return answers


def _benign_prompts(count: int, rng: random.Random) -> list[str]:
    training = set(attack_pool())
    pool = sorted(
        {
            c.user_prompts[0]
            for c in benign_conversations()
            if c.user_prompts and 20 <= len(c.user_prompts[0]) <= PROMPT_CHARS
        }
        - training
    )
    return rng.sample(pool, count)


def _log_events(
    harvested: Sequence[tuple[str, str]],
    benign: Sequence[tuple[str, str]],
    config: ExperimentConfig,
) -> tuple[list[bytes], list[str]]:
    """The provider's request log (JSONL events with responses) and each event's account
    (`harvester-N` for the harvested answers, `benign-NNNN` for the rest)."""
    harvesters = [f"harvester-{i + 1}" for i in range(config.harvesters)]
    owners = [harvesters[i % len(harvesters)] for i in range(len(harvested))]
    owners += [f"benign-{i // config.benign_requests + 1:04d}" for i in range(len(benign))]
    lines = []
    for index, ((prompt, response), account) in enumerate(
        zip([*harvested, *benign], owners, strict=True)
    ):
        event = {
            "request_id": f"prov-{index:06d}",
            "account_id": account,
            "timestamp": START_MS + index * 7_000,
            "messages": [{"role": "user", "content": prompt}],
            "response": response,
            "model": MODEL_NAME,
            "endpoint": "/v1/chat/completions",
        }
        lines.append(orjson.dumps(event))
    return lines, owners


def _ingest(store, settings: Settings, lines: list[bytes]) -> None:
    """The log through the one DistillGuard pipeline (fingerprints are written at ingest)."""
    from distillguard.wiring import build_detector, build_pipeline, store_sink
    from streaming.sources import records_from_lines

    volume = settings.model_copy(update={"detector": "volume"})
    pipeline = build_pipeline(volume, [store_sink(volume, store)], store, build_detector(volume))
    pipeline.process(records_from_lines(lines, "file:provenance-experiment"))
    pipeline.checkpoint()


def run_experiment(
    config: ExperimentConfig,
    settings: Settings,
    out: Path,
    log: Callable = print,
    calibrate: bool = True,
    jobs: int = 1,
) -> ExperimentReport:
    """Run every student, `jobs` at a time (results are rewritten after each, so a long run
    that stops keeps what it measured); with `calibrate`, save the false-accusation rate for
    reports."""
    clock = {"start": time.monotonic()}
    seconds: dict[str, float] = {}

    def lap(name: str) -> None:
        now = time.monotonic()
        seconds[name] = round(now - clock["start"], 1)
        clock["start"] = now

    config = replace(config, precision=resolved_precision(config.device, config.precision))
    key = experiment_key(config)
    expected = estimate(config, jobs)
    log(
        f"expected on 2 CPU cores: {expected['total'] / 60:.0f} min "
        f"({expected['teacher'] / 60:.0f} of them teacher answers, none if cached); "
        f"student: {config.student.label} on {config.device}"
    )
    teacher = Teacher(settings.data_dir / "teacher", device=config.device)
    marked = watermarked(teacher, key)
    generation = GenerationSettings(
        temperature=config.temperature, max_tokens=config.max_tokens, seed=config.seed
    )
    # one generator per draw, so changing one size leaves the other draws (and caches) alone.
    # The first `training_pairs` prompts are the attacker's; clean students draw theirs from all
    # of them, so that they are not all copies of one chance draw of plain answers.
    available = attack_pool(PROMPT_CHARS)
    if config.pool_size > len(available):
        raise ValueError(
            f"{config.pool_size} training prompts wanted ({config.training_pairs} pairs x "
            f"{config.clean_pool:g} for clean draws), {len(available)} in the attack pool"
        )
    pool = random.Random(config.seed).sample(list(available), config.pool_size)
    prompts = pool[: config.training_pairs]
    benign_prompts = _benign_prompts(config.benign_answers, random.Random(config.seed + 1))
    log(
        f"teacher answers: {len(pool)} plain, {len(prompts)} reference, "
        f"{len(prompts)} watermarked, {len(benign_prompts)} benign"
    )
    reference_draw = GenerationSettings(
        temperature=config.temperature, max_tokens=config.max_tokens, seed=config.seed + 1
    )
    order = list(range(config.training_pairs))
    random.Random(config.seed + 2).shuffle(order)
    data = _Answers(
        pool,
        _teacher_answers(teacher, pool, generation, log),
        reference_windows(
            teacher.tokenizer,
            _teacher_answers(teacher, prompts, reference_draw, log),
            key.context_width,
        ),
        _teacher_answers(marked, prompts, generation, log),
        list(
            zip(
                benign_prompts,
                _teacher_answers(marked, benign_prompts, generation, log),
                strict=True,
            )
        ),
        order,
    )
    lap("teacher")

    # the watermarked students first: the answer to "is it radioactive?" arrives early
    plans = [(fraction, 0) for fraction in config.fractions]
    plans += [(0.0, seed) for seed in config.clean_student_seeds]
    out.mkdir(parents=True, exist_ok=True)
    store_folder = out / "store"
    shutil.rmtree(store_folder, ignore_errors=True)  # logs of an earlier run must not mix in
    students: list[StudentResult] = []
    for result in _students(config, settings, teacher, data, plans, store_folder, jobs):
        students.append(result)
        students.sort(key=lambda s: plans.index((s.fraction, s.seed)))
        _write(ExperimentReport(config, key.key_id, students, seconds), out)
        log(
            f"student {result.fraction:.0%} seed {result.seed}: closed p "
            f"{result.closed.p_value:.2e}, open p {result.open.p_value:.2e} (answers it never "
            f"saw: {result.unseen.p_value:.2e}), top {result.top_accounts} "
            f"({result.train_seconds:.0f} s training, {result.test_seconds:.0f} s tests)"
        )
    lap("students")
    report = ExperimentReport(config, key.key_id, students, seconds)
    _write(report, out)
    plot(report, out / "experiment.png")
    if calibrate and report.clean():  # no clean students, no rate: keep the measured one
        save_calibration(settings, report)
    return report


@dataclass(frozen=True)
class _Answers:
    """The teacher's answers every student draws from."""

    pool: list[str]  # the attack pool's prompts; the first `training_pairs` are the attacker's
    plain_pool: list[str]
    reference: frozenset[Window]  # windows of another draw of plain answers to the attacker's
    marked: list[str]  # watermarked answers to the attacker's prompts
    benign: list[tuple[str, str]]  # benign accounts' prompts and watermarked answers
    order: list[int]  # which attacker prompts come watermarked first


@contextmanager
def _student_threads(config: ExperimentConfig) -> Iterator[None]:
    """One torch thread for a trimmed scratch student on the CPU: its tensors are too small for
    a second thread to pay (64 answers: 2.2 s on one thread, 7.6 s on two, 2 busy cores).
    Students side by side (`_start_worker`) take one thread each whatever their kind."""
    import torch

    threads = torch.get_num_threads()
    if config.device == "cpu" and config.student.kind == "scratch":
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _students(
    config: ExperimentConfig,
    settings: Settings,
    teacher: Teacher,
    data: _Answers,
    plans: Sequence[tuple[float, int]],
    store_folder: Path,
    jobs: int,
) -> Iterator[StudentResult]:
    """Each planned student, trained and tested, as it finishes: here, or in `jobs` spawned
    processes of one torch thread each (a pruned student's training keeps one core busy, so
    two side by side halve the wall time on 2 cores)."""
    if jobs <= 1:
        with _student_threads(config):
            for fraction, seed in plans:
                yield _student(config, teacher, fraction, seed, data, settings, store_folder)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with ProcessPoolExecutor(
        jobs,
        mp_context=multiprocessing.get_context("spawn"),  # no forked torch state
        initializer=_start_worker,
        initargs=(os.getpid(), config, settings, data),
    ) as pool:
        futures = [
            pool.submit(_worker_student, fraction, seed, store_folder) for fraction, seed in plans
        ]
        for future in as_completed(futures):
            yield future.result()


_WORKER: dict = {}  # a spawned student process's config, settings, teacher and answers


def _start_worker(
    parent: int, config: ExperimentConfig, settings: Settings, data: _Answers
) -> None:
    end_with_parent(parent)
    import torch

    if config.device == "cpu":
        torch.set_num_threads(1)
    _WORKER.update(
        config=config,
        settings=settings,
        data=data,
        teacher=Teacher(settings.data_dir / "teacher", device=config.device),
    )


def _worker_student(fraction: float, seed: int, store_folder: Path) -> StudentResult:
    w = _WORKER
    return _student(
        w["config"], w["teacher"], fraction, seed, w["data"], w["settings"], store_folder
    )


@cache
def _green_list(key: WatermarkKey, vocab_size: int) -> GreenList:
    """One green list per key in a process: the students it tests share their splits (a clean
    student's tests under six keys drew ~3.4k splits a key again, 35 s of its ~125 s)."""
    return GreenList(key, vocab_size)


def experiment_key(config: ExperimentConfig) -> WatermarkKey:
    """The run's watermark key (a fixed secret per seed, so cached answers stay valid)."""
    return WatermarkKey(f"distillguard-experiment-{config.seed}".encode())


def _student(
    config: ExperimentConfig,
    teacher: Teacher,
    fraction: float,
    seed: int,
    data: _Answers,
    settings: Settings,
    store_folder: Path,
) -> StudentResult:
    """Train one student on `fraction` watermarked answers (0: a clean draw) and test it."""
    from provenance.attribution import attribute, attribute_by_watermark, combine_attributions

    tokenizer = teacher.tokenizer
    key = experiment_key(config)
    width = key.context_width
    greens = _green_list(key, len(tokenizer))
    prompts, plain = data.pool[: config.training_pairs], data.plain_pool[: config.training_pairs]
    count = config.watermarked_pairs(fraction)
    harvested_ids = set(data.order[:count])
    if count:
        pairs = [
            Pair(p, data.marked[i] if i in harvested_ids else plain[i])
            for i, p in enumerate(prompts)
        ]
    else:
        drawn = random.Random(config.seed + 100 + seed).sample(
            range(len(data.pool)), config.training_pairs
        )
        pairs = [Pair(data.pool[i], data.plain_pool[i]) for i in drawn]
    started = time.monotonic()
    model = train_student(
        tokenizer,
        pairs,
        config.epochs,
        learning_rate=config.student.rate,
        seed=seed,
        model=config.student.build(tokenizer, teacher.model, seed),
        trim_vocabulary=True,
        device=config.device,
        precision=config.precision,
    )
    trained = time.monotonic()
    asked = [prompts[i] for i in sorted(harvested_ids)] if count else [p.prompt for p in pairs]
    outputs = answer(tokenizer, model, asked, config.max_tokens)
    closed_windows = text_windows(tokenizer, outputs, width)
    closed = scored("closed", len(outputs), greens, closed_windows, data.reference)
    # what `provenance radioactivity --mode open --account` feeds: the answers served to the
    # harvesting accounts (a clean student: every watermarked answer to the attacker's prompts)
    served = [(prompts[i], data.marked[i]) for i in sorted(harvested_ids or range(len(prompts)))]
    found, skipped = open_model_windows(model, tokenizer, served, width)
    opened = scored("open", len(served), greens, found, data.reference, len(skipped))
    unseen_found, unseen_skipped = open_model_windows(model, tokenizer, data.benign, width)
    unseen = scored(
        "open", len(data.benign), greens, unseen_found, data.reference, len(unseen_skipped)
    )
    result = StudentResult(
        fraction,
        seed,
        count,
        closed,
        opened,
        unseen,
        score_windows(greens, without_reference(found + skipped, data.reference)[0]).p_value,
        (score_windows(greens, closed_windows).p_value, score_windows(greens, found).p_value),
    )
    if not count:
        kept = [
            without_reference(w, data.reference)[0] for w in (closed_windows, found, unseen_found)
        ]
        for trial in range(config.null_keys):
            other = _green_list(
                WatermarkKey(f"null-key-{config.seed}-{trial}".encode()), len(tokenizer)
            )
            result.null_p_values += [score.p_value for score in score_window_sets(other, kept)]
    # the provider's log: the harvest (a clean student: the harvest at CLEAN_ATTRIBUTION_SHARE,
    # which it never saw) among the benign accounts; the student answers every logged prompt
    logged_ids = data.order[: count or config.watermarked_pairs(CLEAN_ATTRIBUTION_SHARE)]
    harvested = [(prompts[i], data.marked[i]) for i in sorted(logged_ids)]
    lines, owners = _log_events(harvested, data.benign, config)
    harvesters = {o for o in owners if o.startswith("harvester-")}
    logged = [p for p, _ in harvested] + [p for p, _ in data.benign]
    suspect = answer(tokenizer, model, logged, config.max_tokens)
    # by watermark: every logged account a candidate, asked its own prompts
    answers: dict[str, list[str]] = {}
    for owner, text in zip(owners, suspect, strict=True):
        answers.setdefault(owner, []).append(text)
    by_watermark = attribute_by_watermark(greens, tokenizer, answers, data.reference)
    ranked = by_watermark.accounts[:3]
    result.watermark_top_accounts = [a.account_id for a in ranked]
    result.watermark_p_adjusted = [a.contrast_p_adjusted for a in ranked]
    if count:
        result.watermark_precision_at_3 = len(set(result.watermark_top_accounts) & harvesters) / 3
    if count and config.text_attribution:
        from storage.embedded import EmbeddedClickHouse

        # by text: the log through the pipeline (fingerprints at ingest), in a store of the
        # student's own (students trained side by side each open theirs)
        store = EmbeddedClickHouse(store_folder / f"share-{count}", database="provenance")
        try:
            store.migrate()
            _ingest(store, settings, lines)
            ranking = attribute(store, suspect)
        finally:
            store.close()
        result.top_accounts = [a.account_id for a in ranking.accounts[:3]]
        result.precision_at_3 = len(set(result.top_accounts) & harvesters) / 3
        both = combine_attributions(ranking, by_watermark)[:3]
        result.combined_top_accounts = [row.account_id for row in both]
        result.combined_p_adjusted = [row.p_adjusted for row in both]
        result.combined_precision_at_3 = len(set(result.combined_top_accounts) & harvesters) / 3
    result.train_seconds = round(trained - started, 1)
    result.test_seconds = round(time.monotonic() - trained, 1)
    return result


def _write(report: ExperimentReport, out: Path) -> None:
    (out / "experiment.json").write_bytes(
        orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)
    )
    (out / "experiment.md").write_text(markdown(report))


def save_calibration(settings: Settings, report: ExperimentReport) -> Path:
    """The measured false-accusation rate, for the forensic report's provenance section."""
    return save_error_rates(settings.data_dir, report.false_accusations(), report.key_id)


def _p(value: float) -> str:
    return f"{value:.1e}"


def _share(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def dose_table(report: ExperimentReport) -> str:
    """p-value against the watermarked share (the README quotes it; the plot draws it)."""
    clean = len(report.clean())
    lines = [
        "| watermarked share | watermarked answers | "
        + " | ".join(TEST_LABELS[test] for test in TESTS)
        + " | attribution precision@3, by text | by watermark | both combined "
        "| closed, open p without the reference filter |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for point in report.dose_response():
        if point.watermarked_pairs:
            cells = [_p(point.p[test]) for test in TESTS]
        else:  # the clean students: median, and the smallest any of them got
            cells = [f"median {_p(point.p[test])}, min {_p(point.min_p[test])}" for test in TESTS]
            cells[0] += f" ({clean} students)"
        precision = " | ".join(
            _share(value)
            for value in (
                point.precision_at_3,
                point.watermark_precision_at_3,
                point.combined_precision_at_3,
            )
        )
        unreferenced = ", ".join(_p(p) for p in point.unreferenced_p)
        if not point.watermarked_pairs:
            unreferenced = f"medians {unreferenced}"
        lines.append(
            f"| {point.fraction:.0%} | {point.watermarked_pairs} | {' | '.join(cells)} "
            f"| {precision} | {unreferenced} |"
        )
    return "\n".join(lines)


def _summary(report: ExperimentReport) -> list[str]:
    """What the experiment trained, and the false accusations it measured."""
    config = report.config
    fa = report.false_accusations()
    if not fa["clean_students"]:
        accusations = "No clean students in this run: no false-accusation figures."
    else:
        accusations = (
            f"False accusations (p < {fa['alpha']}) among {fa['clean_students']} students never "
            f"trained on watermarked text (each its own draw of plain answers): "
            f"{fa['false_accusations']}/{fa['tests']} tests, {fa['students_accused']} students "
            f"(smallest p {fa['min_p_value']:.3f}; rate at most {fa['rate_upper_95']:.1%}, "
            f"one-sided 95 %); each student's {len(TESTS)} tests combined (Bonferroni, as a "
            f"report combines a suspect's): {fa['students_accused_combined']}/"
            f"{fa['clean_students']} students; under {config.null_keys} other keys each: "
            f"{fa['other_key_false_accusations']}/{fa['other_key_tests']}. Without the reference "
            f"filter (the teacher's own unwatermarked windows scored too): "
            f"{fa['unreferenced_false_accusations']}/{fa['unreferenced_tests']} tests (closed "
            f"and served answers), closed-test median p "
            f"{fa['unreferenced_closed_median_p']:.2f}. Without the open test's copyable-window "
            f"filter: {fa['unfiltered_open_false_accusations']}/{fa['clean_students']} clean "
            f"students accused. Attribution by watermark of the clean students (asked the "
            f"prompts of the {CLEAN_ATTRIBUTION_SHARE:.0%} harvest's log, which they never "
            f"saw): {fa['watermark_false_attributions']}/{fa['watermark_attributions']} named an "
            f"account at Bonferroni-adjusted p < {fa['alpha']} (smallest "
            f"{fa['watermark_attribution_min_p']:.2g})."
        )
    by_text = (
        "by text, the student's answers to every logged prompt matched against the logged responses"
        if config.text_attribution
        else "by text: not run (--no-text-attribution)"
    )
    return [
        f"Students ({config.student.label}, {config.epochs} epochs, "
        f"{PRECISION_LABELS.get(config.precision, config.precision)}) trained on "
        f"{config.training_pairs} teacher answers ({config.max_tokens} tokens max); watermark "
        f"{report.key_id}. Closed test: the student's answers to the harvesters' prompts (a "
        f"clean student: to its own training prompts). Open tests: its predictions fed the "
        f"answers served to the harvesters (a clean student: all {config.training_pairs} "
        f"watermarked answers to the attacker's prompts), and fed {config.benign_answers} "
        f"watermarked answers to benign accounts that no student trained on. Attribution log: "
        f"{config.harvesters} harvesting accounts among {config.benign_accounts} benign ones; "
        f"{by_text}; by watermark, every account ranked by how much greener the student answers "
        f"its prompts than the other accounts'.",
        "",
        accusations,
    ]


def markdown(report: ExperimentReport) -> str:
    """The whole report: summary, dose-response, then every student."""
    summary = _summary(report)
    lines = [
        summary[0],
        "",
        dose_table(report),
        "",
        *summary[2:],
        "",
        "| watermarked share | seed | watermarked pairs | closed-model p (windows) "
        "| open-model p, served answers (windows) | open-model p, unseen answers (windows) "
        "| closed, open p without the reference filter "
        "| attribution top 3 by text | precision@3 | top 3 by watermark (the first's adjusted p) "
        "| precision@3 | top 3 both combined (the first's combined p) | precision@3 "
        "| seconds (train + tests) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in report.students:
        lines.append(
            f"| {s.fraction:.0%} | {s.seed} | {s.watermarked_pairs} "
            f"| {s.closed.p_value:.1e} ({s.closed.score.scored}) "
            f"| {s.open.p_value:.1e} ({s.open.score.scored}) "
            f"| {s.unseen.p_value:.1e} ({s.unseen.score.scored}) "
            f"| {s.unreferenced_p[0]:.1e}, {s.unreferenced_p[1]:.1e} "
            f"| {', '.join(s.top_accounts)} | {_share(s.precision_at_3)} "
            f"| {', '.join(s.watermark_top_accounts)} "
            f"({', '.join(_p(p) for p in s.watermark_p_adjusted[:1])}) "
            f"| {_share(s.watermark_precision_at_3)} "
            f"| {', '.join(s.combined_top_accounts)} "
            f"({', '.join(_p(p) for p in s.combined_p_adjusted[:1])}) "
            f"| {_share(s.combined_precision_at_3)} "
            f"| {s.train_seconds:.0f} + {s.test_seconds:.0f} |"
        )
    lines += ["", f"Time: {report.seconds}"]
    return "\n".join(lines)


def plot(report: ExperimentReport, path: Path) -> Path:
    """The dose-response curve as a PNG: -log10 p of each test against the watermarked share
    (clean students as dots at 0 %), with the accusation threshold and the 1e-6 target."""
    import math

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure  # no pyplot: no global figure registry to leak

    def height(p: float) -> float:
        return -math.log10(max(p, 1e-300))

    points = report.dose_response()
    shares = [f"{p.fraction:.0%}" for p in points]
    figure = Figure(figsize=(8, 4.5))
    axis = figure.subplots()
    for test in TESTS:
        values = [point.p[test] for point in points]
        axis.plot(shares, [height(v) for v in values], marker="o", label=TEST_LABELS[test])
    clean = report.clean()
    if clean:
        dots = [height(p) for s in clean for p in s.p_values().values()]
        axis.scatter(
            [shares[0]] * len(dots),
            dots,
            s=12,
            color="grey",
            alpha=0.6,
            label=f"{len(clean)} clean students (every test)",
        )
    axis.axhline(
        height(FALSE_ACCUSATION_ALPHA),
        color="red",
        ls="--",
        lw=1,
        label=f"accusation threshold p = {FALSE_ACCUSATION_ALPHA}",
    )
    axis.axhline(6, color="green", ls=":", lw=1, label="target p = 1e-6")
    axis.set_xlabel("watermarked share of the training answers (0 %: the clean students' median)")
    axis.set_ylabel("-log10 p (radioactivity test)")
    axis.set_title(
        f"Radioactivity dose-response: {report.config.student.label}, "
        f"{report.config.training_pairs} answers"
    )
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    return path


def write_results(report: ExperimentReport, path: Path) -> Path:
    """The table the README quotes (`bench/results/provenance.md`: summary, dose-response,
    false accusations; every student is in experiment.md), headed by how it was measured, and
    the dose-response plot next to it (`provenance.png`)."""
    from students.measured import duration, measured_by, write_table

    phases = ", ".join(f"{phase} {duration(s)}" for phase, s in report.seconds.items())
    summary = _summary(report)
    table = "\n".join([summary[0], "", dose_table(report), "", *summary[2:]])
    written = write_table(
        path, table, measured_by(seconds=sum(report.seconds.values()), note=phases)
    )
    plot(report, path.with_suffix(".png"))
    return written
