"""Benign traffic from real ShareGPT conversations, as a provider's request log would show it."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from detectors.corpus import iter_conversations

DEFAULT_START = datetime(2026, 11, 20, tzinfo=UTC)


def benign_requests(
    sessions: int,
    accounts: int,
    seed: int = 7,
    start: datetime = DEFAULT_START,
    span_days: float = 6.0,
    with_history: bool = True,
    id_prefix: str = "benign",
) -> Iterator[dict]:
    """Real conversations as API requests (schema v1), one user turn per request.

    Each session belongs to one account, heavy-tailed (a few accounts own many sessions); think
    time between turns is exponential (mean 40 s). With `with_history` a follow-up carries the
    conversation so far in `messages`, as chat clients send it; without, only the turn's prompt.
    """
    rng = random.Random(seed)
    weights = [1 / (rank + 1) ** 1.1 for rank in range(accounts)]
    for number, conversation in enumerate(iter_conversations(limit=sessions)):
        account = rng.choices(range(accounts), weights)[0]
        clock = start + timedelta(seconds=rng.uniform(0, span_days * 24 * 3600))
        history: list[dict] = []
        for turn, (role, text) in enumerate(conversation.turns):
            history.append({"role": role, "content": text})
            if role != "user" or not text.strip():
                continue
            clock += timedelta(seconds=rng.expovariate(1 / 40))
            request = {
                "request_id": f"{id_prefix}-{seed}-{number}-{turn}",
                "account_id": f"acct-{account:04d}",
                "timestamp": clock.isoformat().replace("+00:00", "Z"),
                "model": "smollm2-135m-instruct",
                "endpoint": "/v1/chat/completions",
                "client": {"ip": f"198.51.100.{account % 250}", "user_agent": "python-httpx"},
            }
            if with_history:
                request["messages"] = list(history)
            else:
                request["prompt"] = text
            yield request
