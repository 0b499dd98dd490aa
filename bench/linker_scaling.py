"""How the campaign linker's cost grows with the population it links.

    python -m bench.linker_scaling [--worlds sharegpt-chat,sdk-developers,...] [--batch 500]

Each detection world alone, then all of them at once: every world's log and benign history
moved onto one time origin (each world by one constant offset, so it keeps its own daily shape)
with its ids prefixed (`bench.detection.from_world`), so the merged stream holds the worlds'
accounts side by side and each 10-minute event-time slice about as many requests as their slices
together; then all of them in turn, each world starting a day after the previous one ends (one
population replaced by the next for four months: what a long-running linker keeps of accounts
that stopped, its state at the end says). The CPU default (`ours_static`) is fitted on the
(merged) benign history, then reads the (merged) log twice in the same batches: as a deployed
worker (profiles published for the linker, not linked) and linking in process (as `score` and
the demo do); the linker's cost a request is the difference. One compute thread, as the roles
run.

Why: the capacity model scaled the linker by its cost a request on one world of about 400
accounts. A linker compares each account it sees with the partners its evidence names (rare
skeletons and parameter signatures, client contexts, a user agent in the same hour,
near-duplicate prompts in a week's index), and the more accounts share a stream, the more
partners each one has and the larger the index it searches: a worker's cost a request does not
depend on the population, the linker's does. The table (`bench/results/linker-scaling.md`) is
what the README's capacity model reads the linker's load from.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Annotated

import orjson
import typer
from rich.console import Console

from bench.detection import batches, from_world, make_detector, markdown_table, run_detector
from bench.readme import result_path
from bench.scenario import Scenario
from bench.worlds import WORLDS
from core.events import Event
from core.settings import Settings
from core.timeutil import DAY_MS
from detectors.base import fit_with_reviewed
from detectors.campaigns.eventtime import TICK_MS
from detectors.registry import events_in_file
from distillguard.wiring import limit_compute_threads
from streaming.profiles import MemoryPublisher
from students.measured import measured_by, write_table

console = Console(width=140)
DETECTOR = "ours_static"
ROLES = ("worker", "in process")
COLUMNS = (
    "worlds",
    "accounts",
    "days",
    "requests",
    "requests per 10-min slice",
    "worker µs a request",
    "in process µs a request",
    "linker µs a request",
    "linker requests/s a core",
    "linker state MB at the end",
    "clusters",
)


def _moved(events: list[Event], world: str, offset_ms: int) -> list[Event]:
    shift = timedelta(milliseconds=offset_ms)
    return [
        moved.model_copy(update={"timestamp": moved.timestamp - shift})
        for moved in (from_world(event, world) for event in events)
    ]


def one_population(
    scenarios: Mapping[str, Scenario], origin_ms: int, in_turn: bool = False
) -> tuple[list[Event], list[Event]]:
    """The worlds' logs and benign histories as one stream each, in time order: ids prefixed by
    world, each world moved so that its log's first request falls on `origin_ms` (its history
    by the same offset), or, `in_turn`, a day after the previous world's last request (one
    population replaced by the next, month after month)."""
    log: list[Event] = []
    history: list[Event] = []
    start = origin_ms
    for name, scenario in scenarios.items():
        events = list(events_in_file(scenario.events_path))
        offset = min(event.timestamp_ms for event in events) - start
        moved = _moved(events, name, offset)
        log += moved
        history += _moved(list(events_in_file(scenario.calibration_path)), name, offset)
        if in_turn:
            start = max(event.timestamp_ms for event in moved) + DAY_MS
    log.sort(key=lambda event: event.timestamp_ms)
    history.sort(key=lambda event: event.timestamp_ms)
    return log, history


def per_slice(events: list[Event], tick_ms: int = TICK_MS) -> float:
    """Mean requests in the event-time slices the linker is fed that hold any."""
    slices = {event.timestamp_ms // tick_ms for event in events}
    return len(events) / len(slices) if slices else 0.0


def measure(label: str, log: list[Event], history: list[Event], batch: int) -> list[str]:
    """Fit once, then the log as a worker and linking in process; the table's row."""
    fitted = make_detector(DETECTOR, None, timed=True)
    fit_with_reviewed(fitted, history, ())
    calibration = fitted.calibration()
    lines = [event.model_dump_json().encode() for event in log]
    detectors = {role: make_detector(DETECTOR, None, timed=True) for role in ROLES}
    runs = {
        role: run_detector(
            DETECTOR,
            detector,
            calibration,
            batches(lines, batch, 0),
            label=f"{label}, {role}",
            publisher=MemoryPublisher() if role == "worker" else None,
        )
        for role, detector in detectors.items()
    }
    worker, linked = (runs[role].seconds / len(log) * 1e6 for role in ROLES)
    linker = linked - worker
    clusters = {c.cluster_id for c in runs["in process"].cluster_verdicts if c.label != "dissolved"}
    state = orjson.dumps(detectors["in process"].campaign_view().state())
    days = (log[-1].timestamp_ms - log[0].timestamp_ms) / DAY_MS
    return [
        label,
        f"{len({event.account_id for event in log}):,}",
        f"{days:.0f}",
        f"{len(log):,}",
        f"{per_slice(log):.1f}",
        f"{worker:,.0f}",
        f"{linked:,.0f}",
        f"{linker:,.0f}",
        f"{1e6 / linker:,.0f}" if linker > 0 else "—",
        f"{len(state) / 1e6:.1f}",
        str(len(clusters)),
    ]


def main(
    worlds: Annotated[str, typer.Option(help="Comma-separated detection worlds.")] = ",".join(
        WORLDS
    ),
    batch: Annotated[int, typer.Option(help="Requests a batch, as a worker polls them.")] = 500,
    small: Annotated[bool, typer.Option(help="The worlds' small builds.")] = False,
) -> None:
    """Each world alone, then all together: worker and linker cost a request."""
    wall = time.perf_counter()
    limit_compute_threads(Settings())
    names = [name.strip() for name in worlds.split(",") if name.strip()]
    scenarios = {name: WORLDS[name].build(small, False, console.print) for name in names}
    origin = min(
        min(event.timestamp_ms for event in events_in_file(s.events_path))
        for s in scenarios.values()
    )
    populations = [(name, {name: scenarios[name]}, False) for name in names]
    if len(names) > 1:
        populations.append((f"all {len(names)} at once", scenarios, False))
        populations.append((f"all {len(names)} in turn", scenarios, True))
    rows = []
    for label, members, in_turn in populations:
        log, history = one_population(members, origin, in_turn)
        rows.append(measure(label, log, history, batch))
        console.print(" | ".join(rows[-1]))
    seconds = time.perf_counter() - wall
    written = write_table(
        result_path("linker-scaling-small" if small else "linker-scaling"),
        "\n".join(markdown_table(COLUMNS, rows)),
        measured_by(
            seconds=seconds,
            note=f"detector `{DETECTOR}`, batches of {batch}, one compute thread; µs of wall "
            "time a request on an otherwise idle machine",
        ),
    )
    console.print(f"table → {written}")


if __name__ == "__main__":
    typer.run(main)
