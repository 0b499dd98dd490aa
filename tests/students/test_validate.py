"""`distillguard validate`: leakage read off a learning curve, its interval, and the quick run
end to end (real teacher, the detection benchmark's traffic generator, the pipeline, real
pruned students)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from distillguard.cli import app
from students.distill import measure_fidelity, train_student
from students.validate import (
    FLAGGED_EARLY,
    LATE,
    NEVER,
    QUICK,
    Attacker,
    answer,
    leakage,
    student_run,
    t_interval,
)


def test_leakage_is_the_share_of_the_full_harvests_gain() -> None:
    # a known curve: untrained 0.02, 0.05 after the pre-flag pairs, 0.14 on the full harvest
    assert leakage(0.02, 0.05, 0.14) == pytest.approx(0.25)
    assert leakage(0.02, 0.02, 0.14) == 0.0
    assert leakage(0.02, 0.14, 0.14) == pytest.approx(1.0)
    assert leakage(0.02, 0.20, 0.14) == pytest.approx(1.5)  # noise can overshoot: kept
    assert leakage(0.02, 0.01, 0.02) is None  # no gain, no capability to leak


def test_t_interval_matches_the_textbook() -> None:
    mean, low, high = t_interval([0.1, 0.2, 0.3])
    # sd 0.1, n 3, t(0.975, 2) = 4.3027
    assert mean == pytest.approx(0.2)
    assert high - mean == pytest.approx(4.3027 * 0.1 / 3**0.5, rel=1e-4)
    assert low == pytest.approx(2 * mean - high)
    assert t_interval([0.4, 0.4]) == (0.4, 0.4, 0.4)
    assert t_interval([0.7]) == (0.7, 0.7, 0.7)


@pytest.mark.parametrize(("outcome", "value"), [(NEVER, 1.0), (LATE, 1.0), (FLAGGED_EARLY, 0.0)])
def test_attackers_needing_no_student_read_by_definition(outcome: str, value: float) -> None:
    attacker = Attacker("dataset_replay", ["a"], 10, 10, 10, None, None, None, 0, outcome)
    assert attacker.leaked(3) == [value] * 3


@pytest.mark.models
def test_the_snapshot_at_the_flag_is_the_student_of_the_pre_flag_pairs_alone() -> None:
    from students.actors import PlannedRequest
    from students.prompts import attack_pool
    from students.teacher import Teacher
    from tests.conftest import TEACHER_DIR

    teacher = Teacher(TEACHER_DIR)
    config = QUICK
    prompts = attack_pool()[:12]
    plans = [PlannedRequest("attack:x", "a", i, (("user", p),)) for i, p in enumerate(prompts)]
    pairs = answer(teacher, plans, config.max_tokens)
    harvest, held_out = pairs[:8], pairs[8:]
    floor = measure_fidelity(
        teacher.tokenizer, config.student.build(teacher.tokenizer, teacher.model), held_out, 0, 0
    )
    run = student_run(teacher, config, harvest, 4, held_out, floor, seed=1)
    assert sorted(run.curve) == sorted(run.losses) == [0, 4, 8]
    # Two steps of a pruned student: its held-out loss falls, agreement need not move yet.
    assert run.losses[8] < run.losses[4] < run.losses[0] - 1.0
    assert run.leaked == leakage(run.untrained, run.before_detection, run.full)
    # Trained alone on the same four pre-flag pairs (same seed, so the same order), a student
    # reads exactly what the curve read at the flag: nothing after the flag leaked into it.
    early = train_student(
        teacher.tokenizer,
        harvest[:4],
        epochs=1,
        batch_size=config.batch_size,
        learning_rate=config.student.rate,
        seed=1,
        model=config.student.build(teacher.tokenizer, teacher.model, 1),
        constant_rate=True,
    )
    alone = measure_fidelity(teacher.tokenizer, early, held_out, 4, 0)
    assert alone.next_token_agreement == run.before_detection
    assert alone.loss == pytest.approx(run.losses[4], rel=1e-6)


@pytest.mark.models
@pytest.mark.timeout(1200)  # cold teacher cache on 2 cores
def test_quick_validation_writes_an_honest_report(tmp_path: Path) -> None:
    # the data folder (tests/conftest.py) links the session's teacher and its answer cache
    result = CliRunner().invoke(app, ["validate", "--quick", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    report = orjson.loads((tmp_path / "validation.json").read_bytes())
    rows = {row["strategy"]: row for row in report["strategies"]}
    assert set(rows) == {"dataset_replay", "multi_account_campaign"}
    assert report["config"]["student"]["kind"] == "pruned"
    attackers = {a["strategy"]: a for a in report["attackers"]}
    assert len(attackers["multi_account_campaign"]["accounts"]) == 8  # one campaign, 8 accounts
    for attacker in report["attackers"]:
        assert attacker["harvested_pairs"] == 16  # capped
        assert attacker["harvested_before_detection"] <= attacker["harvested_pairs"]
        if attacker["first_flag_time"] is None:
            assert attacker["outcome"] == NEVER and attacker["queries_before_detection"] is None
        for run in attacker["runs"]:
            assert run["losses"]["16"] < run["losses"]["0"] - 1.0  # students really learned
    for row in rows.values():
        assert row["samples"] == QUICK.seeds
        assert row["leaked_low"] <= row["leaked_mean"] <= row["leaked_high"]
    assert report["benign_accounts"] >= 6
    assert (tmp_path / "validation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (tmp_path / "validation.md").read_text()
    assert "| dataset_replay |" in table and "| multi_account_campaign |" in table
    assert "t-interval" in table


def test_report_of_trained_and_untrained_attackers(tmp_path: Path) -> None:
    from dataclasses import asdict

    from students.validate import Run, markdown, plot, strategy_rows

    def run(seed: int, before: float) -> Run:
        curve = {0: 0.0, 3: before, 24: 0.02, 48: 0.04}
        return Run(seed, 0.0, before, 0.04, curve, dict.fromkeys(curve, 9.0), before / 0.04, 1.0)

    trained = Attacker("dataset_replay", ["r1"], 250, 250, 48, "t", 3, 3, 3, "trained")
    trained.runs = [run(0, 0.0), run(1, 0.004)]
    never = Attacker("dataset_replay", ["r2"], 250, 250, 48, None, None, None, 48, NEVER)
    rows = strategy_rows([trained, never], QUICK)
    (row,) = rows
    assert row["samples"] == 4 and row["students"] == 2 and row["flagged"] == 1
    assert row["leaked_mean"] == pytest.approx((0.0 + 0.1 + 1.0 + 1.0) / 4)
    report = {
        "generated_at": "now",
        "config": asdict(QUICK),
        "student": "pruned",
        "detector": {"version": "v"},
        "traffic": {"scenario": "k", "requests": 10, "benign_accounts": 3, "attacker_accounts": 2},
        "benign_accounts": 3,
        "benign_accounts_flagged": [],
        "strategies": rows,
        "attackers": [asdict(trained), asdict(never)],
    }
    table = markdown(report)
    assert (
        "| dataset_replay | 1/2 | 3 | 3, 48 / 48, 48 | 2 | 0.000 → 0.002 → 0.040 | 52% [" in table
    )
    plot(report, tmp_path / "v.png")
    assert (tmp_path / "v.png").stat().st_size > 1000
