"""Drive planned traffic through the provider's gateway in simulated-time order.

Generation is the slow part (the teacher runs ~20 tokens/s per stream on 2 cores), so the driver
first asks the teacher for every planned conversation in batches that share settings; the
gateway's per-request call then finds the answer in the teacher's response cache. Each request
still goes through `Gateway.handle`, the same path an HTTP client takes, and is logged as an event.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence

from students.actors import PlannedRequest
from students.gateway import ChatMessage, ChatRequest, Gateway
from students.teacher import GenerationSettings


def _settings(plan: PlannedRequest) -> GenerationSettings:
    return GenerationSettings(
        plan.temperature, plan.max_tokens, plan.n, plan.logprobs, plan.top_logprobs, 0
    )


def _conversation(plan: PlannedRequest) -> list[dict]:
    return [{"role": role, "content": content} for role, content in plan.messages]


def pregenerate(
    gateway: Gateway,
    plans: Sequence[PlannedRequest],
    batch_size: int = 16,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Fill the teacher's cache for every plan, batching plans that share settings."""
    groups: dict[GenerationSettings, list[list[dict]]] = defaultdict(list)
    for plan in plans:
        groups[_settings(plan)].append(_conversation(plan))
    done = 0
    for settings, conversations in groups.items():
        # Similar lengths in one batch: less padding to compute.
        ordered = sorted(conversations, key=lambda c: sum(len(m["content"]) for m in c))
        for start in range(0, len(ordered), batch_size):
            batch = ordered[start : start + batch_size]
            gateway.teacher.complete(batch, settings)
            done += len(batch)
            if progress:
                progress(done)


def drive(
    gateway: Gateway, plans: Sequence[PlannedRequest], progress: Callable[[int], None] | None = None
) -> list[tuple[PlannedRequest, dict]]:
    """Send every plan through the gateway in time order; returns (plan, API response) pairs."""
    pregenerate(gateway, plans, progress=progress)
    exchanges = []
    for plan in sorted(plans, key=lambda p: p.timestamp_ms):
        body = ChatRequest(
            messages=[ChatMessage(role=r, content=c) for r, c in plan.messages],
            temperature=plan.temperature,
            max_tokens=plan.max_tokens,
            n=plan.n,
            logprobs=plan.logprobs,
            top_logprobs=plan.top_logprobs,
            seed=0,
        )
        response = gateway.handle(
            plan.account_id, body, plan.client_ip, plan.user_agent, plan.timestamp_ms
        )
        exchanges.append((plan, response))
    return exchanges
