"""Student kinds: a from-scratch student (students/distill.py) or the teacher itself with most
of its layers dropped, DistilBERT-style (Sanh et al., 2019: initialise the student from every
other layer of the teacher).

The from-scratch student (2 layers, 128 wide, ~6.7M parameters) learns the teacher's most common
tokens from its first few dozen pairs and then stops improving: 2 CPU cores cannot give it enough
steps to learn language. A pruned teacher starts from language it already knows, SmolLM2's own
tokenizer-aligned embeddings (tied to the output layer, as in the teacher) and every k-th
transformer block; training on harvested pairs re-knits the kept blocks, so more pairs keep
buying fidelity. Its full embedding table stays frozen: it is the teacher's already, and freezing
it spares the 28M-parameter AdamW state and gradient on 2 cores. A student with a trimmed
vocabulary (students/vocabulary.py, as the provenance experiment and bench.students train them)
does train its kept tokens' rows, tied to its output layer (~4M weights at 7k tokens).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Literal

StudentKind = Literal["pruned", "scratch"]
TEACHER_BLOCKS = 30  # SmolLM2-135M's transformer blocks (for sizes known before it loads)


def kept_layers(total: int, every: int) -> list[int]:
    """Every `every`-th block counted from the top, so the last block (the one the teacher's
    output layer reads) is always kept: 30 blocks, every 6 -> [5, 11, 17, 23, 29].

    >>> kept_layers(30, 6)
    [5, 11, 17, 23, 29]
    >>> kept_layers(30, 1) == list(range(30))
    True
    """
    if every < 1:
        raise ValueError("every must be at least 1")
    return list(range(total - 1, -1, -every))[::-1]


def pruned_student(teacher_model: Any, every: int = 6, freeze_embeddings: bool = True) -> Any:
    """A copy of `teacher_model` (a Hugging Face Llama causal LM) keeping `kept_layers` of its
    blocks, with the teacher's tied embeddings and final norm; the teacher is left untouched."""
    from torch import nn

    student = copy.deepcopy(teacher_model)  # deepcopy keeps the input/output embedding tie
    kept = kept_layers(len(student.model.layers), every)
    student.model.layers = nn.ModuleList(student.model.layers[i] for i in kept)
    for index, layer in enumerate(student.model.layers):
        layer.self_attn.layer_idx = index  # the KV cache indexes blocks by position
    student.config.num_hidden_layers = len(kept)
    if getattr(student.config, "layer_types", None):
        student.config.layer_types = [student.config.layer_types[i] for i in kept]
    student.get_input_embeddings().weight.requires_grad_(not freeze_embeddings)
    student.eval()
    return student


@dataclass(frozen=True)
class StudentSpec:
    """Which student to train: `pruned` (the teacher keeping every `every`-th block) or
    `scratch` (a fresh `hidden`-wide, `layers`-deep Llama). A GPU session can ask for a larger
    one (`every=2`, or a wider scratch student) with the same code."""

    kind: StudentKind = "pruned"
    every: int = 6
    hidden: int = 128
    layers: int = 2
    learning_rate: float | None = None  # None: the kind's default

    @property
    def label(self) -> str:
        if self.kind == "pruned":
            return f"pruned teacher (every {self.every}th block)"
        return f"scratch ({self.layers} layers x {self.hidden})"

    @property
    def rate(self) -> float:
        """A pretrained student needs small steps not to forget; a fresh one large ones."""
        if self.learning_rate is not None:
            return self.learning_rate
        return 1e-3 if self.kind == "pruned" else 3e-3

    def build(self, tokenizer: Any, teacher_model: Any, seed: int = 0) -> Any:
        """The untrained student (the scratch one's embeddings warm-started from the
        teacher's, as `students.distill.new_student` does)."""
        from students.distill import new_student, teacher_embeddings

        if self.kind == "pruned":
            return pruned_student(teacher_model, self.every)
        return new_student(
            tokenizer,
            teacher_embeddings(teacher_model),
            seed,
            hidden=self.hidden,
            layers=self.layers,
        ).eval()
