"""Vocabulary trimming: a trimmed student is the same student with its softmax restricted to its
corpus's tokens, still reading and writing the full vocabulary's ids (a 1,000-token stand-in for
the teacher's tokenizer: no model to load)."""

from __future__ import annotations

import pytest
import torch

from students.distill import new_student, response_loss
from students.vocabulary import corpus_ids, trim_vocabulary

pytestmark = pytest.mark.models

VOCAB = 1000


class Tokens:
    """What the student and the trimming read off a tokenizer."""

    all_special_ids = [0, 1]

    def __len__(self) -> int:
        return VOCAB


def _students() -> tuple[torch.nn.Module, torch.nn.Module, torch.Tensor]:
    base = torch.randn(VOCAB, 256)
    kept = corpus_ids(Tokens(), [[5, 9, 12, 40], [40, 41, 977]])
    full = new_student(Tokens(), base, seed=1).eval()
    trimmed = trim_vocabulary(new_student(Tokens(), base, seed=1), kept).eval()
    return full, trimmed, kept


def test_trimmed_student_is_the_student_restricted_to_its_corpus() -> None:
    full, trimmed, kept = _students()
    assert kept.tolist() == [0, 1, 5, 9, 12, 40, 41, 977]
    ids = torch.tensor([[5, 9, 300, 12, 40, 700, 41]])  # 300 and 700: never in its corpus
    with torch.no_grad():
        # unseen input tokens read their warm-start rows: the same hidden states as untrimmed
        assert torch.allclose(
            full.model(input_ids=ids).last_hidden_state,
            trimmed.model(input_ids=ids).last_hidden_state,
            atol=1e-5,
        )
        logits = trimmed(input_ids=ids).logits
        assert logits.shape[-1] == VOCAB
        assert torch.allclose(logits[..., kept], full(input_ids=ids).logits[..., kept], atol=1e-5)
        absent = torch.ones(VOCAB, dtype=torch.bool)
        absent[kept] = False
        assert torch.isneginf(logits[..., absent]).all()
        generated = trimmed.generate(ids, max_new_tokens=6, do_sample=False, pad_token_id=1)
    assert set(generated[0, ids.shape[1] :].tolist()) <= set(kept.tolist())


def test_trimmed_training_loss_is_the_models_own_loss() -> None:
    _, trimmed, _ = _students()
    ids = torch.tensor([[5, 300, 9, 12, 40, 41], [977, 9, 40, 12, 5, 1]])
    attention = torch.ones_like(ids)
    labels = ids.clone()
    labels[:, :2] = -100  # prompt positions (300 is only read, never a target)
    with torch.no_grad():
        own = trimmed(input_ids=ids, attention_mask=attention, labels=labels).loss
        assert torch.allclose(response_loss(trimmed, ids, attention, labels), own, atol=1e-5)
    labels[0, 2] = 300
    with pytest.raises(ValueError, match="outside the student's trimmed vocabulary"):
        response_loss(trimmed, ids, attention, labels)
    # only the kept rows (tied to the output layer) and the body train
    assert trimmed.get_input_embeddings().weight.shape == (8, trimmed.config.hidden_size)
