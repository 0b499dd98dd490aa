"""`distillguard provenance experiment`: does the watermark survive real distillation, and does
fingerprint attribution name the accounts that harvested a suspect's training data?

Real parts only: the SmolLM2 teacher answers real prompts (ShareGPT) with and without the
watermark; real students (students/distill.py, students/pruned.py) are trained on answer sets of
which a share (0, 1, 2, 5, 10, 20, 50, 100 % by default: the dose-response curve) came
watermarked from our API, the rest from the same teacher unwatermarked (standing in for any other
source). Per student:

* closed-model test: the student answers the prompts the harvesting accounts sent (every
  training prompt for a clean student) and its answers are scored;
* open-model test: the student reads watermarked answers it never trained on (benign accounts'
  logged responses) and its next-token predictions are scored;
* attribution: the harvesting accounts' requests and hundreds of benign accounts' requests go
  through the DistillGuard pipeline into a store (response fingerprints at ingest); the student
  answers every logged prompt; `attribute` ranks accounts.

Both tests leave out the windows of a reference: the teacher's own answers to the attacker's
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

import random
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from statistics import median

import orjson

from core.settings import Settings
from provenance.chat import Pair, answer
from provenance.error_rates import FALSE_ACCUSATION_ALPHA, save_error_rates
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
    score_windows,
    text_windows,
)
from students.distill import train_student
from students.prompts import attack_pool, benign_conversations
from students.pruned import StudentSpec
from students.teacher import MODEL_NAME, GenerationSettings, Teacher, watermarked

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
# 7.3k kept tokens, one thread; the machine was shared, so wall time was up to 4x these):
# - a teacher answer of 48 tokens in batches of 32: 1.0 s (the 64-pair run's 656 answers, 11 min);
# - a pair-epoch: scratch student with a trimmed vocabulary, 0.023 s (one epoch over 640 pairs,
#   its encoding and trimming included: 14.8 s); pruned teacher (every 6th block) ~1 s
#   (bench/results/students.md);
# - a student's 48-token greedy answer, batches of 32: scratch 0.042 s (640 in 26.7 s); pruned
#   ~0.3 s (estimated from its size, not measured);
# - the open test's forward pass over one fed answer: scratch 0.046 s (400 in 18.5 s); pruned
#   ~0.3 s (estimated);
# - one key's tests (closed + open windows; ~3.4k distinct contexts, a green list each): 6 s;
# - one attribution (ingest up to ~1k events into the embedded store, `attribute`): ~10 s.
TEACHER_ANSWER_S = 1.0
PAIR_EPOCH_S = {"scratch": 0.023, "pruned": 1.0}
STUDENT_ANSWER_S = {"scratch": 0.042, "pruned": 0.3}
OPEN_TEXT_S = {"scratch": 0.046, "pruned": 0.3}
KEY_TESTS_S = 6.0
ATTRIBUTION_S = 10.0
BENCH_BUDGET_S = 2 * 3600  # `make bench` runs FULL: it must fit in 2 h on 2 CPU cores


def estimate(config: ExperimentConfig) -> dict[str, float]:
    """Expected seconds per phase on the 2-core VM (CPU): teacher answers (a cold cache; a warm
    one makes this ~0), students' training, students' tests."""
    kind = config.student.kind
    answers = config.pool_size + 2 * config.training_pairs + config.benign_answers
    teacher = answers * TEACHER_ANSWER_S * config.max_tokens / 48
    students = len(config.fractions) + config.clean_seeds
    training = students * config.training_pairs * config.epochs * PAIR_EPOCH_S[kind]
    per_answer = STUDENT_ANSWER_S[kind] * config.max_tokens / 48
    opened = config.benign_answers * OPEN_TEXT_S[kind]
    clean = config.clean_seeds * (
        config.training_pairs * per_answer + opened + (1 + config.null_keys) * KEY_TESTS_S
    )
    marked = sum(
        (2 * config.watermarked_pairs(f) + config.benign_answers) * per_answer
        + opened
        + KEY_TESTS_S
        + ATTRIBUTION_S
        for f in config.fractions
    )
    return {
        "teacher": round(teacher),
        "training": round(training),
        "tests": round(clean + marked),
        "total": round(teacher + training + clean + marked),
    }


# 27 students (7 shares + 20 clean) on 640 answers, 6 epochs: 480 steps each, as many as the
# earlier 64-pair run's 60 epochs gave (the step count is what teaches a student the watermark).
# 5 % is 32 watermarked answers. `estimate(FULL)`: teacher 44 min (cold cache; 640 of its answers
# are the reference draw), training 40 min, tests 35 min; 1 h 59 min cold, 1 h 15 min with the
# teacher's answers cached. The scratch student:
# the pruned teacher costs ~40x more per pair-epoch on CPU (27 of them: ~32 h); `--student pruned
# --device cuda` takes it on a GPU machine.
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
)
QUICK = ExperimentConfig(16, 32, 20, 2, (1.0,), 2, 5, 150)


@dataclass
class StudentResult:
    fraction: float
    seed: int
    watermarked_pairs: int
    closed: RadioactivityResult
    open: RadioactivityResult
    open_unfiltered_p: float  # the same predictions without the copyable-window filter
    unreferenced_p: tuple[float, float]  # (closed, open) p without the reference filter
    null_p_values: list[float] = field(default_factory=list)  # clean students, other keys
    top_accounts: list[str] = field(default_factory=list)
    precision_at_3: float | None = None
    train_seconds: float = 0.0
    test_seconds: float = 0.0  # its answers, the open test, other keys and attribution


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
        tests = [p for s in clean for p in (s.closed.p_value, s.open.p_value)]
        accused = sum(p < FALSE_ACCUSATION_ALPHA for p in tests)
        return {
            "alpha": FALSE_ACCUSATION_ALPHA,
            "clean_students": len(clean),
            "tests": len(tests),
            "false_accusations": accused,
            "rate_upper_95": upper_95(accused, len(tests)),
            "students_accused": sum(
                min(s.closed.p_value, s.open.p_value) < FALSE_ACCUSATION_ALPHA for s in clean
            ),
            "min_p_value": min(tests, default=1.0),
            "other_key_tests": len(keys),
            "other_key_false_accusations": sum(p < FALSE_ACCUSATION_ALPHA for p in keys),
            "unfiltered_open_false_accusations": sum(
                s.open_unfiltered_p < FALSE_ACCUSATION_ALPHA for s in clean
            ),
            "unreferenced_false_accusations": sum(
                p < FALSE_ACCUSATION_ALPHA for s in clean for p in s.unreferenced_p
            ),
            "unreferenced_closed_median_p": median(s.unreferenced_p[0] for s in clean)
            if clean
            else 1.0,
        }

    def dose_response(self) -> list[DosePoint]:
        """p-values against the watermarked share: the clean students (their median, and the
        smallest p of any) at 0, then one student per share."""
        points = []
        clean = self.clean()
        if clean:
            closed = [s.closed.p_value for s in clean]
            opened = [s.open.p_value for s in clean]
            unreferenced = (
                median(s.unreferenced_p[0] for s in clean),
                median(s.unreferenced_p[1] for s in clean),
            )
            points.append(
                DosePoint(
                    0.0,
                    0,
                    median(closed),
                    median(opened),
                    min(closed),
                    min(opened),
                    None,
                    unreferenced,
                )
            )
        for s in sorted(self.students, key=lambda s: s.fraction):
            if s.watermarked_pairs:
                p = (s.closed.p_value, s.open.p_value)
                points.append(
                    DosePoint(
                        s.fraction, s.watermarked_pairs, *p, *p, s.precision_at_3, s.unreferenced_p
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
    """One watermarked share: its students' p-values (at 0 %: the clean students' median and
    smallest), attribution precision@3 where a student was attributed, and the (closed, open)
    p-values without the reference filter (at 0 %: their medians)."""

    fraction: float
    watermarked_pairs: int
    closed_p: float
    open_p: float
    closed_min_p: float
    open_min_p: float
    precision_at_3: float | None
    unreferenced_p: tuple[float, float]


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
    """The provider's request log (JSONL events with responses) and the harvesting accounts."""
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
    return lines, harvesters


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
) -> ExperimentReport:
    """Run every student (results are rewritten after each, so a long run that stops keeps
    what it measured); with `calibrate`, save the false-accusation rate for reports."""
    clock = {"start": time.monotonic()}
    seconds: dict[str, float] = {}

    def lap(name: str) -> None:
        now = time.monotonic()
        seconds[name] = round(now - clock["start"], 1)
        clock["start"] = now

    key = WatermarkKey(f"distillguard-experiment-{config.seed}".encode())
    expected = estimate(config)
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
    plans += [(0.0, seed) for seed in range(config.clean_seeds)]
    out.mkdir(parents=True, exist_ok=True)
    store_folder = out / "store"
    shutil.rmtree(store_folder, ignore_errors=True)  # logs of an earlier run must not mix in
    students: list[StudentResult] = []
    with _student_threads(config):
        for fraction, seed in plans:
            students.append(
                _student(config, teacher, key, fraction, seed, data, settings, store_folder)
            )
            _write(ExperimentReport(config, key.key_id, students, seconds), out)
            result = students[-1]
            log(
                f"student {fraction:.0%} seed {seed}: closed p {result.closed.p_value:.2e}, "
                f"open p {result.open.p_value:.2e}, top {result.top_accounts} "
                f"({result.train_seconds:.0f} s training, {result.test_seconds:.0f} s tests)"
            )
    lap("students")
    report = ExperimentReport(config, key.key_id, students, seconds)
    _write(report, out)
    plot(report, out / "experiment.png")
    if calibrate:
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
    a second thread to pay (64 answers: 2.2 s on one thread, 7.6 s on two, 2 busy cores)."""
    import torch

    threads = torch.get_num_threads()
    if config.device == "cpu" and config.student.kind == "scratch":
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _student(
    config: ExperimentConfig,
    teacher: Teacher,
    key: WatermarkKey,
    fraction: float,
    seed: int,
    data: _Answers,
    settings: Settings,
    store_folder: Path,
) -> StudentResult:
    """Train one student on `fraction` watermarked answers (0: a clean draw) and test it."""
    from provenance.attribution import attribute
    from storage.embedded import EmbeddedClickHouse

    tokenizer = teacher.tokenizer
    greens = GreenList(key, len(tokenizer))
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
    )
    trained = time.monotonic()
    asked = [prompts[i] for i in sorted(harvested_ids)] if count else [p.prompt for p in pairs]
    outputs = answer(tokenizer, model, asked, config.max_tokens)
    closed_windows = text_windows(tokenizer, outputs, key.context_width)
    closed = scored("closed", len(outputs), greens, closed_windows, data.reference)
    found, skipped = open_model_windows(model, tokenizer, data.benign, key.context_width)
    opened = scored("open", len(data.benign), greens, found, data.reference, len(skipped))
    result = StudentResult(
        fraction,
        seed,
        count,
        closed,
        opened,
        score_windows(greens, without_reference(found + skipped, data.reference)[0]).p_value,
        (score_windows(greens, closed_windows).p_value, score_windows(greens, found).p_value),
    )
    if not count:
        kept = [without_reference(w, data.reference)[0] for w in (closed_windows, found)]
        for trial in range(config.null_keys):
            other = GreenList(
                WatermarkKey(f"null-key-{config.seed}-{trial}".encode()), len(tokenizer)
            )
            result.null_p_values += [score_windows(other, windows).p_value for windows in kept]
    else:
        harvested = [(prompts[i], data.marked[i]) for i in sorted(harvested_ids)]
        lines, harvesters = _log_events(harvested, data.benign, config)
        store = EmbeddedClickHouse(store_folder, database=f"provenance_{count}")
        try:
            store.migrate()
            _ingest(store, settings, lines)
            logged = [p for p, _ in harvested] + [p for p, _ in data.benign]
            suspect = answer(tokenizer, model, logged, config.max_tokens)
            ranking = attribute(store, suspect)
        finally:
            store.close()
        result.top_accounts = [a.account_id for a in ranking.accounts[:3]]
        result.precision_at_3 = len(set(result.top_accounts) & set(harvesters)) / 3
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


def dose_table(report: ExperimentReport) -> str:
    """p-value against the watermarked share (the README quotes it; the plot draws it)."""
    clean = len(report.clean())
    lines = [
        "| watermarked share | watermarked answers | closed-model p | open-model p "
        "| attribution precision@3 | closed, open p without the reference filter |",
        "|---|---|---|---|---|---|",
    ]
    for point in report.dose_response():
        if point.watermarked_pairs:
            closed, opened = _p(point.closed_p), _p(point.open_p)
        else:  # the clean students: median, and the smallest any of them got
            closed = f"median {_p(point.closed_p)}, min {_p(point.closed_min_p)} ({clean} students)"
            opened = f"median {_p(point.open_p)}, min {_p(point.open_min_p)}"
        precision = "" if point.precision_at_3 is None else f"{point.precision_at_3:.2f}"
        unreferenced = ", ".join(_p(p) for p in point.unreferenced_p)
        if not point.watermarked_pairs:
            unreferenced = f"medians {unreferenced}"
        lines.append(
            f"| {point.fraction:.0%} | {point.watermarked_pairs} | {closed} | {opened} "
            f"| {precision} | {unreferenced} |"
        )
    return "\n".join(lines)


def _summary(report: ExperimentReport) -> list[str]:
    """What the experiment trained, and the false accusations it measured."""
    config = report.config
    fa = report.false_accusations()
    return [
        f"Students ({config.student.label}, {config.epochs} epochs) trained on "
        f"{config.training_pairs} teacher answers ({config.max_tokens} tokens max); watermark "
        f"{report.key_id}; open test on {config.benign_answers} watermarked answers; attribution "
        f"log: {config.harvesters} harvesting accounts among {config.benign_accounts} benign ones.",
        "",
        f"False accusations (p < {fa['alpha']}) among {fa['clean_students']} students never "
        f"trained on watermarked text (each its own draw of plain answers): "
        f"{fa['false_accusations']}/{fa['tests']} tests, {fa['students_accused']} students "
        f"(smallest p {fa['min_p_value']:.3f}; rate at most {fa['rate_upper_95']:.1%}, one-sided "
        f"95 %); under {config.null_keys} other keys each: "
        f"{fa['other_key_false_accusations']}/{fa['other_key_tests']}. Without the reference "
        f"filter (the teacher's own unwatermarked windows scored too): "
        f"{fa['unreferenced_false_accusations']}/{fa['tests']} tests, closed-test median p "
        f"{fa['unreferenced_closed_median_p']:.2f}. Without the open test's copyable-window "
        f"filter: {fa['unfiltered_open_false_accusations']}/{fa['clean_students']} clean students "
        f"accused.",
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
        "| open-model p (windows) | closed, open p without the reference filter "
        "| attribution top 3 | precision@3 | seconds (train + tests) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in report.students:
        precision = "" if s.precision_at_3 is None else f"{s.precision_at_3:.2f}"
        lines.append(
            f"| {s.fraction:.0%} | {s.seed} | {s.watermarked_pairs} "
            f"| {s.closed.p_value:.1e} ({s.closed.score.scored}) "
            f"| {s.open.p_value:.1e} ({s.open.score.scored}) "
            f"| {s.unreferenced_p[0]:.1e}, {s.unreferenced_p[1]:.1e} "
            f"| {', '.join(s.top_accounts)} | {precision} "
            f"| {s.train_seconds:.0f} + {s.test_seconds:.0f} |"
        )
    lines += ["", f"Time: {report.seconds}"]
    return "\n".join(lines)


def plot(report: ExperimentReport, path: Path) -> Path:
    """The dose-response curve as a PNG: -log10 p of both tests against the watermarked share
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
    for name, values in (
        ("closed model", [p.closed_p for p in points]),
        ("open model", [p.open_p for p in points]),
    ):
        axis.plot(shares, [height(v) for v in values], marker="o", label=name)
    clean = report.clean()
    if clean:
        dots = [height(p) for s in clean for p in (s.closed.p_value, s.open.p_value)]
        axis.scatter(
            [shares[0]] * len(dots),
            dots,
            s=12,
            color="grey",
            alpha=0.6,
            label=f"{len(clean)} clean students (both tests)",
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
