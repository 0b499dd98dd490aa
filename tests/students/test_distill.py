"""Student distillation on real teacher answers: the student learns something measurable."""

from __future__ import annotations

import pytest

from provenance.chat import encode
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


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_mixed_precision_multiplies_in_bf16_and_returns_a_float32_student(precision) -> None:
    """`precision="bf16"` (the provenance experiment's default where the CPU has it) runs the
    student's blocks' matrix products in bfloat16 and its output layer and weights in float32;
    both precisions learn the pairs."""
    import torch

    from students.distill import _batch, response_loss, train_student, trains_in_bf16

    tokenizer = Teacher(TEACHER_DIR).tokenizer
    prompts = sorted(attack_pool()[:200], key=len)[:17]
    pairs = [Pair(p, " ".join(q.split()[:20])) for p, q in zip(prompts, prompts[1:], strict=False)]
    student = new_student(tokenizer, seed=3)
    batch = _batch(tokenizer, [encode(tokenizer, pair) for pair in pairs])
    with torch.no_grad():
        before = float(response_loss(student, *batch))
    products: set[torch.dtype] = set()
    logits: set[torch.dtype] = set()
    hooks = [
        student.model.layers[0].mlp.down_proj.register_forward_hook(
            lambda _module, _inputs, output: products.add(output.dtype)
        ),
        student.lm_head.register_forward_hook(
            lambda _module, _inputs, output: logits.add(output.dtype)
        ),
    ]
    trained = train_student(tokenizer, pairs, epochs=6, model=student, precision=precision)
    for hook in hooks:
        hook.remove()
    assert products == {torch.bfloat16 if precision == "bf16" else torch.float32}
    assert logits == {torch.float32}  # bf16 logits taught students less (closed p 3.6e-4 at 5 %)
    assert {p.dtype for p in trained.parameters()} == {torch.float32}
    with torch.no_grad():
        assert float(response_loss(trained, *batch)) < before - 1.0
    assert trains_in_bf16("cpu", precision) == (precision == "bf16")
    with pytest.raises(ValueError, match="precision"):
        trains_in_bf16("cpu", "fp16")  # type: ignore[arg-type]
