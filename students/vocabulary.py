"""Vocabulary trimming: a student whose softmax covers only the tokens of its training corpus.

The student shares the teacher's 49,152-token vocabulary, but a few dozen harvested pairs use
well under a thousand distinct tokens (490 for the quick provenance experiment's students). For a
128-wide student, projecting every response position onto all 49k tokens (forward and backward)
and keeping AdamW state for the 6.3M tied embedding weights is most of a training step. Distillers
of small students trim the vocabulary to the tokens their corpus uses for that reason (e.g. Ushio
et al., 2023, "An Efficient Multilingual Language Model Compression through Vocabulary
Trimming"). A token the training text never holds is never a target: a full-vocabulary student
can only learn to push its logit down, and after the quick experiment's 300 steps it still puts
~11% of its probability on such tokens when it reads new text; the trimmed student gives them
probability 0. Training is the same cross-entropy over the kept tokens: it equals the full
softmax's with the other tokens' logits at -inf.

The trimmed student still speaks in the teacher's token ids, so the code that asks and scores it
is unchanged:

* output: `lm_head` returns logits over the full 49,152-token vocabulary (-inf outside the kept
  tokens), so `generate`, argmax predictions, green-list scoring and decoding see the same ids as
  with a full-vocabulary student;
* input: every token id still reads an embedding (kept tokens their trained row, shared with the
  output layer as before; the others their warm start), so the student can read text it never
  trained on, as the open-model radioactivity test makes it do.

Not for held-out fidelity (`students.distill.learning_curve`): a held-out answer's token outside
the training corpus would have probability 0, its loss infinite. Nor for saving: the modules are
this package's, not a Hugging Face architecture.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


class CorpusEmbedding(nn.Module):
    """Token embeddings: kept tokens' rows are trained (and shared with the output layer), every
    other token reads its fixed warm-start row."""

    def __init__(self, full: torch.Tensor, kept: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("frozen", full.detach().clone())
        self.register_buffer("kept", kept)
        slot = torch.full((full.shape[0],), -1, dtype=torch.long)
        slot[kept] = torch.arange(len(kept))
        self.register_buffer("slot", slot)  # full id -> row of `weight`, -1 if not kept
        self.weight = nn.Parameter(full.detach()[kept].clone())

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        slot = self.slot[input_ids]
        trained = self.weight[slot.clamp(min=0)]
        return torch.where((slot >= 0).unsqueeze(-1), trained, self.frozen[input_ids])


class CorpusHead(nn.Module):
    """The tied output layer over the kept tokens; `forward` scatters their logits into the full
    vocabulary (-inf elsewhere), `kept_logits` is what training scores."""

    def __init__(self, embedding: CorpusEmbedding) -> None:
        super().__init__()
        self.embedding = embedding

    def kept_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden @ self.embedding.weight.T

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        kept = self.kept_logits(hidden)
        full = kept.new_full((*kept.shape[:-1], self.embedding.frozen.shape[0]), float("-inf"))
        return full.index_copy_(-1, self.embedding.kept, kept)

    def targets(self, token_ids: torch.Tensor) -> torch.Tensor:
        """Full-vocabulary target ids as rows of `kept_logits` (all must be kept tokens)."""
        slots = self.embedding.slot[token_ids]
        if bool((slots < 0).any()):
            raise ValueError("a target token is outside the student's trimmed vocabulary")
        return slots


def corpus_ids(tokenizer, sequences: Iterable[Iterable[int]]) -> torch.Tensor:
    """The kept tokens: every id in the training sequences (prompts and responses) plus the
    tokenizer's special tokens, sorted."""
    ids = set(tokenizer.all_special_ids)
    for sequence in sequences:
        ids.update(sequence)
    return torch.tensor(sorted(ids), dtype=torch.long)


def trim_vocabulary(model, kept: torch.Tensor):
    """`model` (a tied-embedding Hugging Face causal LM) with its softmax restricted to `kept`
    token ids, in place; its other weights are untouched."""
    embedding = CorpusEmbedding(model.get_input_embeddings().weight, kept)
    model.model.embed_tokens = embedding
    model.lm_head = CorpusHead(embedding)
    return model
