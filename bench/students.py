"""Student learning curves: fidelity to the teacher against harvested pairs, with seed noise.

    python -m bench.students [--quick] [--kinds pruned,scratch] [--every 6] [--hidden 128]
                             [--layers 2] [--sizes 0,64,128,256,512] [--seeds 3]

The question `distillguard validate` asks ("how much capability leaked before the first flag?")
only has an answer if a student keeps learning as its harvest grows. For each student kind
(`students.pruned.StudentSpec`), each seed draws its own order of the harvested pool and trains
a fresh student on the first n pairs (one epoch, so more pairs is also more steps, as for an
attacker), then measures it on held-out prompts (`students.distill.measure_fidelity`:
teacher-forced next-token agreement, ROUGE-L of greedy answers, held-out loss). The table gives
mean ± std and min–max over seeds, and says whether the gain from 64 to the largest harvest
exceeds the seed-to-seed noise.

Pairs are SmolLM2-135M-Instruct's greedy answers to attack-pool prompts, cached by the teacher's
response cache (`<data_dir>/teacher/responses-*.sqlite`), so a rerun generates nothing. The
table goes to `bench/results/students.md` (`--quick`: a few pairs, one seed, under a minute; its
table goes to `--out` only).
"""

from __future__ import annotations

import os
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from bench.readme import result_path
from core.settings import get_settings
from students.distill import Fidelity, Pair, measure_fidelity, train_student
from students.measured import measured_by, write_table
from students.pruned import StudentSpec
from students.teacher import GenerationSettings, Teacher
from students.workers import end_with_parent

PROMPT_CHARS = 500  # short prompts: the student reads the last 64 tokens anyway


@dataclass(frozen=True)
class CurveConfig:
    sizes: tuple[int, ...] = (0, 64, 128, 256, 512)
    seeds: int = 3
    held_out: int = 32
    max_tokens: int = 24
    batch_size: int = 8  # every size a multiple of it: snapshots are taken between steps


QUICK = CurveConfig(sizes=(0, 8), seeds=1, held_out=4, max_tokens=12, batch_size=2)


@dataclass
class Point:
    """One trained (or untrained) student, measured."""

    kind: str
    parameters: int
    seed: int
    pairs: int
    seconds: float
    fidelity: Fidelity


def harvest(teacher: Teacher, config: CurveConfig, log: Callable[[str], None] = print):
    """(training pool, held-out pairs): the teacher's greedy answers to distinct attack-pool
    prompts, the held-out ones from the far end of the pool (as `distillguard validate` does)."""
    from students.prompts import attack_pool

    prompts = attack_pool(PROMPT_CHARS)
    wanted = max(config.sizes)
    every_prompt = [*prompts[:wanted], *list(reversed(prompts))[: config.held_out]]
    settings = GenerationSettings(temperature=0.0, max_tokens=config.max_tokens)
    pairs: list[Pair] = []
    started = time.perf_counter()
    for start in range(0, wanted + config.held_out, 16):
        chunk = every_prompt[start : start + 16]
        answers = teacher.complete([[{"role": "user", "content": p}] for p in chunk], settings)
        pairs += [Pair(p, a[0].text) for p, a in zip(chunk, answers, strict=True)]
    log(f"harvest: {len(pairs)} pairs in {time.perf_counter() - started:.0f} s")
    return pairs[:wanted], pairs[wanted:]


def curve(
    teacher: Teacher,
    spec: StudentSpec,
    seed: int,
    pairs: tuple[list[Pair], list[Pair]],
    config: CurveConfig,
    log: Callable[[str], None] = print,
) -> list[Point]:
    """One kind, one seed: students trained for one epoch on n pairs drawn by the seed, for
    each n in `config.sizes`, measured on the held-out pairs. One run over the largest draw
    gives them all: at a constant rate, its snapshot after n pairs is the student trained on
    those n pairs alone, in that order (`train_student(constant_rate=True)`)."""
    pool, held_out = pairs
    if any(size % config.batch_size for size in config.sizes):
        raise ValueError("every harvest size must be a multiple of the batch size")
    order = list(range(len(pool)))
    random.Random(seed).shuffle(order)
    model = spec.build(teacher.tokenizer, teacher.model, seed)
    parameters = sum(p.numel() for p in model.parameters())
    points: list[Point] = []
    started = time.perf_counter()
    measuring = 0.0

    def measure(student: Any, seen: int) -> None:
        nonlocal measuring
        if seen not in config.sizes:
            return
        began = time.perf_counter()
        student.eval()
        fidelity = measure_fidelity(teacher.tokenizer, student, held_out, seen, config.max_tokens)
        student.train()
        seconds = began - started - measuring  # training time alone
        measuring += time.perf_counter() - began
        points.append(Point(spec.label, parameters, seed, seen, seconds, fidelity))
        log(
            f"{spec.label} seed {seed} pairs {seen}: agreement "
            f"{fidelity.next_token_agreement:.3f} rouge-L {fidelity.rouge_l:.3f} "
            f"loss {fidelity.loss:.2f} ({seconds:.0f} s)"
        )

    measure(model, 0)
    train_student(
        teacher.tokenizer,
        [pool[i] for i in order[: max(config.sizes)]],
        epochs=1,
        batch_size=config.batch_size,
        learning_rate=spec.rate,
        seed=seed,
        model=model,
        constant_rate=True,
        after_step=measure,
    )
    return points


_worker_teacher: Teacher | None = None


def _load_teacher(parent: int, cache_dir: Path) -> None:
    global _worker_teacher
    end_with_parent(parent)
    _worker_teacher = Teacher(cache_dir, threads=1)


def _curve_in_worker(task: tuple[StudentSpec, int, Any, CurveConfig]) -> list[Point]:
    assert _worker_teacher is not None
    spec, seed, pairs, config = task
    return curve(_worker_teacher, spec, seed, pairs, config, lambda line: print(line, flush=True))


def run_curves(
    teacher: Teacher,
    specs: Sequence[StudentSpec],
    config: CurveConfig,
    log: Callable[[str], None] = print,
    jobs: int = 1,
    progress: Callable[[list[Point]], None] = lambda _: None,
) -> list[Point]:
    """Every spec × seed × harvest size, seed by seed. With `jobs` > 1 the (spec, seed) curves
    run in that many worker processes of one thread each (each loads its own teacher, ~1.5 GB).
    `progress` gets the points so far after each curve, so a long run leaves a partial table."""
    pairs = harvest(teacher, config, log)
    tasks = [(spec, seed, pairs, config) for seed in range(config.seeds) for spec in specs]
    done: dict[int, list[Point]] = {}

    def finished(index: int, points: list[Point]) -> list[Point]:
        done[index] = points
        ordered = [point for key in sorted(done) for point in done[key]]
        progress(ordered)
        return ordered

    ordered: list[Point] = []
    if jobs <= 1:
        for index, (spec, seed, _, _) in enumerate(tasks):
            ordered = finished(index, curve(teacher, spec, seed, pairs, config, log))
        return ordered
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with ProcessPoolExecutor(
        jobs,
        mp_context=multiprocessing.get_context("spawn"),  # no fork of a threaded torch
        initializer=_load_teacher,
        initargs=(os.getpid(), teacher.cache_dir),
    ) as pool:
        futures = {pool.submit(_curve_in_worker, task): i for i, task in enumerate(tasks)}
        for future in as_completed(futures):
            ordered = finished(futures[future], future.result())
    return ordered


def _band(values: Sequence[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {spread:.3f} ({min(values):.3f}–{max(values):.3f})"


def verdicts(points: Sequence[Point]) -> dict[str, tuple[float, float, bool | None]]:
    """Per kind: (mean agreement gain from the smallest non-zero harvest to the largest, the
    larger of the two sizes' seed std, whether the gain exceeds twice that noise: None with
    one seed, which has no noise estimate)."""
    out = {}
    for kind in dict.fromkeys(p.kind for p in points):
        sizes = sorted({p.pairs for p in points if p.kind == kind and p.pairs})
        if len(sizes) < 2:
            continue
        ends = [
            [p.fidelity.next_token_agreement for p in points if p.kind == kind and p.pairs == n]
            for n in (sizes[0], sizes[-1])
        ]
        gain = statistics.mean(ends[1]) - statistics.mean(ends[0])
        noise = max(statistics.stdev(e) if len(e) > 1 else 0.0 for e in ends)
        out[kind] = (gain, noise, gain > 2 * noise if min(map(len, ends)) > 1 else None)
    return out


VERDICT = {
    True: "rises beyond the noise (gain > 2 std)",
    False: "within the noise",
    None: "one seed, no noise estimate",
}


def markdown(points: Sequence[Point], seeds: int) -> str:
    lines = [
        "# Student learning curves",
        "",
        f"Fidelity on held-out prompts, mean ± std (min–max) over {seeds} seed(s) (each seed: "
        "its own draw and order of the harvested pairs, its own initialisation for scratch "
        "students); one epoch; seconds = training wall time of one student.",
        "",
        "| kind | parameters | pairs | next-token agreement | ROUGE-L | held-out loss | "
        "seconds | s/pair |",
        "|---|---|---|---|---|---|---|---|",
    ]
    groups: dict[tuple[str, int], list[Point]] = {}
    for point in points:
        groups.setdefault((point.kind, point.pairs), []).append(point)
    for (kind, pairs), group in groups.items():
        seconds = statistics.mean(p.seconds for p in group)
        lines.append(
            f"| {kind} | {group[0].parameters / 1e6:.1f}M | {pairs} | "
            f"{_band([p.fidelity.next_token_agreement for p in group])} | "
            f"{_band([p.fidelity.rouge_l for p in group])} | "
            f"{statistics.mean(p.fidelity.loss for p in group):.2f} | {seconds:.0f} | "
            f"{seconds / pairs if pairs else 0:.2f} |"
        )
    lines.append("")
    for kind, (gain, noise, met) in verdicts(points).items():
        lines.append(
            f"- {kind}: agreement gain from the smallest to the largest harvest "
            f"{gain:+.3f}, seed std {noise:.3f}: "
            f"{VERDICT[met]}."
        )
    return "\n".join(lines) + "\n"


def main(
    quick: Annotated[bool, typer.Option(help="8 pairs, 1 seed, 12-token answers.")] = False,
    kinds: Annotated[str, typer.Option(help="Comma-separated: pruned, scratch.")] = (
        "pruned,scratch"
    ),
    every: Annotated[int, typer.Option(help="Pruned student: keep every k-th block.")] = 6,
    hidden: Annotated[int, typer.Option(help="Scratch student: width.")] = 128,
    layers: Annotated[int, typer.Option(help="Scratch student: blocks.")] = 2,
    sizes: Annotated[str, typer.Option(help="Comma-separated harvest sizes.")] = "",
    seeds: Annotated[int, typer.Option(help="Seeds (pair draws) per size; 0: default.")] = 0,
    out: Annotated[Path | None, typer.Option(help="Table path.")] = None,
    jobs: Annotated[int, typer.Option(help="Worker processes (one thread each).")] = 1,
) -> None:
    """Train and measure students of each kind at each harvest size; write the table."""
    config = QUICK if quick else CurveConfig()
    if sizes:
        config = CurveConfig(**{**asdict(config), "sizes": tuple(map(int, sizes.split(",")))})
    if seeds:
        config = CurveConfig(**{**asdict(config), "seeds": seeds})
    specs = [
        StudentSpec(kind, every=every, hidden=hidden, layers=layers)  # type: ignore[arg-type]
        for kind in kinds.split(",")
    ]
    started, load = time.perf_counter(), os.getloadavg()[0]
    teacher = Teacher(get_settings().data_dir / "teacher")
    path = out or (None if quick else result_path("students"))

    def write(points: list[Point]) -> str:
        table = markdown(points, len({p.seed for p in points}))
        if path is not None:
            note = f"load average {load:.1f} at start, {os.getloadavg()[0]:.1f} at end, jobs {jobs}"
            header = measured_by(seconds=time.perf_counter() - started, note=note)
            write_table(path, table, header)
        return table

    points = run_curves(teacher, specs, config, jobs=jobs, progress=write)
    print(write(points))
    if path is not None:
        print(f"wrote {path}")


def cli(argv: Any = None) -> None:
    typer.run(main)


if __name__ == "__main__":
    cli()
