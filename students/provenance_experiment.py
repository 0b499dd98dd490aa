"""`distillguard provenance experiment`: does the watermark survive real distillation, and does
fingerprint attribution name the accounts that harvested a suspect's training data?

Real parts only: the SmolLM2 teacher answers real prompts (ShareGPT) with and without the
watermark; real students (students/distill.py) are trained on answer sets of which 0, 1, 5, 10
or 100 % came watermarked from our API, the rest from the same teacher unwatermarked (standing in
for any other source). Per student:

* closed-model test: the student answers the prompts the harvesting accounts sent (every
  training prompt for a clean student) and its answers are scored;
* open-model test: the student reads watermarked answers it never trained on (benign accounts'
  logged responses) and its next-token predictions are scored;
* attribution: the harvesting accounts' requests and hundreds of benign accounts' requests go
  through the DistillGuard pipeline into a store (response fingerprints at ingest); the student
  answers every logged prompt; `attribute` ranks accounts.

Clean students (never trained on watermarked text) give the false-accusation rate: the share of
them with p < 0.01, over `clean_seeds` seeds, and over `null_keys` further keys each.

Students train with a trimmed vocabulary (students/vocabulary.py): their softmax covers the
tokens of their own training set, several times cheaper per step than all 49k, and they still
answer and predict in the teacher's token ids. A clean student's vocabulary comes from plain
answers alone, so it cannot carry the key.
"""

from __future__ import annotations

import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import orjson

from core.settings import Settings
from provenance.chat import Pair, answer
from provenance.error_rates import FALSE_ACCUSATION_ALPHA, save_error_rates
from provenance.radioactivity import RadioactivityResult, closed_model_test, open_model_windows
from provenance.watermark import (
    GreenList,
    WatermarkKey,
    score_windows,
    text_windows,
)
from students.distill import teacher_embeddings, train_student
from students.prompts import attack_pool, benign_conversations
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
    epochs: int  # attackers train small harvests to convergence: the student memorises
    clean_pool: int = 3  # clean students draw training prompts from this many times as many
    harvesters: int = 3
    temperature: float = 0.7
    seed: int = 0


# 24 students x 480 training steps: ~2 h on 2 CPU cores (teacher answers: 11 min, cached after once)
FULL = ExperimentConfig(64, 48, 200, 2, (0.01, 0.05, 0.10, 1.0), 20, 10, 60)
QUICK = ExperimentConfig(16, 32, 20, 2, (1.0,), 2, 5, 150)


@dataclass
class StudentResult:
    fraction: float
    seed: int
    watermarked_pairs: int
    closed: RadioactivityResult
    open: RadioactivityResult
    open_unfiltered_p: float  # the same predictions without the copyable-window filter
    null_p_values: list[float] = field(default_factory=list)  # clean students, other keys
    top_accounts: list[str] = field(default_factory=list)
    precision_at_3: float | None = None


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
        return {
            "alpha": FALSE_ACCUSATION_ALPHA,
            "clean_students": len(clean),
            "tests": len(tests),
            "false_accusations": sum(p < FALSE_ACCUSATION_ALPHA for p in tests),
            "min_p_value": min(tests, default=1.0),
            "other_key_tests": len(keys),
            "other_key_false_accusations": sum(p < FALSE_ACCUSATION_ALPHA for p in keys),
            "unfiltered_open_false_accusations": sum(
                s.open_unfiltered_p < FALSE_ACCUSATION_ALPHA for s in clean
            ),
        }

    def to_dict(self) -> dict:
        return {**asdict(self), "false_accusation": self.false_accusations()}


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
    from provenance.attribution import attribute
    from storage.embedded import EmbeddedClickHouse

    clock = {"start": time.monotonic()}
    seconds: dict[str, float] = {}

    def lap(name: str) -> None:
        now = time.monotonic()
        seconds[name] = round(now - clock["start"], 1)
        clock["start"] = now

    key = WatermarkKey(f"distillguard-experiment-{config.seed}".encode())
    teacher = Teacher(settings.data_dir / "teacher")
    tokenizer = teacher.tokenizer
    greens = GreenList(key, len(tokenizer))
    marked = watermarked(teacher, key)
    generation = GenerationSettings(
        temperature=config.temperature, max_tokens=config.max_tokens, seed=config.seed
    )
    # one generator per draw, so changing one size leaves the other draws (and caches) alone.
    # The first `training_pairs` prompts are the attacker's; clean students draw theirs from all
    # of them, so that they are not all copies of one chance draw of plain answers.
    pool = random.Random(config.seed).sample(
        list(attack_pool(PROMPT_CHARS)), config.training_pairs * config.clean_pool
    )
    prompts = pool[: config.training_pairs]
    benign_prompts = _benign_prompts(
        config.benign_accounts * config.benign_requests, random.Random(config.seed + 1)
    )
    log(
        f"teacher answers: {len(pool)} plain, {len(prompts)} watermarked, "
        f"{len(benign_prompts)} benign"
    )
    plain_pool = _teacher_answers(teacher, pool, generation, log)
    plain = plain_pool[: config.training_pairs]
    marked_answers = _teacher_answers(marked, prompts, generation, log)
    benign = list(
        zip(benign_prompts, _teacher_answers(marked, benign_prompts, generation, log), strict=True)
    )
    lap("teacher")
    base = teacher_embeddings(teacher.model)
    order = list(range(config.training_pairs))
    random.Random(config.seed + 2).shuffle(order)

    # the watermarked students first: the answer to "is it radioactive?" arrives early
    plans = [(fraction, 0) for fraction in config.fractions]
    plans += [(0.0, seed) for seed in range(config.clean_seeds)]
    out.mkdir(parents=True, exist_ok=True)
    store_folder = out / "store"
    shutil.rmtree(store_folder, ignore_errors=True)  # logs of an earlier run must not mix in
    students: list[StudentResult] = []
    for fraction, seed in plans:
        count = max(1, round(fraction * config.training_pairs)) if fraction else 0
        harvested_ids = set(order[:count])
        if count:
            pairs = [
                Pair(p, marked_answers[i] if i in harvested_ids else plain[i])
                for i, p in enumerate(prompts)
            ]
        else:
            drawn = random.Random(config.seed + 100 + seed).sample(
                range(len(pool)), config.training_pairs
            )
            pairs = [Pair(pool[i], plain_pool[i]) for i in drawn]
        model = train_student(
            tokenizer, pairs, config.epochs, seed=seed, base_embeddings=base, trim_vocabulary=True
        )
        asked = [prompts[i] for i in sorted(harvested_ids)] if count else [p.prompt for p in pairs]
        outputs = answer(tokenizer, model, asked, config.max_tokens)
        closed = closed_model_test(greens, tokenizer, outputs)
        kept, skipped = open_model_windows(model, tokenizer, benign, key.context_width)
        opened = RadioactivityResult("open", len(benign), score_windows(greens, kept), len(skipped))
        result = StudentResult(
            fraction,
            seed,
            count,
            closed,
            opened,
            score_windows(greens, kept + skipped).p_value,
        )
        if not count:
            closed_windows = text_windows(tokenizer, outputs, key.context_width)
            for trial in range(config.null_keys):
                other = GreenList(
                    WatermarkKey(f"null-key-{config.seed}-{trial}".encode()), len(tokenizer)
                )
                result.null_p_values += [
                    score_windows(other, closed_windows).p_value,
                    score_windows(other, kept).p_value,
                ]
        else:
            harvested = [(prompts[i], marked_answers[i]) for i in sorted(harvested_ids)]
            lines, harvesters = _log_events(harvested, benign, config)
            store = EmbeddedClickHouse(store_folder, database=f"provenance_{count}")
            try:
                store.migrate()
                _ingest(store, settings, lines)
                logged = [p for p, _ in harvested] + [p for p, _ in benign]
                suspect = answer(tokenizer, model, logged, config.max_tokens)
                ranking = attribute(store, suspect)
            finally:
                store.close()
            result.top_accounts = [a.account_id for a in ranking.accounts[:3]]
            result.precision_at_3 = len(set(result.top_accounts) & set(harvesters)) / 3
        students.append(result)
        _write(ExperimentReport(config, key.key_id, students, seconds), out)
        log(
            f"student {fraction:.0%} seed {seed}: closed p {closed.p_value:.2e}, "
            f"open p {opened.p_value:.2e}, top {result.top_accounts}"
        )
    lap("students")
    report = ExperimentReport(config, key.key_id, students, seconds)
    _write(report, out)
    if calibrate:
        save_calibration(settings, report)
    return report


def _write(report: ExperimentReport, out: Path) -> None:
    (out / "experiment.json").write_bytes(
        orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)
    )
    (out / "experiment.md").write_text(markdown(report))


def save_calibration(settings: Settings, report: ExperimentReport) -> Path:
    """The measured false-accusation rate, for the forensic report's provenance section."""
    return save_error_rates(settings.data_dir, report.false_accusations(), report.key_id)


def markdown(report: ExperimentReport) -> str:
    """The table the closing note and README quote."""
    config = report.config
    lines = [
        f"Students trained on {config.training_pairs} teacher answers ({config.max_tokens} "
        f"tokens max); watermark {report.key_id}; attribution log: {config.harvesters} "
        f"harvesting accounts among {config.benign_accounts} benign ones.",
        "",
        "| watermarked share | seed | watermarked pairs | closed-model p (windows) "
        "| open-model p (windows) | attribution top 3 | precision@3 |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in report.students:
        precision = "" if s.precision_at_3 is None else f"{s.precision_at_3:.2f}"
        lines.append(
            f"| {s.fraction:.0%} | {s.seed} | {s.watermarked_pairs} "
            f"| {s.closed.p_value:.1e} ({s.closed.score.scored}) "
            f"| {s.open.p_value:.1e} ({s.open.score.scored}) "
            f"| {', '.join(s.top_accounts)} | {precision} |"
        )
    fa = report.false_accusations()
    lines += [
        "",
        f"False accusations (p < {fa['alpha']}) among {fa['clean_students']} students never "
        f"trained on watermarked text: {fa['false_accusations']}/{fa['tests']} tests "
        f"(smallest p {fa['min_p_value']:.3f}); under {config.null_keys} other keys each: "
        f"{fa['other_key_false_accusations']}/{fa['other_key_tests']}. Without the open test's "
        f"copyable-window filter: {fa['unfiltered_open_false_accusations']}/"
        f"{fa['clean_students']} clean students accused.",
        "",
        f"Time: {report.seconds}",
    ]
    return "\n".join(lines)


def write_results(report: ExperimentReport, path: Path) -> Path:
    """The table the README quotes (`bench/results/provenance.md`), headed by how it was
    measured; the time of each phase goes to the header."""
    from students.measured import duration, measured_by, write_table

    phases = ", ".join(f"{phase} {duration(s)}" for phase, s in report.seconds.items())
    table = markdown(report).rsplit("\n\nTime:", 1)[0]
    return write_table(path, table, measured_by(seconds=sum(report.seconds.values()), note=phases))
