"""Talking to a causal LM the way the teacher's chat API does: chat-formatted encoding and
greedy (or seeded, sampled) answers. Provenance asks suspect models through it; the companion's
students are trained and measured with the same encoding, so a test sees what training saw.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

PROMPT_TOKENS = 64
RESPONSE_TOKENS = 64


@dataclass(frozen=True)
class Pair:
    prompt: str
    response: str


def encode(tokenizer, pair: Pair) -> tuple[list[int], int]:
    """Chat-formatted prompt (last PROMPT_TOKENS tokens) + response; returns ids and the
    response's start index."""
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": pair.prompt}], tokenize=False, add_generation_prompt=True
    )
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"][-PROMPT_TOKENS:]
    response_ids = tokenizer(pair.response, add_special_tokens=False)["input_ids"]
    response_ids = (response_ids + [tokenizer.eos_token_id])[:RESPONSE_TOKENS]
    return prompt_ids + response_ids, len(prompt_ids)


def pad_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def greedy(
    tokenizer,
    model,
    encoded: Sequence[tuple[list[int], int]],
    tokens: int,
    temperature: float = 0.0,
    repetition_penalty: float | None = None,
) -> list[str]:
    """A model's answers to encoded pairs' prompts, one left-padded batch: greedy or, with a
    temperature, sampled from its distribution. Greedy is the model's own argmax unless a
    `repetition_penalty` is given (fidelity measurements give one so that a small student's
    loops do not decide its ROUGE-L; a suspect is asked plainly: a penalty steers it off the
    text it memorised, measured: closed-test p 1.9e-3 with 1.3 and 1.9e-8 without on a pruned
    student at 5 % watermarked answers)."""
    import torch

    prompts = [ids[:start] for ids, start in encoded]
    width = max(len(p) for p in prompts)
    pad = pad_id(tokenizer)
    input_ids = torch.full((len(prompts), width), pad, dtype=torch.long)
    attention = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, ids in enumerate(prompts):
        input_ids[row, width - len(ids) :] = torch.tensor(ids)
        attention[row, width - len(ids) :] = 1
    generated = model.generate(
        input_ids.to(model.device),
        attention_mask=attention.to(model.device),
        max_new_tokens=tokens,
        do_sample=temperature > 0,
        temperature=temperature or None,
        top_p=None,
        top_k=None,
        repetition_penalty=None if temperature else repetition_penalty,
        pad_token_id=tokenizer.eos_token_id,
    )
    return tokenizer.batch_decode(generated[:, width:].cpu(), skip_special_tokens=True)


def answer(
    tokenizer,
    model,
    prompts: Sequence[str],
    tokens: int,
    temperature: float = 0.0,
    seed: int = 0,
    batch_size: int = 32,
) -> list[str]:
    """Chat-formatted answers of a (student or suspect) model to `prompts`: greedy, or sampled
    at `temperature` (seeded)."""
    import torch

    torch.manual_seed(seed)
    answers: list[str] = []
    with torch.inference_mode():
        for start in range(0, len(prompts), batch_size):
            chunk = [encode(tokenizer, Pair(p, "")) for p in prompts[start : start + batch_size]]
            answers.extend(greedy(tokenizer, model, chunk, tokens, temperature))
    return answers
