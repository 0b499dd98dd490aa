"""Interactive attack strategies against the real teacher, through the gateway: each strategy's
traffic has the property that defines it, and every request it sends is a logged schema-v1 event.

Budgets and answer lengths are tiny: with a cold teacher cache the file took 4 min 20 s on 2 busy
cores (load ~6), warm 1 min (the active learner's students are retrained every run). Answers are
cached in the test cache, which every test's data folder links (`tests/conftest.py`).
"""

from __future__ import annotations

import math
import random
import re
import statistics
from pathlib import Path

import pytest
import torch

import students.distill as distill
import students.interactive as interactive
from core.events import Event, parse_event
from core.settings import Settings
from students.actors import DAY_MS, AttackConfig, PlannedRequest, benign_users
from students.distill import Pair, encode
from students.gateway import Gateway, JsonlEventLog
from students.interactive import active_learning, paraphrase_blending, self_instruct
from students.prompts import attack_conversations, attack_pool, benign_conversations
from students.teacher import Teacher

pytestmark = pytest.mark.models

Exchange = tuple[PlannedRequest, dict]


@pytest.fixture(scope="module")
def teacher() -> Teacher:
    return Teacher(Settings().data_dir / "teacher")


def answer(response: dict) -> str:
    return response["choices"][0]["message"]["content"]


def sharegpt_prompts() -> set[str]:
    return {p for c in (*benign_conversations(), *attack_conversations()) for p in c.user_prompts}


def logged(exchanges: list[Exchange], path: Path) -> list[Event]:
    """Every exchange is one valid schema-v1 event in the gateway's log, saying what was sent."""
    events = [parse_event(line, path.name) for line in path.read_bytes().splitlines()]
    invalid = [e for e in events if not isinstance(e, Event)]
    assert not invalid, invalid
    assert len(events) == len(exchanges)
    by_id = {e.request_id: e for e in events}
    for plan, response in exchanges:
        event = by_id[response["id"]]
        assert event.account_id == plan.account_id and event.timestamp_ms == plan.timestamp_ms
        assert [(m.role, m.content) for m in event.messages or []] == list(plan.messages)
        assert event.response == answer(response)
        assert event.params.temperature == plan.temperature
        assert event.client.ip == plan.client_ip and event.client.user_agent == plan.user_agent
    return events


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def overlap(a: str, b: str) -> float:
    """Jaccard similarity of the two texts' word sets."""
    first, second = words(a), words(b)
    return len(first & second) / max(len(first | second), 1)


def test_self_instruct_harvests_instructions_the_teacher_invented(
    teacher: Teacher, tmp_path: Path
) -> None:
    config = AttackConfig(budget=6, seed=3, max_tokens=8)
    log = tmp_path / "requests.jsonl"
    exchanges = self_instruct(Gateway(teacher, JsonlEventLog(log)), config, batch=4)
    logged(exchanges, log)  # the requests asking for new instructions are logged too
    assert len({(p.account_id, p.client_ip) for p, _ in exchanges}) == 1

    public = set(attack_pool())
    public_or_sharegpt = public | sharegpt_prompts()
    known = {p[:300] for p in public}  # examples are shown cut to 300 characters
    invented: list[str] = []
    rounds: list[tuple[int, list[str]]] = []  # (tasks invented before it, requests for new ones)
    after_harvest = True
    for plan, _ in exchanges:  # in the order sent
        if plan.harvest:
            # A new instruction the teacher wrote in answer to an earlier request, asked greedily.
            assert plan.prompt.strip() and plan.prompt not in public_or_sharegpt
            assert plan.prompt not in invented
            assert plan.temperature == 0.0 and plan.max_tokens == config.max_tokens
            assert any(
                plan.prompt in answer(r)
                for p, r in exchanges
                if not p.harvest and p.timestamp_ms < plan.timestamp_ms
            )
            invented.append(plan.prompt)
        else:
            if after_harvest:
                rounds.append((len(invented), []))
            # Three examples, each a seed task or one the teacher invented in an earlier round.
            shown = {t for t in known | {i[:300] for i in invented} if f". {t}\n" in plan.prompt}
            assert len(shown) == 3, plan.prompt
            rounds[-1][1].append(plan.prompt)
        after_harvest = plan.harvest
    assert len(invented) == config.budget and len(rounds) >= 2
    # The pool grows: the second round shows the teacher instructions it invented in the first.
    earlier, asks = rounds[1]
    assert earlier > 0 and any(f". {t[:300]}\n" in a for a in asks for t in invented[:earlier])

    again = self_instruct(
        Gateway(teacher, JsonlEventLog(tmp_path / "again.jsonl")), config, batch=4
    )
    assert [p for p, _ in again] == [p for p, _ in exchanges]  # seeded


def mean_entropy(tokenizer, student, prompt: str) -> float:
    """The student's uncertainty about a prompt: mean entropy of its next-token distributions."""
    ids, start = encode(tokenizer, Pair(prompt, ""))
    with torch.inference_mode():
        logits = student(input_ids=torch.tensor([ids[:start]])).logits[0]
    return float(torch.distributions.Categorical(logits=logits).entropy().mean())


def test_active_learning_asks_what_the_current_student_is_least_sure_of(
    teacher: Teacher, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    public = tuple(p for p in attack_pool() if 30 <= len(p) <= 300)[:36]
    monkeypatch.setattr(interactive, "attack_pool", lambda: public)
    students: list[tuple[list[Pair], object]] = []
    train = distill.train_student

    def recording_train(tokenizer, pairs, **kwargs):
        model = train(tokenizer, pairs, **kwargs)
        students.append((list(pairs), model))
        return model

    monkeypatch.setattr(distill, "train_student", recording_train)
    rounds, per_round = 3, 4
    log = tmp_path / "requests.jsonl"
    exchanges = active_learning(
        Gateway(teacher, JsonlEventLog(log)),
        AttackConfig(budget=rounds * per_round, seed=5, max_tokens=8),
        rounds=rounds,
        candidates=len(public),
    )
    logged(exchanges, log)
    plans = [p for p, _ in exchanges]
    assert len(plans) == rounds * per_round and len({p.account_id for p in plans}) == 1
    assert all(p.harvest and p.temperature == 0.0 and p.prompt in public for p in plans)
    assert len({p.prompt for p in plans}) == len(plans)  # never the same query twice

    # After each round the student is retrained on everything harvested so far...
    assert len(students) == rounds - 1
    for index, (pairs, _) in enumerate(students):
        so_far = exchanges[: (index + 1) * per_round]
        assert pairs == [Pair(p.prompt, answer(r)) for p, r in so_far]
    # ...and the next round queries the public prompts that student is least sure of.
    tokenizer = teacher.tokenizer
    for index, (pairs, student) in enumerate(students):
        asked = {pair.prompt for pair in pairs}
        chosen = {p.prompt for p in plans[(index + 1) * per_round : (index + 2) * per_round]}
        entropy = {p: mean_entropy(tokenizer, student, p) for p in public if p not in asked}
        # A student that learned something: sure of some prompts, unsure of others (an untrained
        # one is uniform over the vocabulary, entropy log(49152) = 10.8 for every prompt).
        assert min(entropy.values()) < 0.8 * math.log(len(tokenizer))
        assert max(entropy.values()) - min(entropy.values()) > 0.01  # untrained: ~1e-4
        picked = [entropy[p] for p in chosen]
        passed = [e for p, e in entropy.items() if p not in chosen]
        assert min(picked) >= max(passed) - 1e-5  # the top of the ranking (float32 noise ~1e-6)
        assert statistics.mean(picked) > statistics.mean(passed)


def test_paraphrase_blending_rewords_pool_prompts_among_real_conversations(
    teacher: Teacher, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    budget = 8
    candidates = [p for p in attack_pool() if 30 <= len(p) <= 400]  # short: cheap to reword
    public = tuple(random.Random(0).sample(candidates, budget))
    monkeypatch.setattr(interactive, "attack_pool", lambda: public)
    local: list[tuple[tuple[str, ...], str]] = []  # every (conversation, answer) generated
    complete = teacher.complete

    def recording_complete(conversations, settings):
        results = complete(conversations, settings)
        local.extend(
            (tuple(m["content"] for m in c), r[0].text)
            for c, r in zip(conversations, results, strict=True)
        )
        return results

    monkeypatch.setattr(teacher, "complete", recording_complete)
    log = tmp_path / "requests.jsonl"
    exchanges = paraphrase_blending(
        Gateway(teacher, JsonlEventLog(log)), AttackConfig(budget=budget, seed=3, max_tokens=8)
    )
    events = logged(exchanges, log)
    plans = [p for p, _ in exchanges]
    assert len({(p.account_id, p.client_ip) for p in plans}) == 1

    # Harvested prompts are the teacher's rewordings of pool prompts, made off the API (the
    # rewrite requests are not in the log), and never a pool prompt verbatim.
    sent = {tuple(m.content for m in e.messages or []) for e in events}
    rewrites = {a.strip(): c[-1] for c, a in local if c not in sent}
    harvest = [p.prompt for p in plans if p.harvest]
    assert len(harvest) == budget
    originals = {}
    for prompt in harvest:
        request = rewrites[prompt]
        (original,) = [p for p in public if p in request]
        originals[prompt] = original
        assert prompt not in attack_pool() and prompt not in sharegpt_prompts()
    assert sorted(originals.values()) == sorted(public)  # each pool prompt reworded once
    own = [overlap(prompt, original) for prompt, original in originals.items()]
    other = [overlap(h, o) for h in harvest for o in public if o != originals[h]]
    assert statistics.mean(own) > 2 * statistics.mean(other)
    closest = sum(
        overlap(h, originals[h]) > max(overlap(h, o) for o in public if o != originals[h])
        for h in harvest
    )
    assert closest > budget / 2

    # Cover traffic: real attack-side ShareGPT conversations, with their real earlier turns.
    cover = [p for p in plans if not p.harvest]
    assert cover and any(len(p.messages) > 1 for p in cover)
    conversations = {c.turns[: len(p.messages)] for c in attack_conversations() for p in cover}
    assert all(p.messages in conversations for p in cover)
    # Mixed in: cover requests fall between harvested ones, all at a human pace over days...
    times = [p.timestamp_ms for p in plans]
    harvest_times = [p.timestamp_ms for p in plans if p.harvest]
    assert any(min(harvest_times) < p.timestamp_ms < max(harvest_times) for p in cover)
    assert max(times) - min(times) > DAY_MS
    assert statistics.median(b - a for a, b in zip(times, times[1:], strict=False)) > 60_000
    # ...with the sampling settings and client of ordinary chat users.
    benign = benign_users(accounts=10, sessions=50, days=2, seed=0)
    assert {p.temperature for p in plans} <= {p.temperature for p in benign}
    assert {p.user_agent for p in plans} <= {p.user_agent for p in benign}
    assert {(p.n, p.logprobs) for p in plans} == {(1, False)}
