"""Analysts' feedback, measured: do false-positive dispositions teach the detector?

    python -m bench.feedback [--world sdk-developers] [--detector ours_static]

On a detection benchmark world (default `sdk-developers`, where the CPU default, `ours_static`,
still flags two of its three honest power users: the hard negatives), the detector is fitted on
the world's benign calibration history and reads the world's log (`bench.detection`'s
functions, same batches). The hard negatives it flags are then
marked `false_positive` through the real store functions (`services.dispositions`) in an
embedded store holding their requests, as an analyst would from the API; their stored requests
are added as benign evidence (`false_positive_evidence`, as `distillguard calibrate
--false-positives-from-store` does), a fresh detector is fitted on that, with them as
reviewed accounts (each gets a ceiling of its own; thresholds, distributions and forest stay the
ordinary accounts': `detectors.base.ReviewedCalibration`), and reads the same log again. The
table (`bench/results/feedback.md`, `-small` for `--small`): hard negatives, attackers and other
benign accounts flagged before and after. The target: no marked hard negative flagged again and
no attacker lost; the command exits 1 if either fails.

The evidence is the flagged accounts' own traffic from this log, so "after" is in-sample for
them: it shows the feedback loop works end to end, not how it generalises to the next power user.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from bench.detection import (
    DETECTORS,
    CachedEmbedder,
    Run,
    batches,
    cached_embedder,
    calibration_for,
    evaluate,
    make_detector,
    markdown_table,
    run_detector,
)
from bench.pipeline import CACHE
from bench.readme import result_path
from bench.scenario import Scenario
from bench.worlds import WORLDS
from core.events import Event
from detectors.registry import events_in_file
from services.auth import create_token
from services.dispositions import BenignEvidence, false_positive_evidence, set_disposition
from storage import EmbeddedClickHouse, Store
from storage.rows import event_row
from students.measured import measured_by, write_table

console = Console(width=140)
COLUMNS = ("accounts", "flagged before", "flagged after", "extraction before", "after")


def flagged(run: Run, accounts: list[str]) -> tuple[list[str], list[str]]:
    """Of `accounts`: those flagged at all (`suspicious` or graver), and `extraction`."""
    return (
        [a for a in accounts if a in run.first_flag_any],
        [a for a in accounts if a in run.first_flag_extraction],
    )


def store_log(store: Store, path: Path, accounts: set[str]) -> int:
    """The accounts' requests of the log into the store's `events`, as a worker would have
    written them (only theirs: the only ones feedback reads back)."""
    rows = [event_row(e) for e in events_in_file(path) if e.account_id in accounts]
    return store.insert("events", rows)


def mark_false_positives(scenario: Scenario, accounts: list[str], folder: Path) -> BenignEvidence:
    """Mark `accounts` false positive in a fresh embedded store holding their requests, and
    read them back as benign evidence, through the functions the API and the CLI use."""
    store = EmbeddedClickHouse(folder, database="feedback")
    try:
        store.migrate()
        store_log(store, scenario.events_path, set(accounts))
        _, analyst = create_token(store, "analyst", "bench-feedback")
        for account in accounts:
            set_disposition(
                store, "account", account, "false_positive", analyst, reason="bench: hard negative"
            )
        return false_positive_evidence(store)
    finally:
        store.close()


def one_run(
    name: str,
    embedder: CachedEmbedder,
    calibration: list[Event],
    scenario: Scenario,
    label: str,
    reviewed: list[str] | None = None,
) -> tuple[Run, dict]:
    lines = scenario.events_path.read_bytes().splitlines()
    detector = make_detector(name, embedder)
    work = batches(lines, 200, 5)
    run = run_detector(name, detector, calibration, work, label=label, reviewed=reviewed or ())
    return run, evaluate(run, scenario)


def main(
    world: Annotated[str, typer.Option(help="The benchmark world.")] = "sdk-developers",
    detector: Annotated[str, typer.Option(help=f"One of {', '.join(DETECTORS)}.")] = "ours_static",
    small: Annotated[bool, typer.Option(help="The world's small variant.")] = False,
) -> None:
    """Before/after false-positive feedback on one benchmark world (see the module docstring)."""
    wall = time.perf_counter()
    scenario = WORLDS[world].build(small, False, console.print)
    plan = calibration_for("own", world, {world: scenario})
    assert plan is not None
    embedder = cached_embedder(CACHE)
    hard = scenario.accounts(lambda actor: actor.startswith("power:"))
    attackers = scenario.accounts(lambda actor: actor.startswith("attack:"))
    benign = sorted(set(scenario.benign) - set(hard))

    before, result = one_run(detector, embedder, plan.events, scenario, "before feedback")
    marked = flagged(before, hard)[0]
    console.print(f"hard negatives flagged before: {marked or 'none'}")
    if not marked:  # nothing for an analyst to dismiss: the loop cannot be measured here
        console.print(f"no hard negative flagged by {detector} on {world}: choose another world")
        raise typer.Exit(2)
    with tempfile.TemporaryDirectory(prefix="dg-feedback-") as folder:
        evidence = mark_false_positives(scenario, marked, Path(folder))
    history = list(evidence.merged(plan.events))
    after, _ = one_run(detector, embedder, history, scenario, "after feedback", evidence.accounts)

    table = Table(title=f"False-positive feedback: {detector} on {world} ({result['version']})")
    for column in COLUMNS:
        table.add_column(column, justify="left" if column == "accounts" else "right")
    rows: list[list[str]] = []
    for label, accounts in (
        (f"hard negatives ({len(hard)})", hard),
        (f"attackers ({len(attackers)})", attackers),
        (f"other benign ({len(benign)})", benign),
    ):
        (any_before, ext_before), (any_after, ext_after) = (
            flagged(before, accounts),
            flagged(after, accounts),
        )
        counts = [str(len(x)) for x in (any_before, any_after, ext_before, ext_after)]
        table.add_row(label, *counts)
        rows.append([label, *counts])
    console.print(table)
    summary = evidence.summary()
    console.print(
        f"marked false positive: {marked}; benign evidence added: {summary['events']} requests "
        f"of {summary['accounts']} accounts ({summary['unreadable']} unreadable); calibration "
        f"{len(plan.events)} → {len(history)} requests"
    )
    lost = sorted(set(flagged(before, attackers)[0]) - set(flagged(after, attackers)[0]))
    still = flagged(after, marked)[0]
    console.print(f"hard negatives still flagged after: {still or 'none'}")
    seconds = time.perf_counter() - wall
    console.print(f"attackers lost: {lost or 'none'}; wall time {seconds:.0f} s")
    notes = [
        f"Marked false positive: {', '.join(f'`{a}`' for a in marked) or 'none'}; "
        f"benign evidence added: {summary['events']:,} requests of {summary['accounts']} "
        f"accounts; calibration {len(plan.events):,} → {len(history):,} requests. "
        f"Still flagged after: {', '.join(f'`{a}`' for a in still) or 'none'}. "
        f"Attackers lost: {', '.join(f'`{a}`' for a in lost) or 'none'}.",
    ]
    written = write_table(
        result_path("feedback-small" if small else "feedback"),
        "\n".join([*markdown_table(COLUMNS, rows), "", *notes]),
        measured_by(seconds=seconds, note=f"detector `{detector}`, world `{world}`"),
    )
    console.print(f"table → {written}")
    if lost or still:  # the target: no hard negative flagged again, no attacker lost
        raise typer.Exit(1)


if __name__ == "__main__":
    typer.run(main)
