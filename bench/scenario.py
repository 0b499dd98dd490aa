"""Detection-benchmark traffic: a seeded request log with its ground truth
(`students.scenario`, which `distillguard validate` shares), printed by actor.

    python -m bench.scenario [--small] [--rebuild]
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.console import Console
from rich.table import Table

from students.scenario import (
    ALL_STRATEGIES,
    CAMPAIGN,
    FULL,
    SINGLE_ACCOUNT,
    SMALL,
    Log,
    Scenario,
    ScenarioConfig,
    build,
)

__all__ = [
    "ALL_STRATEGIES",
    "CAMPAIGN",
    "FULL",
    "SINGLE_ACCOUNT",
    "SMALL",
    "Log",
    "Scenario",
    "ScenarioConfig",
    "build",
    "requests_per_account",
]


def requests_per_account(path: Path) -> Counter[str]:
    return Counter(orjson.loads(line)["account_id"] for line in path.read_bytes().splitlines())


def main(
    small: Annotated[bool, typer.Option(help="The small scenario (no teacher).")] = False,
    rebuild: Annotated[bool, typer.Option(help="Ignore the cached build.")] = False,
) -> None:
    console = Console(width=110)
    scenario = build(SMALL if small else FULL, rebuild=rebuild, log=console.print)
    counts = requests_per_account(scenario.events_path)
    by_actor: dict[str, list[int]] = {}
    for account, actor in scenario.actors.items():
        by_actor.setdefault(actor, []).append(counts[account])
    table = Table(title=f"scenario {scenario.config.key}: {scenario.events_path}")
    for column in ("actor", "accounts", "requests", "max per account"):
        table.add_column(column, justify="right")
    for actor, sizes in sorted(by_actor.items()):
        table.add_row(actor, str(len(sizes)), str(sum(sizes)), str(max(sizes)))
    console.print(table)
    calibration = requests_per_account(scenario.calibration_path)
    console.print(f"calibration: {len(calibration)} accounts, {calibration.total()} requests")


if __name__ == "__main__":
    typer.run(main)
