"""Student distillation on real teacher answers: the student learns something measurable."""

from __future__ import annotations

import pytest

from students.distill import Pair, learning_curve, new_student, teacher_embeddings
from students.prompts import attack_pool
from students.teacher import GenerationSettings, Teacher
from tests.conftest import TEACHER_DIR

pytestmark = pytest.mark.models


def test_student_is_small_and_learns_from_harvested_pairs() -> None:
    teacher = Teacher(TEACHER_DIR)
    prompts = sorted(attack_pool()[:200], key=len)[:60]
    answers = teacher.complete(
        [[{"role": "user", "content": p}] for p in prompts],
        GenerationSettings(temperature=0.0, max_tokens=24),
    )
    pairs = [Pair(p, a[0].text) for p, a in zip(prompts, answers, strict=True)]
    student = new_student(teacher.tokenizer)
    parameters = sum(p.numel() for p in student.parameters())
    assert 2_000_000 < parameters < 10_000_000
    floor, trained = learning_curve(
        teacher.tokenizer,
        pairs[12:],
        pairs[:12],
        [0, 48],
        base_embeddings=teacher_embeddings(teacher.model),
        min_steps=60,
    )
    assert trained.loss < floor.loss - 1.0
    assert trained.next_token_agreement > floor.next_token_agreement + 0.03
