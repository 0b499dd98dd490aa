"""The provenance experiment's sizes and summaries, without models: the default run is what
issue 20 asks for (5 % is at least 30 answers, 20 clean students, a 0-100 % dose-response) and
its estimate fits `make bench`'s 2 hours on 2 CPU cores; the dose-response rows and the
false-accusation bound are computed from the students as stated. Real students:
tests/provenance/test_provenance_cli.py."""

from __future__ import annotations

from dataclasses import replace

import pytest

from provenance.radioactivity import RadioactivityResult
from provenance.watermark import WatermarkScore
from students.provenance_experiment import (
    BENCH_BUDGET_S,
    BENCH_JOBS,
    FULL,
    ExperimentReport,
    StudentResult,
    dose_table,
    estimate,
    upper_95,
)
from students.pruned import StudentSpec


def test_the_default_run_measures_five_percent_with_enough_answers_and_clean_students() -> None:
    assert FULL.watermarked_pairs(0.05) >= 30
    assert FULL.clean_seeds >= 20 and FULL.null_keys >= 1
    assert {0.01, 0.02, 0.05, 0.10, 0.20, 0.50, 1.0} <= set(FULL.fractions)
    assert FULL.pool_size > FULL.training_pairs  # clean students draw different answer sets
    assert FULL.student.kind == "pruned" and FULL.device == "cpu"


def test_the_default_pruned_run_fits_the_bench_budget_two_students_at_a_time() -> None:
    expected = estimate(FULL, BENCH_JOBS)
    assert expected["total"] == expected["teacher"] + expected["training"] + expected["tests"]
    # the teacher's answers are cached after the first run (a cold cache adds ~44 min)
    assert expected["training"] + expected["tests"] < BENCH_BUDGET_S
    # one student at a time would not fit; a student keeping more blocks costs more
    alone = estimate(FULL, 1)
    assert alone["training"] + alone["tests"] > BENCH_BUDGET_S
    deeper = estimate(replace(FULL, student=StudentSpec("pruned", every=6)), BENCH_JOBS)
    assert deeper["training"] > expected["training"]
    # mixed precision (where the CPU multiplies bf16 natively) trains the same students faster
    mixed, full = (estimate(replace(FULL, precision=p), BENCH_JOBS) for p in ("bf16", "fp32"))
    assert mixed["training"] < full["training"] and mixed["tests"] == full["tests"]


def _student(
    fraction: float,
    seed: int,
    closed: float,
    opened: float,
    unreferenced: float = 0.5,
    unseen: float = 0.5,
) -> StudentResult:
    def result(mode, p: float) -> RadioactivityResult:
        return RadioactivityResult(mode, 10, WatermarkScore(100, 25, 0.0, p))

    pairs = FULL.watermarked_pairs(fraction)
    student = StudentResult(
        fraction,
        seed,
        pairs,
        result("closed", closed),
        result("open", opened),
        result("open", unseen),
        opened,
        (unreferenced, 0.5),
    )
    student.precision_at_3 = 1.0 if pairs else None
    student.watermark_precision_at_3 = 2 / 3 if pairs else None
    student.watermark_p_adjusted = [min(1.0, closed * 10), 1.0, 1.0]
    student.combined_precision_at_3 = 1.0 if pairs else None
    return student


def test_dose_response_rows_and_the_false_accusation_bound() -> None:
    students = [
        _student(1.0, 0, 1e-30, 1e-8),
        _student(0.05, 0, 1e-7, 0.2),
        *[
            _student(0.0, seed, p, 0.5, unreferenced, unseen)
            for seed, (p, unreferenced, unseen) in enumerate(
                ((0.3, 0.004, 0.7), (0.005, 0.2, 0.4), (0.6, 0.003, 0.002))
            )
        ],
    ]
    report = ExperimentReport(FULL, "wm-test", students, {})
    rows = report.dose_response()
    assert [(r.fraction, r.watermarked_pairs) for r in rows] == [(0.0, 0), (0.05, 32), (1.0, 640)]
    assert rows[0].p["closed"] == 0.3 and rows[0].min_p["closed"] == 0.005  # median, smallest
    assert rows[0].p["unseen"] == 0.4 and rows[0].min_p["unseen"] == 0.002
    assert rows[2].p["closed"] == 1e-30 and rows[2].precision_at_3 == 1.0
    accused = report.false_accusations()
    # three tests a clean student: seed 1 accused by its closed test, seed 2 by its unseen one
    assert (accused["false_accusations"], accused["tests"], accused["students_accused"]) == (
        2,
        9,
        2,
    )
    # without the reference filter, two other clean tests would have accused
    assert (accused["unreferenced_false_accusations"], accused["unreferenced_closed_median_p"]) == (
        2,
        0.004,
    )
    assert rows[0].unreferenced_p == (0.004, 0.5)
    assert "| medians 4.0e-03, 5.0e-01 |" in dose_table(report)
    assert "| 100% | 640 | 1.0e-30 | 1.0e-08 | 5.0e-01 | 1.00 | 0.67 | 1.00 |" in dose_table(report)
    assert rows[2].combined_precision_at_3 == 1.0 and rows[0].combined_precision_at_3 is None
    # the clean students' attribution by watermark: seed 1 names an account at p 0.05
    assert (accused["watermark_attributions"], accused["watermark_false_attributions"]) == (3, 0)
    assert accused["watermark_attribution_min_p"] == pytest.approx(0.05)
    assert upper_95(0, 40) == pytest.approx(1 - 0.05 ** (1 / 40))
    assert upper_95(40, 40) == 1.0
