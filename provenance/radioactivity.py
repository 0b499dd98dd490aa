"""Radioactivity: was a suspect model trained on our watermarked outputs? (Sander et al., 2024)

A model fine-tuned on watermarked text inherits the watermark's bias: after a context it prefers
that context's green tokens. Two tests, each a green-token count over distinct (context, token)
windows with an exact binomial p-value under H0 "the suspect never learned from text carrying
this key" (every scored token is green with probability gamma):

* closed model: only a callable that returns text (an API, a file of outputs). Ask it the prompts
  (ideally those the flagged accounts sent) and score what it writes.
* open model: a local transformers folder. Feed it watermarked text and score its own argmax
  next-token predictions, each (context, predicted token) window once.

Both tests can take a *reference*: text our own model wrote without the watermark, best its answers
to the prompts the suspect is asked, sampled as it serves. Windows that occur in it are not scored.
Our model's favourite phrases are shared by every model that learned from it, watermarked or not,
and under one fixed key each of them is simply green or red: a clean student that speaks like our
model inherits that key's luck on them, so its green share drifts from gamma and, with many clean
students, some get small p-values (measured: 3 of 40 clean tests below 0.01 and a median p of 0.12
where 0.5 is due). The windows the reference never shows are the ones a student can only have
learned from watermarked text or from itself, and their greenness is as random as H0 says. The
filter depends on text written without the key, never on the key, so H0 stays exact.

The open test skips a prediction whose (context, token) window already occurred earlier in the
same fed sequence. Those the suspect can see and copy in context (induction), and the watermark
chose them green-biased, so even a clean model would score them above gamma. Every other
prediction of a clean model is a function of text whose tokens were chosen with green lists
other than the one scoring it, so H0 holds, up to the tiny (conservative) dependence of green
lists drawn without replacement. Predictions that merely equal the text's next token are kept:
the suspect does not see that token, so agreeing with it says nothing about the key.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from provenance.chat import Pair, answer, encode
from provenance.watermark import GreenList, WatermarkScore, score_windows, text_windows, windows

Window = tuple[tuple[int, ...], int]
Generator = Callable[[list[str]], list[str]]

ASSUMPTIONS = (
    "H0: the suspect never learned from text carrying this watermark key; under H0 each scored "
    "token is green with probability gamma, independently of the key.",
    "Each distinct (context, token) window is scored once, so repeated phrases count once.",
    "The open-model test skips predictions whose window occurred earlier in the fed text (a "
    "model could copy those in context, and the watermark chose them green-biased).",
    "The key stays secret: someone holding it could scrub the watermark from harvested text.",
)
REFERENCE_ASSUMPTION = (
    "Windows that our model writes without the watermark (the reference text) are not scored: "
    "any model that learned to speak like ours shares them, and under one key their greenness is "
    "fixed rather than random. The reference is written without the key, so H0 is unchanged."
)


@dataclass(frozen=True)
class RadioactivityResult:
    mode: Literal["open", "closed"]
    texts: int
    score: WatermarkScore
    skipped_copyable: int = 0  # open mode: predictions repeating a window seen earlier in context
    skipped_reference: int | None = None  # windows our own unwatermarked text shows (None: no
    # reference given)

    @property
    def p_value(self) -> float:
        return self.score.p_value

    def to_dict(self) -> dict:
        assumptions = [*ASSUMPTIONS]
        if self.skipped_reference is not None:
            assumptions.append(REFERENCE_ASSUMPTION)
        return {**asdict(self), "assumptions": assumptions}


def reference_windows(tokenizer, texts: Iterable[str], width: int) -> frozenset[Window]:
    """Every (context, token) window of our model's unwatermarked `texts`: the windows the
    tests leave unscored."""
    return frozenset(text_windows(tokenizer, texts, width))


def without_reference(
    found: Sequence[Window], reference: frozenset[Window] | None
) -> tuple[list[Window], int | None]:
    """`found` less the windows the reference shows, and how many distinct ones that removed
    (None when there is no reference)."""
    if reference is None:
        return list(found), None
    kept = [w for w in found if w not in reference]
    return kept, len(set(found) - set(kept))


def scored(
    mode: Literal["open", "closed"],
    texts: int,
    greens: GreenList,
    found: Sequence[Window],
    reference: frozenset[Window] | None = None,
    skipped_copyable: int = 0,
) -> RadioactivityResult:
    """One test's result: `found` windows, less the reference's, scored under `greens`."""
    kept, removed = without_reference(found, reference)
    return RadioactivityResult(mode, texts, score_windows(greens, kept), skipped_copyable, removed)


def closed_model_test(
    greens: GreenList,
    tokenizer,
    outputs: Sequence[str],
    reference: frozenset[Window] | None = None,
) -> RadioactivityResult:
    """Score the suspect's own outputs (generated by any callable, or read from a file), less
    the windows of `reference` (`reference_windows`) when given."""
    found = text_windows(tokenizer, outputs, greens.key.context_width)
    return scored("closed", len(outputs), greens, found, reference)


def ask(generate: Generator, prompts: Sequence[str], batch_size: int = 32) -> list[str]:
    """The suspect's answers to `prompts`, in batches (a closed model is just a callable)."""
    answers: list[str] = []
    for start in range(0, len(prompts), batch_size):
        answers.extend(generate(list(prompts[start : start + batch_size])))
    return answers


def local_generator(model, tokenizer, max_new_tokens: int = 48) -> Generator:
    """A local causal LM as a closed-model callable: greedy chat-formatted answers."""
    return lambda prompts: answer(tokenizer, model, prompts, max_new_tokens)


def endpoint_generator(
    url: str, model: str, token: str | None = None, max_tokens: int = 48, timeout_s: float = 120
) -> Generator:
    """An OpenAI-compatible chat-completions endpoint as a closed-model callable (greedy)."""
    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}

    def generate(prompts: list[str]) -> list[str]:
        answers = []
        with httpx.Client(timeout=timeout_s, headers=headers) as client:
            for prompt in prompts:
                body = {
                    "model": model,
                    "messages": [{"role": "user", "content": prompt}],
                    "temperature": 0,
                    "max_tokens": max_tokens,
                }
                response = client.post(url, json=body)
                response.raise_for_status()
                answers.append(response.json()["choices"][0]["message"]["content"])
        return answers

    return generate


def _fed_sequences(
    tokenizer, texts: Sequence[tuple[str | None, str]], max_length: int
) -> list[tuple[list[int], int]]:
    """Token ids and the index where the scored text starts: a chat-formatted prompt followed by
    the text when the prompt is known (the context the suspect would have trained on)."""
    sequences = []
    for prompt, text in texts:
        if prompt is None:
            ids = tokenizer(text, add_special_tokens=False)["input_ids"][:max_length]
            sequences.append((ids, 1))
        else:
            ids, start = encode(tokenizer, Pair(prompt, text))
            sequences.append((ids[:max_length], max(start, 1)))
    return sequences


def open_model_windows(
    model,
    tokenizer,
    texts: Sequence[tuple[str | None, str]],
    context_width: int,
    batch_size: int = 8,
) -> tuple[list[Window], list[Window]]:
    """(context, argmax prediction) windows of the suspect on `texts` ((prompt or None, text)
    pairs), before de-duplication: those to score, and those skipped as copyable (the window
    occurred earlier in the same sequence). They do not depend on the key, so one forward pass
    serves any key."""
    import torch

    max_length = int(getattr(model.config, "max_position_embeddings", 512))
    sequences = _fed_sequences(tokenizer, texts, max_length)
    found: list[Window] = []
    skipped: list[Window] = []
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    with torch.inference_mode():
        for first in range(0, len(sequences), batch_size):
            chunk = sequences[first : first + batch_size]
            width = max(len(ids) for ids, _ in chunk)
            input_ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            attention = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, (ids, _) in enumerate(chunk):
                input_ids[row, : len(ids)] = torch.tensor(ids)
                attention[row, : len(ids)] = 1
            # only positions from the earliest scored one on need logits, the prompts' do not
            # (a pruned student's open tests on 1,040 texts: 46 s with every position's, 41 s)
            first = min(max(start, context_width) for _, start in chunk) - 1
            predicted = _argmax_from(model, input_ids, attention, width - first)
            for row, (ids, start) in enumerate(chunk):
                guesses = predicted[row].tolist()
                seen = {(*c, t) for c, t in windows(ids[:start], context_width)}
                # the prediction made after position i is scored against the context ending at i
                for position in range(max(start, context_width), len(ids) + 1):
                    context = tuple(ids[position - context_width : position])
                    window = (context, int(guesses[position - 1 - first]))
                    (skipped if (*context, window[1]) in seen else found).append(window)
                    if position < len(ids):
                        seen.add((*context, ids[position]))
    return found, skipped


def _argmax_from(model, input_ids, attention, keep: int):
    """The model's argmax prediction at each of the last `keep` positions: through
    `logits_to_keep` where the model takes it (transformers' causal LMs), else all logits cut."""
    import inspect

    inputs = {"input_ids": input_ids.to(model.device), "attention_mask": attention.to(model.device)}
    if "logits_to_keep" in inspect.signature(model.forward).parameters:
        inputs["logits_to_keep"] = keep
    return model(**inputs).logits[:, -keep:].argmax(-1).cpu()


def open_model_test(
    model,
    tokenizer,
    greens: GreenList,
    texts: Sequence[tuple[str | None, str]],
    skip_copyable: bool = True,
    reference: frozenset[Window] | None = None,
) -> RadioactivityResult:
    """Feed watermarked `texts` to a local suspect and score its next-token predictions, less
    the windows of `reference` when given (`skip_copyable=False` only to measure what the
    copyable-window filter changes)."""
    found, skipped = open_model_windows(model, tokenizer, texts, greens.key.context_width)
    windows = found if skip_copyable else found + skipped
    return scored("open", len(texts), greens, windows, reference, len(skipped))


def load_suspect(folder: Path):
    """A local transformers model folder (weights and, ideally, its tokenizer), offline."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, dtype=torch.float32)
    return model.eval()
