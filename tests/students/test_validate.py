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
    MIN_GAIN,
    NEVER,
    QUICK,
    TRAINED,
    Attacker,
    FlagRead,
    answer,
    flag_read,
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
    # a gain within a checkpoint's noise (24 pairs taught 0.006): no ratio, not 1,256 %
    assert leakage(0.0, 0.027, 0.006) is None
    assert leakage(0.0, 0.005, MIN_GAIN) == pytest.approx(0.5)


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
    read = FlagRead("suspicious", None, None, None, 0, outcome)
    attacker = Attacker("dataset_replay", ["a"], 10, 10, 10, {"suspicious": read})
    assert attacker.leaked("suspicious", 3) == [value] * 3


def _verdict(account: str, ms: int, label: str, seen: int):
    from datetime import UTC, datetime

    from core.verdicts import Verdict

    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return Verdict(
        account_id=account,
        timestamp=moment,
        requests_seen=seen,
        score=0.5,
        label=label,
        reasons=[],
        detector_version="v",
    )


def test_each_flag_level_reads_the_harvest_before_the_first_of_the_accounts_flagged() -> None:
    from core.verdicts import first_flags
    from students.actors import PlannedRequest

    # two accounts of one campaign, alternating requests 1 s apart; the third request is cover
    plans = [
        PlannedRequest(
            "attack:c", f"acct-{i % 2}", 1000 * (i + 1), (("user", f"q{i}"),), harvest=i != 2
        )
        for i in range(10)
    ]
    capped = [p for p in plans if p.harvest][:6]  # requests 0, 1, 3, 4, 5, 6
    verdicts = [
        _verdict("acct-1", 4000, "suspicious", 2),  # acct-1's first flag: after request 3
        _verdict("acct-0", 5000, "suspicious", 3),
        _verdict("acct-0", 10000, "extraction", 5),  # after every capped pair
    ]
    early = flag_read("suspicious", plans, capped, first_flags(verdicts, "suspicious"))
    assert (early.queries_before, early.requests_seen, early.harvested_before) == (4, 2, 3)
    assert early.outcome == TRAINED and early.time is not None
    late = flag_read("extraction", plans, capped, first_flags(verdicts, "extraction"))
    assert (late.harvested_before, late.outcome) == (6, LATE)
    assert flag_read("extraction", plans, capped, {}).outcome == NEVER
    first = first_flags([_verdict("acct-0", 500, "suspicious", 1)], "suspicious")
    assert flag_read("suspicious", plans, capped, first).outcome == FLAGGED_EARLY


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
    flags = {"suspicious": 2, "extraction": 4}
    run = student_run(teacher, config, harvest, flags, held_out, floor, seed=1)
    assert sorted(run.curve) == sorted(run.losses) == [0, 2, 4, 8]
    # A pruned student's held-out loss falls step by step; agreement need not move yet.
    assert run.losses[8] < run.losses[4] < run.losses[0] - 1.0
    assert run.at_flag == {"suspicious": run.curve[2], "extraction": run.curve[4]}
    assert run.leaked == {
        label: leakage(run.untrained, run.curve[n], run.full) for label, n in flags.items()
    }
    # Trained alone on the same four pairs before the `extraction` flag (same seed and the same
    # boundary at the earlier flag, so the same order and batches), a student reads exactly what
    # the curve read at the flag: nothing after the flag leaked into it.
    early = train_student(
        teacher.tokenizer,
        harvest[:4],
        epochs=1,
        batch_size=config.batch_size,
        learning_rate=config.student.rate,
        seed=1,
        model=config.student.build(teacher.tokenizer, teacher.model, 1),
        constant_rate=True,
        segments=[2],  # the earlier flag's boundary, as in the run
    )
    alone = measure_fidelity(teacher.tokenizer, early, held_out, 4, 0)
    assert alone.next_token_agreement == run.at_flag["extraction"]
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
        assert list(attacker["flags"]) == ["suspicious", "extraction"]
        early, late = attacker["flags"].values()
        assert early["harvested_before"] <= late["harvested_before"] <= 16  # graver, not earlier
        for read in (early, late):
            if read["time"] is None:
                assert read["outcome"] == NEVER and read["queries_before"] is None
        # Students train exactly when a flag level leaves something to measure. On this small
        # traffic the detector flags no attacker (2026-12-06), so none train here; training and
        # the pre-flag snapshot are tested above on real students.
        needs_students = any(read["outcome"] == TRAINED for read in (early, late))
        assert len(attacker["runs"]) == (QUICK.seeds if needs_students else 0)
        for run in attacker["runs"]:
            assert run["losses"]["16"] < run["losses"]["0"] - 1.0  # students really learned
    for row in rows.values():
        for level in row["flags"].values():
            assert level["samples"] == QUICK.seeds
            assert level["leaked_low"] <= level["leaked_mean"] <= level["leaked_high"]
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
        return Run(
            seed,
            0.0,
            {"suspicious": before},
            0.04,
            curve,
            dict.fromkeys(curve, 9.0),
            {"suspicious": before / 0.04},
            1.0,
        )

    def read(label: str, harvested: int, outcome: str, time: str | None = "t") -> FlagRead:
        return FlagRead(label, time, harvested or None, harvested or None, harvested, outcome)

    trained = Attacker(
        "dataset_replay",
        ["r1"],
        250,
        250,
        48,
        {"suspicious": read("suspicious", 3, TRAINED), "extraction": read("extraction", 48, LATE)},
    )
    trained.runs = [run(0, 0.0), run(1, 0.004)]
    never = Attacker(
        "dataset_replay",
        ["r2"],
        250,
        250,
        48,
        {label: read(label, 0, NEVER, None) for label in ("suspicious", "extraction")},
    )
    rows = strategy_rows([trained, never], QUICK)
    (row,) = rows
    early, late = row["flags"]["suspicious"], row["flags"]["extraction"]
    assert row["students"] == 2 and early["flagged"] == late["flagged"] == 1
    assert early["samples"] == late["samples"] == 4
    assert early["leaked_mean"] == pytest.approx((0.0 + 0.1 + 1.0 + 1.0) / 4)
    assert late["leaked_mean"] == 1.0  # flagged after its harvest, and never: 100 % each
    assert early["fidelity_at_flag"] == pytest.approx(0.002)
    report = {
        "generated_at": "now",
        "config": asdict(QUICK),
        "student": "pruned",
        "detector": {"version": "v"},
        "traffic": {"scenario": "k", "requests": 10, "benign_accounts": 3, "attacker_accounts": 2},
        "benign_accounts": 3,
        "benign_accounts_flagged": {"suspicious": ["b"], "extraction": []},
        "strategies": rows,
        "attackers": [asdict(trained), asdict(never)],
    }
    table = markdown(report)
    assert "benign accounts flagged 1 / 0 of 3" in table
    assert (
        "| dataset_replay | 1 / 1 of 2 | 3, – / 48, – | 3, – / 48, – of 48, 48 | 2 "
        "| 0.000 → 0.002 → 0.040 | 52% [" in table
    )
    assert "| 100% [100%, 100%] (4) |" in table
    plot(report, tmp_path / "v.png")
    assert (tmp_path / "v.png").stat().st_size > 1000
