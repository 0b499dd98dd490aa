"""Build the traffic worlds and print who is in each.

python -m bench.worlds [--small] [--rebuild] [--worlds sdk-developers,rag-pipelines]
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from bench.scenario import requests_per_account
from bench.worlds import WORLDS


def main(
    small: Annotated[bool, typer.Option(help="The small variants (seconds to build).")] = False,
    rebuild: Annotated[bool, typer.Option(help="Ignore the cached builds.")] = False,
    worlds: Annotated[str, typer.Option(help="Comma-separated world names (default all).")] = "",
) -> None:
    console = Console(width=120)
    names = [n.strip() for n in worlds.split(",") if n.strip()] or list(WORLDS)
    unknown = [n for n in names if n not in WORLDS]
    if unknown:
        raise typer.BadParameter(f"unknown worlds {unknown}; known: {list(WORLDS)}")
    for name in names:
        world = WORLDS[name]
        scenario = world.build(small, rebuild, console.print)
        counts = requests_per_account(scenario.events_path)
        by_actor: dict[str, list[int]] = {}
        for account, actor in scenario.actors.items():
            by_actor.setdefault(actor, []).append(counts[account])
        table = Table(title=f"{name} ({scenario.events_path.stem}): {world.log_shape}")
        for column in ("actor", "accounts", "requests", "max per account"):
            table.add_column(column, justify="right")
        for actor, sizes in sorted(by_actor.items()):
            table.add_row(actor, str(len(sizes)), str(sum(sizes)), str(max(sizes)))
        console.print(table)
        calibration = requests_per_account(scenario.calibration_path)
        console.print(
            f"events: {counts.total()} requests, {len(counts)} accounts; calibration: "
            f"{calibration.total()} requests, {len(calibration)} accounts\n"
        )


if __name__ == "__main__":
    typer.run(main)
