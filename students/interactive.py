"""Attack strategies that react to the teacher's answers: self-instruct coverage expansion,
active learning by student uncertainty, and paraphrase blending.

They run rounds: plan a batch of requests, send it through the gateway (`drive`), read the
answers, plan the next batch. Every request an attacker sends to the API, including those that
ask the teacher to invent new instructions, goes through the gateway and is logged.
"""

from __future__ import annotations

import random
import re

from students.actors import (
    DAY_MS,
    AttackConfig,
    Clock,
    PlannedRequest,
)
from students.driver import drive
from students.gateway import Gateway
from students.prompts import attack_conversations, attack_pool
from students.teacher import GenerationSettings

Exchange = tuple[PlannedRequest, dict]
_NUMBERED = re.compile(r"^\s*(?:\d+[.)]|[-*])\s*")


def _answer(response: dict) -> str:
    return response["choices"][0]["message"]["content"]


def _first_line(text: str) -> str:
    for line in text.splitlines():
        line = _NUMBERED.sub("", line).strip().strip('"')
        if len(line) > 15:
            return line
    return ""


def self_instruct(gateway: Gateway, config: AttackConfig, batch: int = 16) -> list[Exchange]:
    """Alpaca-style: show the teacher three known instructions, ask for a new one, then harvest
    the teacher's answer to it; new instructions join the pool that seeds later rounds."""
    rng = random.Random(config.seed)
    pool = list(rng.sample(attack_pool(), 12))
    seen = set(pool)
    account = f"selfinstruct-{config.seed}"
    moment = Clock(rng).start_ms + config.start_day * DAY_MS + 8 * 3_600_000
    exchanges: list[Exchange] = []
    harvested = 0
    while harvested < config.budget:
        asks = []
        for _ in range(batch):
            examples = "\n".join(f"{i + 1}. {p[:300]}" for i, p in enumerate(rng.sample(pool, 3)))
            moment += int(rng.uniform(0.5, 2.0) * 1000)
            asks.append(
                PlannedRequest(
                    "attack:self_instruct",
                    account,
                    moment,
                    (
                        (
                            "user",
                            "Here are some example tasks:\n"
                            + examples
                            + "\nWrite one new task that is different from these. "
                            "Reply with the task only.",
                        ),
                    ),
                    temperature=1.0,
                    max_tokens=48,
                    client_ip="203.0.113.60",
                    user_agent="python-httpx/0.27",
                    harvest=False,
                )
            )
        exchanges += (generated := drive(gateway, asks))
        # Unique, non-empty new tasks only: an answer with no usable line gives "".
        lines = (_first_line(_answer(r)) for _, r in generated)
        fresh = list(dict.fromkeys(t for t in lines if t and t not in seen))
        harvest = []
        for task in fresh[: config.budget - harvested]:
            seen.add(task)
            pool.append(task)
            moment += int(rng.uniform(0.5, 2.0) * 1000)
            harvest.append(
                PlannedRequest(
                    "attack:self_instruct",
                    account,
                    moment,
                    (("user", task),),
                    temperature=0.0,
                    max_tokens=config.max_tokens,
                    client_ip="203.0.113.60",
                    user_agent="python-httpx/0.27",
                )
            )
        exchanges += drive(gateway, harvest)
        harvested += len(harvest)
    return exchanges


def paraphrase_blending(gateway: Gateway, config: AttackConfig) -> list[Exchange]:
    """Attack prompts reworded by the attacker's own copy of an open model (the same weights,
    run locally, so not logged), sent at a human pace and mixed with ordinary conversations."""
    rng = random.Random(config.seed)
    originals = rng.sample(attack_pool(), config.budget)
    rewrite = GenerationSettings(temperature=0.9, max_tokens=96, seed=config.seed)
    paraphrased = []
    for start in range(0, len(originals), 16):
        chunk = originals[start : start + 16]
        answers = gateway.teacher.complete(
            [
                [
                    {
                        "role": "user",
                        "content": "Rewrite this request in different words, keeping its "
                        f"meaning. Reply with the rewritten request only.\n\n{text[:600]}",
                    }
                ]
                for text in chunk
            ],
            rewrite,
        )
        paraphrased += [a[0].text.strip() or text for a, text in zip(answers, chunk, strict=True)]
    clock = Clock(rng, utc_offset_h=1)
    cover = attack_conversations()
    account = f"blend-{config.seed}"
    plans = []
    days = int(config.extra.get("days", 7))
    for prompt in paraphrased:
        moment = clock.diurnal_moment(config.start_day + rng.randrange(days))
        plans.append(
            PlannedRequest(
                "attack:paraphrase_blending",
                account,
                moment,
                (("user", prompt),),
                temperature=0.7,
                max_tokens=config.max_tokens,
                client_ip="198.18.5.9",
                user_agent="Mozilla/5.0 chat-ui",
            )
        )
        if rng.random() < float(config.extra.get("cover_ratio", 0.5)):
            # The first two user turns of a real conversation, with its real earlier turns as
            # history, as an ordinary chat client would send them.
            history: list[tuple[str, str]] = []
            sent = 0
            for role, text in cover[rng.randrange(len(cover))].turns:
                history.append((role, text))
                if role != "user" or not text.strip():
                    continue
                moment += int(rng.expovariate(1 / 60) * 1000) + 5000
                plans.append(
                    PlannedRequest(
                        "attack:paraphrase_blending",
                        account,
                        moment,
                        tuple(history),
                        temperature=0.7,
                        max_tokens=min(96, config.max_tokens),
                        client_ip="198.18.5.9",
                        user_agent="Mozilla/5.0 chat-ui",
                        harvest=False,
                    )
                )
                sent += 1
                if sent == 2:
                    break
    return drive(gateway, plans)


def active_learning(
    gateway: Gateway, config: AttackConfig, rounds: int = 4, candidates: int = 400
) -> list[Exchange]:
    """KnockoffNets/ActiveThief-style: after each round, train the current student on what was
    harvested and query the public-pool prompts it is least sure about (highest mean entropy of
    its next-token distributions over the prompt)."""
    import torch

    from students.distill import Pair, encode, train_student

    rng = random.Random(config.seed)
    pool = rng.sample(attack_pool(), min(candidates, len(attack_pool())))
    tokenizer = gateway.teacher.tokenizer
    per_round = max(1, config.budget // rounds)
    account = f"active-{config.seed}"
    moment = Clock(rng).start_ms + config.start_day * DAY_MS + 10 * 3_600_000
    exchanges: list[Exchange] = []
    pairs: list[Pair] = []
    chosen = rng.sample(pool, per_round)  # round 0: random, the student knows nothing yet
    for round_number in range(rounds):
        plans = []
        for prompt in chosen:
            moment += int(rng.uniform(1.0, 3.0) * 1000)
            plans.append(
                PlannedRequest(
                    "attack:active_learning",
                    account,
                    moment,
                    (("user", prompt),),
                    temperature=0.0,
                    max_tokens=config.max_tokens,
                    client_ip="203.0.113.88",
                    user_agent="python-requests/2.32",
                )
            )
        harvested = drive(gateway, plans)
        exchanges += harvested
        pairs += [Pair(plan.prompt, _answer(r)) for plan, r in harvested]
        asked = {p.prompt for p in pairs}
        pool = [p for p in pool if p not in asked]
        if round_number == rounds - 1 or not pool:
            break
        # Two epochs of a few pairs are a handful of steps, after which the student is still
        # uniform (entropy ~log(vocab) for every prompt, within 1e-4): its "uncertainty" would
        # be noise. At least 30 steps make it sure of what it has seen and unsure of the rest.
        student = train_student(tokenizer, pairs, epochs=2, seed=config.seed, min_steps=30)
        scores = []
        with torch.inference_mode():
            for prompt in pool:
                ids, start = encode(tokenizer, Pair(prompt, ""))
                logits = student(input_ids=torch.tensor([ids[:start]])).logits[0]
                probabilities = torch.softmax(logits, -1)
                entropy = -(probabilities * torch.log(probabilities + 1e-12)).sum(-1).mean()
                scores.append((float(entropy), prompt))
        chosen = [prompt for _, prompt in sorted(scores, reverse=True)[:per_round]]
    return exchanges


INTERACTIVE_STRATEGIES = {
    "self_instruct": self_instruct,
    "active_learning": active_learning,
    "paraphrase_blending": paraphrase_blending,
}
