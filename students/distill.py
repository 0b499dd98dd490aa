"""Student distillation: train a small causal LM on (prompt, response) pairs an attacker
harvested from the teacher, and measure how faithfully it imitates the teacher.

The student shares the teacher's tokenizer (SmolLM2, 49,152 tokens) and is a 2-layer Llama of
~6.7M parameters, trainable on 2 CPU cores in minutes. The loss covers response tokens only.
Fidelity on held-out prompts: next-token agreement with the teacher's own answer (teacher-forced)
and ROUGE-L between the student's greedy answer and the teacher's.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

from provenance.chat import (
    PROMPT_TOKENS,
    RESPONSE_TOKENS,
    Pair,
    encode,
    greedy,
    pad_id,
)

Precision = Literal["fp32", "bf16", "auto"]  # "auto": bf16 where the hardware multiplies it
PRECISIONS: tuple[str, ...] = get_args(Precision)


@dataclass
class Fidelity:
    """How close a student is to the teacher on held-out prompts."""

    pairs_trained: int
    next_token_agreement: float
    rouge_l: float
    loss: float


def student_config(vocab_size: int, hidden: int = 128, layers: int = 2):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=PROMPT_TOKENS + RESPONSE_TOKENS + 8,
        tie_word_embeddings=True,
    )


def _batch(tokenizer, encoded: Sequence[tuple[list[int], int]], device: Any = "cpu"):
    import torch

    width = max(len(ids) for ids, _ in encoded)
    pad = pad_id(tokenizer)
    input_ids = torch.full((len(encoded), width), pad, dtype=torch.long)
    labels = torch.full((len(encoded), width), -100, dtype=torch.long)
    attention = torch.zeros((len(encoded), width), dtype=torch.long)
    for row, (ids, start) in enumerate(encoded):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        attention[row, : len(ids)] = 1
        labels[row, start : len(ids)] = torch.tensor(ids[start:])
    return input_ids.to(device), attention.to(device), labels.to(device)


def new_student(tokenizer, base_embeddings=None, seed: int = 0, hidden: int = 128, layers: int = 2):
    """A fresh student. With `base_embeddings` (the teacher's token embeddings, which an attacker
    can read off any open checkpoint of the same family) its tied input/output embeddings start
    from their top principal components, as attackers start from a pretrained base."""
    import torch
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    model = LlamaForCausalLM(student_config(len(tokenizer), hidden, layers))
    if base_embeddings is not None:
        hidden = model.config.hidden_size
        with torch.no_grad():
            centred = base_embeddings.float() - base_embeddings.float().mean(0)
            _, _, components = torch.pca_lowrank(centred, q=hidden, center=False)
            projected = centred @ components[:, :hidden]
            projected *= 0.02 * hidden**0.5 / projected.std()
            model.get_input_embeddings().weight.copy_(projected)
    return model


def teacher_embeddings(teacher_model):
    """The teacher's input token embeddings (the student's warm start)."""
    return teacher_model.get_input_embeddings().weight.detach()


def native_bf16(device: str) -> bool:
    """Whether `device` multiplies bfloat16 matrices in hardware: a CPU with AVX512-BF16 or AMX
    (twice float32's rate on one core, measured on an AMD EPYC), a GPU that supports it.
    Elsewhere bfloat16 is emulated and no faster than float32."""
    import torch

    if torch.device(device).type == "cuda":
        return torch.cuda.is_bf16_supported()
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def trains_in_bf16(device: str, precision: Precision) -> bool:
    """Whether `train_student` multiplies in bfloat16 (mixed precision) for `precision`."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision is one of {', '.join(PRECISIONS)}, not {precision!r}")
    return precision == "bf16" or (precision == "auto" and native_bf16(device))


PRECISION_LABELS = {"bf16": "bf16 mixed precision", "fp32": "float32"}


def resolved_precision(device: str, precision: Precision) -> Precision:
    """The precision `precision` trains in on `device`, "auto" made concrete ("bf16" or
    "fp32"): what a report records as run."""
    return "bf16" if trains_in_bf16(device, precision) else "fp32"


def response_loss(model, input_ids, attention, labels):
    """Next-token cross-entropy on response positions only. Projecting just those hidden states
    onto the 49k-token vocabulary (not every prompt position too) makes a training step ~2-3x
    cheaper on CPU; a student with a trimmed vocabulary (students/vocabulary.py) projects them
    onto its kept tokens only. The value equals the model's own `labels=` loss."""
    import torch

    hidden = model.model(input_ids=input_ids, attention_mask=attention).last_hidden_state
    targets = labels[:, 1:]
    scored = targets != -100
    head = model.lm_head
    # the output layer in float32 under mixed precision too: bf16 logits round to ~1/64 of
    # their size, coarser than the margins a student learns between its candidate tokens
    with torch.autocast(hidden.device.type, enabled=False):
        positions = hidden[:, :-1][scored].float()
        if hasattr(head, "kept_logits"):
            logits, wanted = head.kept_logits(positions), head.targets(targets[scored])
        else:
            logits, wanted = head(positions), targets[scored]
    return torch.nn.functional.cross_entropy(logits, wanted)


def train_student(
    tokenizer,
    pairs: Sequence[Pair],
    epochs: int = 3,
    batch_size: int = 8,
    learning_rate: float = 3e-3,
    seed: int = 0,
    base_embeddings=None,
    min_steps: int = 0,
    trim_vocabulary: bool = False,
    model=None,
    constant_rate: bool = False,
    after_step: Callable[[Any, int], None] | None = None,
    segments: Sequence[int] = (),
    device: str = "cpu",
    precision: Precision = "fp32",
):
    """A student trained on `pairs` (response tokens only); returns the model: `model` (e.g. a
    pruned teacher, students/pruned.py; its frozen parameters stay frozen) or else a new
    from-scratch student. `constant_rate` warms up over 4 steps then holds the rate instead of
    a one-cycle schedule over all steps, so that a one-epoch student snapshotted after its first
    n pairs is the student trained on those n pairs alone; `after_step(model, pairs_seen)` is
    where such snapshots are measured (it must leave the model in train mode). `min_steps`
    raises the epoch count for small harvests so every student gets a comparable update budget.
    `segments` (pair indices) split `pairs` into runs that are shuffled among themselves only,
    and no batch spans two: with one epoch at a constant rate, the snapshot at a segment's start
    is the student trained on exactly the pairs before it (an attacker's pre-detection harvest).
    `trim_vocabulary` restricts its softmax to the tokens of `pairs` (students/vocabulary.py:
    several times cheaper per step, same token ids out; not for held-out loss) and trains on one
    thread. `device` ("cpu", "cuda", ...) is where it trains and stays (trimmed first, on the
    CPU, so the trimmed modules' buffers move with it). `precision` "bf16" (or "auto" where
    `native_bf16`) trains in mixed precision, as fine-tuning on accelerators does: matrix
    products in bfloat16 under autocast, weights, gradients and AdamW state in float32, the output
    layer and the loss in float32; the student it returns is float32."""
    import torch

    if model is None:
        model = new_student(tokenizer, base_embeddings, seed)
    encoded = [encode(tokenizer, pair) for pair in pairs]
    if trim_vocabulary:
        from students.vocabulary import corpus_ids
        from students.vocabulary import trim_vocabulary as trim

        trim(model, corpus_ids(tokenizer, (ids for ids, _ in encoded)))
    model.to(device)
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=learning_rate, weight_decay=0.01)
    order = list(range(len(encoded)))
    rng = random.Random(seed)
    cuts = [0, *sorted({c for c in segments if 0 < c < len(encoded)}), len(encoded)]
    spans = list(zip(cuts, cuts[1:], strict=False))
    per_epoch = max(1, sum(-(-(hi - lo) // batch_size) for lo, hi in spans))
    epochs = max(epochs, -(-min_steps // per_epoch))
    steps = epochs * per_epoch
    scheduler: torch.optim.lr_scheduler.LRScheduler = (
        torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / 4))
        if constant_rate
        else torch.optim.lr_scheduler.OneCycleLR(optimizer, learning_rate, total_steps=steps)
    )
    bf16, device_type = trains_in_bf16(device, precision), torch.device(device).type
    # the CPU's fused bf16 attention is slow backwards (3.5x float32's, torch 2.15): eager
    # attention (bf16 products, float32 softmax) while it trains, 14 % of a pruned step
    attention_kind = model.config._attn_implementation
    eager = bf16 and device_type == "cpu" and attention_kind not in (None, "eager")
    if eager:
        model.set_attn_implementation("eager")
    seen = 0
    threads = torch.get_num_threads()
    if trim_vocabulary and device == "cpu":
        # A trimmed step has no tensor big enough for intra-op threads to pay for their joins; on
        # 2 cores shared with other work one thread made it 6x faster (0.075 s against 0.47 s).
        torch.set_num_threads(1)
    try:
        for _ in range(epochs):
            batches = []
            for lo, hi in spans:
                part = order[lo:hi]
                rng.shuffle(part)  # one span: the same draws as shuffling `order` in place
                order[lo:hi] = part
                batches += [part[s : s + batch_size] for s in range(0, len(part), batch_size)]
            for chosen in batches:
                input_ids, attention, labels = _batch(
                    tokenizer, [encoded[i] for i in chosen], device
                )
                with torch.autocast(device_type, dtype=torch.bfloat16, enabled=bf16):
                    loss = response_loss(model, input_ids, attention, labels)
                optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(trainable, 1.0)
                optimizer.step()
                scheduler.step()
                seen += len(chosen)
                if after_step is not None:
                    after_step(model, seen)
    finally:
        torch.set_num_threads(threads)
        if eager:
            model.set_attn_implementation(attention_kind)
    model.eval()
    return model


def measure_fidelity(
    tokenizer, model, held_out: Sequence[Pair], pairs_trained: int, generate_tokens: int = 32
) -> Fidelity:
    """Next-token agreement (teacher-forced on the teacher's answers) and ROUGE-L of greedy
    student answers against the teacher's, on held-out prompts (`generate_tokens=0`: no
    generation, ROUGE-L reads 0; agreement alone is several times cheaper)."""
    import torch
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"])
    agree = total = 0
    losses, rouges = [], []
    with torch.inference_mode():
        for start in range(0, len(held_out), 16):
            pairs = held_out[start : start + 16]
            chunk = [encode(tokenizer, p) for p in pairs]
            input_ids, attention, labels = _batch(tokenizer, chunk, model.device)
            output = model(input_ids=input_ids, attention_mask=attention, labels=labels)
            losses.append(float(output.loss))
            predicted = output.logits[:, :-1].argmax(-1)
            target = labels[:, 1:]
            mask = target != -100
            agree += int((predicted[mask] == target[mask]).sum())
            total += int(mask.sum())
            if not generate_tokens:
                continue
            texts = greedy(tokenizer, model, chunk, generate_tokens, repetition_penalty=1.3)
            for pair, text in zip(pairs, texts, strict=True):
                rouges.append(scorer.score(pair.response, text)["rougeL"].fmeasure)
    return Fidelity(
        pairs_trained,
        agree / max(total, 1),
        sum(rouges) / max(len(rouges), 1),
        sum(losses) / max(len(losses), 1),
    )


def learning_curve(
    tokenizer,
    pairs: Sequence[Pair],
    held_out: Sequence[Pair],
    sizes: Sequence[int],
    epochs: int = 3,
    seed: int = 0,
    base_embeddings=None,
    min_steps: int = 0,
) -> list[Fidelity]:
    """Fidelity of students trained on the first `n` harvested pairs, for each n in `sizes`
    (n = 0 is the untrained student: the floor every gain is measured from)."""
    curve = []
    for size in sizes:
        if size:
            model = train_student(
                tokenizer,
                pairs[:size],
                epochs=epochs,
                seed=seed,
                base_embeddings=base_embeddings,
                min_steps=min_steps,
            )
        else:
            model = new_student(tokenizer, base_embeddings, seed).eval()
        curve.append(measure_fidelity(tokenizer, model, held_out, size))
    return curve
