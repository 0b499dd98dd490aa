"""The student learning-curve benchmark's quick variant: both student kinds, a few real teacher
pairs, one seed. Training must move each student toward the teacher on held-out prompts."""

from __future__ import annotations

import pytest

from bench.students import QUICK, markdown, run_curves
from students.pruned import StudentSpec, kept_layers
from students.teacher import Teacher
from tests.conftest import TEACHER_DIR

pytestmark = pytest.mark.models


def test_quick_curves_learn_for_both_student_kinds() -> None:
    teacher = Teacher(TEACHER_DIR)
    specs = [StudentSpec("pruned", every=6), StudentSpec("scratch")]
    points = run_curves(teacher, specs, QUICK, log=lambda _: None)
    by = {(p.kind, p.pairs): p for p in points}
    pruned, scratch = (spec.label for spec in specs)
    # The pruned student is the teacher's own blocks 5, 11, 17, 23 and 29, far smaller.
    assert kept_layers(30, 6) == [5, 11, 17, 23, 29]
    assert 30e6 < by[pruned, 0].parameters < 60e6
    assert by[scratch, 0].parameters < 10e6
    for kind in (pruned, scratch):
        untrained, trained = by[kind, 0].fidelity, by[kind, 8].fidelity
        assert trained.loss < untrained.loss - 1.0, kind
    assert "| pairs |" in markdown(points, QUICK.seeds)
