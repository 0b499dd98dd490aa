"""The `distillguard` command line (typer). Commands are thin: they parse options and call
the library, so every entry point shares the same code paths.

Conventions (README, "Commands"): a command's result goes to stdout (`--json`: one JSON document
and nothing else); progress bars, warnings and errors go to stderr. A store or Kafka that cannot
be reached ends the command with one line on stderr and its exit code (`ExitCode`), never a
traceback: `_Commands.invoke` maps those errors once, for every command."""

from __future__ import annotations

import logging
import math
import os
import re
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import click
import typer
from rich.console import Console
from typer.core import TyperGroup

from core.progress import steps
from core.records import REPLAY_PER_ACCOUNT
from core.settings import Settings, get_settings
from core.timeutil import END_OF_TIME_MS
from core.version import full_version

if TYPE_CHECKING:
    from core.events import DeadLetter
    from core.formats import LogFormat
    from storage import Store
    from students.distill import Precision


class ExitCode(IntEnum):
    """What `distillguard` exits with (documented in the README and `--help`)."""

    OK = 0
    FAILED = 1  # the command could not do its work (e.g. no data for a report)
    USAGE = 2  # bad options or arguments (click's own code), or invalid DG_* configuration
    STORE_UNAVAILABLE = 3  # ClickHouse (or the embedded chDB store) unreachable or failing
    KAFKA_UNAVAILABLE = 4  # no Kafka broker reachable, or Kafka refused or timed out
    REPORT_TAMPERED = 5  # `report verify`: a file, the manifest or the signature changed
    REPORT_UNSIGNED = 6  # `report verify`: every hash matches, but nothing signs the manifest
    ENDPOINT_UNAVAILABLE = 7  # an HTTP endpoint the command calls (a suspect model) unreachable


EXIT_CODES_HELP = (
    "Exit codes: 0 ok; 1 failed; 2 usage or configuration error; "
    "3 store (ClickHouse) unavailable; 4 Kafka unavailable; "
    "5 report verify: the report was altered; 6 report verify: the report is not signed; "
    "7 an HTTP endpoint (e.g. provenance test --endpoint) unreachable."
)


class ConfigurationError(ValueError):
    """DG_* settings that name no usable service (e.g. a malformed DG_CLICKHOUSE_URL)."""


def _open_store(settings: Settings, **options: Any) -> Store:
    """`storage.open_store`, with a refused setting reported as a configuration error; a
    context manager (`with _open_store(settings) as store:` closes it)."""
    from storage import open_store

    try:
        return open_store(settings, **options)
    except ValueError as error:
        raise ConfigurationError(str(error)) from error


def service_failure(error: BaseException) -> tuple[str, ExitCode] | None:
    """One line and an exit code for an error that means a service is down or misconfigured
    (the error itself or what it was raised from); None for anything else (a bug: traceback)."""
    from storage.base import StoreError

    for cause in (error, error.__cause__):
        if isinstance(cause, ConfigurationError):
            return f"invalid configuration: {_one_line(cause)}", ExitCode.USAGE
        if isinstance(cause, StoreError):
            return f"store unavailable: {_one_line(cause)}", ExitCode.STORE_UNAVAILABLE
        # Only a command that used Kafka has imported it: no import cost for the others.
        kafka_errors = sys.modules.get("kafka.errors")
        if kafka_errors is not None and isinstance(cause, kafka_errors.KafkaError):
            return (
                f"Kafka unavailable at {_bootstrap()}: {_one_line(cause)}",
                ExitCode.KAFKA_UNAVAILABLE,
            )
        httpx = sys.modules.get("httpx")
        if httpx is not None and isinstance(cause, httpx.TransportError):
            where = cause.request.url if _has_request(cause) else "an HTTP endpoint"
            return f"{where} unreachable: {_one_line(cause)}", ExitCode.ENDPOINT_UNAVAILABLE
        settings_error = sys.modules.get("pydantic_settings")
        if settings_error is not None and isinstance(cause, settings_error.SettingsError):
            return f"invalid configuration: {_one_line(cause)}", ExitCode.USAGE
        pydantic_core = sys.modules.get("pydantic_core")
        if (
            pydantic_core is not None
            and isinstance(cause, pydantic_core.ValidationError)
            and cause.title == "Settings"
        ):
            # The fields and what is wrong with them; never the input (it may be a secret).
            problems = "; ".join(
                f"{'.'.join(map(str, problem['loc'])) or 'settings'}: {problem['msg']}"
                for problem in cause.errors()
            )
            return f"invalid configuration: {_one_line(problems)}", ExitCode.USAGE
    return None


def _has_request(error: Any) -> bool:
    """httpx raises RuntimeError on `.request` of an error raised outside a request."""
    try:
        return error.request is not None
    except RuntimeError:
        return False


def _one_line(error: object) -> str:
    """The error's message on one line, any credentials in it masked."""
    return str(mask_credentials(" ".join(str(error).split()) or type(error).__name__))


def _bootstrap() -> str:
    try:
        return get_settings().kafka_bootstrap
    except Exception:  # the settings are broken too: the Kafka error still says enough
        return "the configured bootstrap servers"


class _Commands(TyperGroup):
    """The root group: every command runs inside `invoke`, so a service that is down is mapped
    to one stderr line and an exit code here, once."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as error:
            failure = service_failure(error)
            if failure is None:
                raise
            message, code = failure
            print(f"distillguard: {message}", file=sys.stderr, flush=True)
            raise typer.Exit(code) from None


app = typer.Typer(
    cls=_Commands,
    help="DistillGuard: catch and prove model-extraction attacks.",
    epilog=EXIT_CODES_HELP,
    no_args_is_help=True,
)
console = Console(stderr=True)
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print the result as one JSON document on stdout.")
]
MetricsPortOption = Annotated[
    int | None,
    typer.Option(help="Port of /metrics and /healthz (default DG_METRICS_PORT; 0 disables)."),
]
FormatOption = Annotated[
    str,
    typer.Option(
        "--format",
        help="Log format of the input: distillguard (schema v1), litellm, otel, openai-batch "
        "(needs --account), or mapping:PATH (a TOML field mapping). README: choosing a log format.",
    ),
]
BatchSizeOption = Annotated[int, typer.Option(help="Events per checkpoint, at most.")]
PerAccountOption = Annotated[
    int,
    typer.Option(
        help="End a batch when one account has this many requests in it, as a live worker's "
        "polls would, so a replay gives a live stream's verdicts; 0: batches of --batch-size "
        "only."
    ),
]
AccountOption = Annotated[
    str | None,
    typer.Option(help="Account of events whose payload names none (openai-batch: required)."),
]
StartOption = Annotated[
    str | None,
    typer.Option(
        help="openai-batch: when the batch was submitted, every line's timestamp (RFC3339 or "
        "epoch ms; default: the file's modification time)."
    ),
]
PrecisionOption = Annotated[
    str | None,
    typer.Option(
        help="Students' training: auto (bf16 mixed precision where the device multiplies bf16 "
        "natively; the default), bf16 or fp32 (--quick's default)."
    ),
]


def _precision(value: str | None, default: Precision) -> Precision:
    """`--precision` checked against the choices `train_student` takes (None: `default`)."""
    from students.distill import PRECISIONS

    if value is not None and value not in PRECISIONS:
        raise typer.BadParameter(", ".join(PRECISIONS), param_hint="--precision")
    return cast("Precision", value or default)


# The audit log is the evidence of who read what: retention never drops it.
RETENTION_PROTECTED = frozenset({"audit_log"})
# scheme://userinfo@ (userinfo up to the last "@" of the word, so a password with "@" is masked
# whole), and credentials passed as query parameters.
_URL_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][\w+.-]*://)(?P<userinfo>\S*)@")
_URL_SECRET_PARAMETER = re.compile(
    r"(?P<key>[?&;](?:password|passwd|pwd|secret|token|access_token|api_key|key)=)[^&;#\s]*",
    re.IGNORECASE,
)


def _print_version(value: bool) -> None:
    if value:
        print(full_version())
        raise typer.Exit()


@app.callback()
def _main(
    ctx: typer.Context,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print the DistillGuard version and exit.",
        ),
    ] = False,
) -> None:
    """Settings come from DG_* environment variables and an optional distillguard.toml.
    Results go to stdout (--json where a script reads them); progress and errors to stderr."""
    # Everything a command writes (the data folder, the embedded store, reports, calibrations)
    # holds prompts and evidence: private to the user (0700 folders, 0600 files) while it runs.
    previous = os.umask(0o077)
    ctx.call_on_close(lambda: os.umask(previous))
    # The driver logs each refused connection with a traceback; the store's own error (one
    # line, mapped to exit code 3) already names the server.
    logging.getLogger("clickhouse_driver.connection").setLevel(logging.ERROR)


@app.command()
def version() -> None:
    """Print the DistillGuard version (with the commit, in a git checkout)."""
    print(full_version())


@app.command("config")
def show_config(as_json: JsonOption = False) -> None:
    """Print the effective settings (secrets masked)."""
    settings = {key: mask_credentials(value) for key, value in get_settings().model_dump().items()}
    emit(as_json, settings, *(f"{key} = {value}" for key, value in settings.items()))


def mask_credentials(value: object) -> object:
    """A setting as `config` shows it: credentials inside any URL are masked, in every string
    setting and list of them (`user:***@`; a lone user part is often a token: `***@`)."""
    if isinstance(value, list | tuple):
        return [mask_credentials(item) for item in value]
    if not isinstance(value, str):
        return value

    def userinfo(match: re.Match[str]) -> str:
        user, colon, _password = match["userinfo"].partition(":")
        return f"{match['scheme']}{user + ':***' if colon else '***'}@"

    return _URL_SECRET_PARAMETER.sub(r"\g<key>***", _URL_USERINFO.sub(userinfo, value))


def emit(as_json: bool, document: object, *lines: str) -> None:
    """A command's result on stdout: `document` as one JSON document with --json, else the
    human `lines`."""
    if as_json:
        import orjson

        options = orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
        print(orjson.dumps(document, option=options, default=str).decode(), flush=True)
    else:
        for line in lines:
            print(line, flush=True)


def count_lines(path: Path) -> int:
    """Lines of a file (a progress bar's total), read in 1 MiB blocks."""
    with path.open("rb") as handle:
        return sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 20), b""))


def file_format(path: Path, name: str, account: str | None, start: str | None) -> LogFormat:
    """The `--format` of one input file; an openai-batch file's lines are timestamped with
    `--start`, else with the file's modification time (see core/formats/openai_batch.py)."""
    from core.events import parse_timestamp
    from core.formats import FormatError, log_format

    try:
        if start is None:
            moment = datetime.fromtimestamp(path.stat().st_mtime, UTC)
        else:
            moment = parse_timestamp(int(start) if start.isdigit() else start)
        return log_format(name, account=account, start=moment)
    except (FormatError, ValueError) as error:
        raise typer.BadParameter(str(error)) from error


def fit_on_file(detector, path: Path, log_format: LogFormat | None = None, evidence=None):
    """`detector.fit` on a JSONL file's events, with a progress bar: reading, then fitting;
    with `evidence` (`services.dispositions.BenignEvidence`) merged in by time, its accounts
    the reviewed ones (`detectors.base.fit_with_reviewed`)."""
    from detectors.base import fit_with_reviewed
    from detectors.registry import events_in_file

    with steps(f"reading {path.name}", total=count_lines(path), console=console) as bar:
        events = bar.track(events_in_file(path, log_format), then="fitting the detector")
        if evidence is None:
            return detector.fit(events)
        return fit_with_reviewed(detector, evidence.merged(events), evidence.accounts)


@app.command()
def migrate(as_json: JsonOption = False) -> None:
    """Create the database and apply pending schema migrations."""
    with _open_store(get_settings(), migrate=False) as store:
        applied = store.migrate()
        at = max(store.applied_migrations())
    emit(
        as_json,
        {"backend": store.backend, "database": store.database, "applied": applied, "at": at},
        f"{store.backend} store {store.database}: applied {applied or 'nothing'}; "
        f"at migration {at}",
    )


@app.command()
def retention(
    table: Annotated[
        str, typer.Option(help="Day-partitioned table to prune, or `all` (never audit_log).")
    ] = "events",
    before: Annotated[
        str, typer.Option(help="Drop whole days before this date (YYYY-MM-DD).")
    ] = "",
    as_json: JsonOption = False,
) -> None:
    """Drop daily partitions older than a date (how retention works on every ClickHouse).
    The audit log is never dropped."""
    if table in RETENTION_PROTECTED:
        raise typer.BadParameter(
            f"{table} is evidence of who read what: retention never drops it", param_hint="--table"
        )
    try:
        cutoff = date.fromisoformat(before)
    except ValueError:
        raise typer.BadParameter("a date (YYYY-MM-DD) is required", param_hint="--before") from None
    tables = retention_tables() if table == "all" else [table]
    with _open_store(get_settings()) as store:
        dropped = {name: store.drop_partitions_before(name, cutoff) for name in tables}
    emit(
        as_json,
        {"before": cutoff.isoformat(), "dropped": dropped},
        *(
            f"dropped {len(parts)} partitions of {name}: {', '.join(parts) or '-'}"
            for name, parts in dropped.items()
        ),
    )


def retention_tables() -> list[str]:
    """What `retention --table all` prunes: every day-partitioned table but the protected."""
    from storage.schema import TABLES

    return [
        name
        for name, table in TABLES.items()
        if table.partition_time_column and name not in RETENTION_PROTECTED
    ]


@app.command()
def replay(
    events: Annotated[Path, typer.Argument(help="JSONL request log.", exists=True, dir_okay=False)],
    batch_size: BatchSizeOption = 2000,
    per_account: PerAccountOption = REPLAY_PER_ACCOUNT,
    log_format: FormatOption = "distillguard",
    account: AccountOption = None,
    start: StartOption = None,
    as_json: JsonOption = False,
) -> None:
    """Run a JSONL request log through the pipeline into the store (idempotent: rerun freely)."""
    from distillguard.wiring import heap_built_so_far_frozen, store_pipeline
    from streaming.files import run_file

    fmt = file_format(events, log_format, account, start)
    settings = get_settings()
    with _open_store(settings) as store:
        pipeline = store_pipeline(settings, store)
        with heap_built_so_far_frozen():
            totals = run_file(pipeline, events, batch_size, log_format=fmt, per_account=per_account)
    emit(
        as_json,
        {
            "events": totals.events,
            "dead_letters": totals.dead_letters,
            "verdicts": len(totals.verdicts),
            "already_counted": totals.replayed,
            "duplicates": totals.duplicates,
            "backend": store.backend,
            "database": store.database,
        },
        f"{totals.events} events, {totals.dead_letters} dead letters, "
        f"{len(totals.verdicts)} verdicts, {totals.replayed} already counted, "
        f"{totals.duplicates} resends of stored events → {store.backend} store {store.database}",
    )


@app.command()
def calibrate(
    benign: Annotated[Path, typer.Option(help="Benign JSONL history.", exists=True)],
    out: Annotated[Path, typer.Option(help="Model folder to write.")],
    target_fpr: Annotated[float, typer.Option(help="Share of benign accounts to flag.")] = 0.001,
    live: Annotated[
        Path | None,
        typer.Option(
            help="A JSONL sample of recent live traffic: warn when the benign history looks "
            "different from it.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    log_format: FormatOption = "distillguard",
    account: AccountOption = None,
    start: StartOption = None,
    false_positives_from_store: Annotated[
        bool,
        typer.Option(
            help="Add the stored requests of every account analysts marked false_positive "
            "(dispositions) to the benign history: the detector does not flag them again unless "
            "their behaviour changes materially.",
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Fit detector thresholds on benign history at a target false-positive rate; print the
    false-positive rate they give on held-out benign accounts and what to doubt about it.
    --format applies to --benign and --live."""
    from detectors.base import calibration_of
    from detectors.registry import events_in_file, save_calibration
    from distillguard.wiring import build_detector

    fmt = file_format(benign, log_format, account, start)
    settings = get_settings()
    evidence = None
    if false_positives_from_store:
        from services.dispositions import false_positive_evidence

        with _open_store(settings) as store:
            evidence = false_positive_evidence(store)
    detector = fit_on_file(build_detector(settings, target_fpr), benign, fmt, evidence)
    report = getattr(detector, "calibration_report_", None)
    if live is not None:
        if report is None:
            console.print(
                f"[yellow]warning:[/] --live needs the fused detector, not {detector.name}"
            )
        else:
            from detectors.fusion import calibration

            with steps(f"comparing {live.name}", count_lines(live), console=console) as bar:
                live_events = events_in_file(live, file_format(live, log_format, account, start))
                report["live"] = calibration.compare_live(detector, bar.track(live_events))
    path = save_calibration(detector, out)
    summary = {
        key: value
        for key, value in calibration_of(detector).items()
        if key == "thresholds" or not isinstance(value, list | dict | None)
    }
    for warning in _calibration_warnings(report):
        console.print(f"[yellow]warning:[/] {warning}")
    emit(
        as_json,
        {
            "detector": detector.name,
            "target_fpr": target_fpr,
            "calibration": summary,
            "model": str(path),
            "report": report,
            **({"false_positives": evidence.summary()} if evidence is not None else {}),
        },
        *(_calibration_report_lines(report) if report is not None else []),
        *([_evidence_line(evidence.summary())] if evidence is not None else []),
        f"calibrated {detector.name} at FPR {target_fpr}: {summary} → {path}",
    )


def _evidence_line(summary: dict[str, int]) -> str:
    return (
        f"false positives added as benign evidence: {summary['events']:,} requests of "
        f"{summary['accounts']:,} accounts"
        + (
            f" ({summary['unreadable']:,} hashed at ingest, left out)"
            if summary["unreadable"]
            else ""
        )
    )


def _calibration_warnings(report: dict | None) -> list[str]:
    if report is None:
        return []
    live = report.get("live")
    return [*report["warnings"], *(live["warnings"] if live else [])]


def _calibration_report_lines(report: dict) -> Iterator[str]:
    """The held-out false-positive rates next to the tail's prediction (one line each: they
    read the same in a terminal and a log; the warnings go to stderr)."""

    def percent(share: float) -> str:
        return f"{100 * share:.2g}%"

    yield (
        f"benign history: {report['accounts']:,} accounts with a score, {report['requests']:,} "
        f"requests over {report['history_days']:.1f} days; thresholds from {report['folds']}-fold "
        "held-out peaks"
    )
    for label, level in report["levels"].items():
        low, high = level["interval"]
        per, per_low, per_high = level["per_1000_accounts"]
        yield (
            f"  {label}: threshold {level['threshold']:.2f} (in-sample "
            f"{level['in_sample_threshold']:.2f}); FPR target {percent(level['target_fpr'])}, "
            f"tail predicts {percent(level['predicted_fpr'])}, held-out "
            f"{percent(level['measured_fpr'])} (95% {percent(low)}–{percent(high)}); "
            f"expect {per:.2g} flagged per 1,000 honest accounts over "
            f"{report['history_days']:.0f} days (95% {per_low:.2g}–{per_high:.2g})"
            + (" [extrapolated]" if level["extrapolated"] else "")
        )
    live = report.get("live")
    if live is not None:
        moved = ", ".join(f"{s} {psi:.2f}" for s, psi in sorted(live["psi"].items())) or "-"
        yield f"live sample: {live['accounts']:,} accounts; PSI by signal: {moved}"


@app.command()
def score(
    events: Annotated[Path, typer.Option(help="JSONL request log.", exists=True, dir_okay=False)],
    out: Annotated[Path, typer.Option(help="Verdict JSONL to write.")],
    calibration: Annotated[
        Path | None,
        typer.Option(help="Benign JSONL to calibrate on, or a folder from `calibrate`."),
    ] = None,
    batch_size: BatchSizeOption = 2000,
    per_account: PerAccountOption = REPLAY_PER_ACCOUNT,
    log_format: FormatOption = "distillguard",
    account: AccountOption = None,
    start: StartOption = None,
    as_json: JsonOption = False,
) -> None:
    """Offline scoring with the same pipeline; without --calibration, self-calibrate on the
    stream (assumes attackers are a small minority of accounts). --format applies to the
    events and to a --calibration file."""
    from detectors.registry import load_calibration
    from distillguard.wiring import build_detector, build_pipeline, heap_built_so_far_frozen
    from streaming.files import run_file
    from streaming.sinks import VerdictFileSink

    fmt = file_format(events, log_format, account, start)
    settings = get_settings()
    detector = build_detector(settings)
    if calibration is not None and calibration.is_dir():
        load_calibration(detector, calibration)
    elif calibration is not None:
        fit_on_file(detector, calibration, file_format(calibration, log_format, account, start))
    else:
        fit_on_file(detector, events, fmt)
    sink = VerdictFileSink(out)
    try:
        pipeline = build_pipeline(settings, [sink], detector=detector)
        with heap_built_so_far_frozen():
            totals = run_file(pipeline, events, batch_size, log_format=fmt, per_account=per_account)
    finally:
        sink.close()
    flagged = len({v.account_id for v in totals.verdicts if v.label != "benign"})
    emit(
        as_json,
        {
            "events": totals.events,
            "dead_letters": totals.dead_letters,
            "verdicts": len(totals.verdicts),
            "accounts_flagged": flagged,
            "out": str(out),
        },
        f"{totals.events} events, {totals.dead_letters} dead letters, "
        f"{len(totals.verdicts)} verdicts ({flagged} accounts flagged) → {out}",
    )


@app.command()
def worker(
    metrics_port: MetricsPortOption = None,
    client_id: Annotated[str, typer.Option(help="Kafka client id of this worker.")] = "",
) -> None:
    """Kafka consumer-group worker: topic DG_TOPIC → pipeline → store; commits after the store."""

    from distillguard.wiring import (
        build_worker,
        heap_built_so_far_frozen,
        kafka_connection,
        limit_compute_threads,
    )
    from streaming.kafka import make_producer

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    # The worker reports outages itself, one line per state change; drivers would log each retry.
    logging.getLogger("kafka").setLevel(logging.ERROR)
    logging.getLogger("clickhouse_driver").setLevel(logging.CRITICAL)
    settings = get_settings()
    with _open_store(settings) as store:
        producer = make_producer(kafka_connection(settings))
        runner = build_worker(
            settings, store, producer, client_id or f"distillguard-worker-{os.getpid()}"
        )
        limit_compute_threads(settings)
        _serve_metrics(settings, metrics_port, "worker", runner.healthy)
        runner.install_signal_handlers()
        logging.getLogger("distillguard.worker").info(
            "consuming %s @ %s → %s store %s (group %s)",
            settings.topic,
            settings.kafka_bootstrap,
            store.backend,
            store.database,
            settings.consumer_group,
        )
        try:
            with heap_built_so_far_frozen():
                stats = runner.run()
        finally:
            producer.close()
    logging.getLogger("distillguard.worker").info(
        "worker stopped: batches=%d, consumed=%d, dead_letters=%d, verdicts=%d",
        stats.batches,
        stats.consumed,
        stats.dead_letters,
        stats.verdicts,
    )


@app.command()
def linker(
    client_id: Annotated[str, typer.Option(help="Kafka client id of this linker.")] = "",
    idle_s: Annotated[
        float, typer.Option(help="Quiet seconds, every partition caught up, before a final link.")
    ] = 5.0,
    checkpoint_s: Annotated[
        float,
        typer.Option(
            help="Seconds between checkpoints of the linker's state (and offset commits)."
        ),
    ] = 5.0,
    metrics_port: MetricsPortOption = None,
) -> None:
    """The campaign linker: every worker's profile updates → clusters and member verdicts in the
    store. Exactly one is active per consumer group; start another as a standby."""
    import signal

    from distillguard.wiring import build_linker, heap_built_so_far_frozen, limit_compute_threads

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("kafka").setLevel(logging.ERROR)
    settings = get_settings()
    with _open_store(settings) as store:
        role = build_linker(settings, store, client_id or f"distillguard-linker-{os.getpid()}")
        role.idle_s, role.checkpoint_s = idle_s, checkpoint_s
        limit_compute_threads(settings)
        _serve_metrics(settings, metrics_port, "linker", store.ping)

        def request_stop(_signum: int, _frame: object) -> None:
            role.stop.set()

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        logging.getLogger("distillguard.linker").info(
            "linking profiles of %s → %s store %s", settings.topic, store.backend, store.database
        )
        with heap_built_so_far_frozen():
            role.run()


@app.command()
def produce(
    events: Annotated[Path, typer.Argument(help="JSONL request log.", exists=True, dir_okay=False)],
    topic: Annotated[str | None, typer.Option(help="Topic (default DG_TOPIC).")] = None,
    partitions: Annotated[int, typer.Option(help="Partitions if the topic is created.")] = 4,
    log_format: FormatOption = "distillguard",
    account: AccountOption = None,
    start: StartOption = None,
    as_json: JsonOption = False,
) -> None:
    """Publish a JSONL request log to Kafka as schema v1, one message per event, keyed by
    account_id. Lines of another --format that do not map go to the dead-letter topic."""
    from core.batch import Batch
    from distillguard.wiring import kafka_connection
    from streaming.kafka import ensure_topic, make_producer, produce_lines
    from streaming.sinks import DeadLetterTopicSink

    fmt = file_format(events, log_format, account, start)
    settings = get_settings()
    topic = topic or settings.topic
    kafka = kafka_connection(settings)
    ensure_topic(kafka, topic, partitions)
    producer = make_producer(kafka)
    dlq = DeadLetterTopicSink(producer, settings.dlq_topic)
    dead = 0

    def dead_letter(letter: DeadLetter) -> None:
        nonlocal dead
        dead += 1
        dlq.write(Batch(dead_letters=[letter]))

    try:
        with steps(f"→ {topic}", count_lines(events), console) as bar, events.open("rb") as lines:
            sent = produce_lines(
                producer,
                topic,
                (line.rstrip(b"\r\n") for line in lines),
                on_sent=bar.update,
                log_format=fmt,
                on_dead=dead_letter,
                source=f"file:{events.name}",
            )
        dlq.flush()
    finally:
        producer.close()
    emit(
        as_json,
        {
            "published": sent,
            "dead_letters": dead,
            "topic": topic,
            "bootstrap": settings.kafka_bootstrap,
        },
        f"published {sent} messages to {topic} at {settings.kafka_bootstrap}"
        + (f", {dead} dead letters to {settings.dlq_topic}" if dead else ""),
    )


teacher_app = typer.Typer(help="The companion's teacher model behind an OpenAI-style API.")
app.add_typer(teacher_app, name="teacher")


@teacher_app.command("serve")
def teacher_serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8100,
    log: Annotated[
        Path | None, typer.Option(help="Log events to this JSONL file instead of Kafka.")
    ] = None,
    watermark: Annotated[
        bool | None,
        typer.Option(help="Watermark every answer (default: when DG_WATERMARK_KEY is set)."),
    ] = None,
) -> None:
    """Serve SmolLM2 at POST /v1/chat/completions, logging every request as an event."""
    import uvicorn

    from distillguard.wiring import kafka_connection
    from provenance.watermark import WatermarkKey
    from students.gateway import JsonlEventLog, KafkaEventLog, create_gateway
    from students.teacher import Teacher, watermarked

    settings = get_settings()
    event_log = (
        JsonlEventLog(log) if log else KafkaEventLog(kafka_connection(settings), settings.topic)
    )
    teacher = Teacher(settings.data_dir / "teacher")
    if watermark is None:
        watermark = settings.watermark_key is not None
    if watermark:
        try:
            key = WatermarkKey.from_settings(settings)
        except ValueError as error:
            raise typer.BadParameter(str(error)) from None
        teacher = watermarked(teacher, key)
    gateway = create_gateway(teacher, event_log)
    console.print(
        f"teacher on http://{host}:{port}/v1/chat/completions"
        f"{' (watermarked, ' + teacher.model_tag + ')' if watermark else ''}, events → "
        f"{log or settings.topic + ' @ ' + settings.kafka_bootstrap}"
    )
    uvicorn.run(gateway, host=host, port=port, log_level="warning")


@app.command()
def validate(
    quick: Annotated[
        bool, typer.Option(help="Small traffic, two strategies, 16 pairs (about a minute).")
    ] = False,
    out: Annotated[Path, typer.Option(help="Folder for JSON, markdown and PNG.")] = Path(
        ".distillguard/validation"
    ),
    seed: Annotated[int, typer.Option(help="Seed of the traffic (every actor).")] = 0,
    student: Annotated[
        str, typer.Option(help="pruned (the teacher, every k-th block) or scratch (6.7M).")
    ] = "pruned",
    every: Annotated[int, typer.Option(help="Pruned student: keep every k-th block.")] = 6,
    harvest_cap: Annotated[
        int, typer.Option(help="Harvested pairs per attacker a student trains on; 0: default.")
    ] = 0,
    seeds: Annotated[int, typer.Option(help="Training seeds per attacker; 0: default.")] = 0,
    precision: PrecisionOption = None,
    table_out: Annotated[
        Path | None, typer.Option(help="Also write the table the README quotes here.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """The detection benchmark's traffic through the pipeline; students trained on what each
    attacker harvested, read at its first flag: capability leaked before detection."""
    from dataclasses import replace

    from students.pruned import StudentSpec
    from students.validate import DEFAULT, QUICK, markdown, run_validation, write_results

    if student not in ("pruned", "scratch"):
        raise typer.BadParameter("pruned or scratch", param_hint="--student")
    config = QUICK if quick else DEFAULT
    config = replace(
        config,
        traffic=replace(config.traffic, seed=seed),
        student=StudentSpec(student, every=every),  # type: ignore[arg-type]
        harvest_cap=harvest_cap or config.harvest_cap,
        seeds=seeds or config.seeds,
        precision=_precision(precision, config.precision),
    )
    # run_validation logs one line per stage (traffic, detection, ...) and per attacker.
    with steps("validation", console=console) as bar:
        report = run_validation(config, get_settings(), out, log=bar.log)
    emit(as_json, report, markdown(report))
    if table_out:
        write_results(report, table_out)
    console.print(f"wrote {out / 'validation.json'}, validation.md, validation.png")


@app.command()
def demo(
    sessions: Annotated[int, typer.Option(help="ShareGPT sessions to replay.")] = 400,
    accounts: Annotated[int, typer.Option(help="Benign accounts they are spread over.")] = 60,
    serve_dashboard: Annotated[
        bool, typer.Option("--serve/--no-serve", help="Then serve the API and dashboard.")
    ] = True,
    port: Annotated[int, typer.Option(help="Port for the dashboard.")] = 8000,
) -> None:
    """Real-prompt traffic through the pipeline on embedded defaults, with a summary; then the
    dashboard on http://127.0.0.1:PORT with an analyst token printed."""
    from distillguard.demo import run_demo

    settings = get_settings()
    run_demo(settings, sessions=sessions, accounts=accounts, console=Console())
    if serve_dashboard:
        _serve(settings, host="127.0.0.1", port=port, print_token=True)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8000,
    print_token: Annotated[
        bool, typer.Option(help="Create an analyst token and print it (demos).")
    ] = False,
) -> None:
    """Serve the analysts' API and dashboard (tokens: `distillguard token create`)."""
    _serve(get_settings(), host, port, print_token)


def _serve(settings: Settings, host: str, port: int, print_token: bool) -> None:
    import threading

    import uvicorn

    from distillguard.wiring import build_api, uvicorn_options
    from services.auth import create_token

    store = _open_store(settings)
    api = build_api(settings, store)
    if print_token:
        token, _ = create_token(store, "analyst", "demo")
        console.print(f"dashboard: http://{host}:{port}/dashboard/ — sign in with this token:")
        print(token, flush=True)
    stop = threading.Event()
    dispatcher = _dispatcher(settings, store)
    if dispatcher:
        threading.Thread(target=dispatcher.run, args=(stop,), daemon=True).start()
    console.print(f"DistillGuard API on http://{host}:{port} (OpenAPI at /openapi.json)")
    try:
        uvicorn.run(api, host=host, port=port, log_level="warning", **uvicorn_options())
    finally:
        stop.set()


def _serve_metrics(
    settings: Settings, port: int | None, role: str, healthy: Callable[[], bool]
) -> None:
    """The role's /metrics and /healthz on DG_METRICS_HOST (`core.metrics`)."""
    from core.metrics import serve_metrics

    serve_metrics(
        settings.metrics_host, settings.metrics_port if port is None else port, role, healthy
    )


def _dispatcher(settings: Settings, store):
    """The webhook dispatcher, or None (with a warning) when no signing secret is set."""
    from distillguard.wiring import build_dispatcher

    dispatcher = build_dispatcher(settings, store)
    if dispatcher is None:
        console.print("[yellow]DG_WEBHOOK_SECRET is not set: alerts stay queued, unsent[/]")
    return dispatcher


alerts_app = typer.Typer(help="Webhook alerts: the durable outbox and its dispatcher.")
app.add_typer(alerts_app, name="alerts")


@alerts_app.command("dispatch")
def alerts_dispatch(
    once: Annotated[bool, typer.Option(help="Attempt due alerts once and exit.")] = False,
    metrics_port: MetricsPortOption = None,
    as_json: JsonOption = False,
) -> None:
    """Send due webhook alerts (signed), retrying with backoff for up to 24 hours."""
    import threading

    settings = get_settings()
    store = _open_store(settings)
    dispatcher = _dispatcher(settings, store)
    if dispatcher is None:
        raise typer.Exit(ExitCode.FAILED)
    if once:
        delivered = dispatcher.run_once()
        emit(as_json, {"delivered": delivered}, f"delivered {delivered}")
        return
    _serve_metrics(settings, metrics_port, "dispatcher", store.ping)
    dispatcher.run(threading.Event())


webhook_app = typer.Typer(help="Where alerts go: JSON, Slack or PagerDuty webhooks.")
app.add_typer(webhook_app, name="webhook")
ROUTING_KEY_ENV = "DG_PAGERDUTY_ROUTING_KEY"


@webhook_app.command("add")
def webhook_add(
    url: Annotated[str, typer.Argument(help="http(s) URL; its host must resolve publicly.")],
    fmt: Annotated[
        str, typer.Option("--format", help="json (signed payload), slack or pagerduty.")
    ] = "json",
    as_json: JsonOption = False,
) -> None:
    """Send alerts to URL from now on. A pagerduty webhook's routing key is read from
    DG_PAGERDUTY_ROUTING_KEY or a hidden prompt, never from the command line (shell history and
    `ps` would keep it), and stored sealed under DG_WEBHOOK_SECRET."""
    from services.webhooks import Format, add_webhook

    if fmt not in ("json", "slack", "pagerduty"):
        raise typer.BadParameter("json, slack or pagerduty", param_hint="--format")
    settings = get_settings()
    routing_key = None
    if fmt == "pagerduty":
        routing_key = os.environ.get(ROUTING_KEY_ENV) or typer.prompt(
            "PagerDuty routing key", hide_input=True, err=True
        )
    secret = (
        settings.webhook_secret.get_secret_value().encode() if settings.webhook_secret else None
    )
    with _open_store(settings) as store:
        try:
            webhook_id = add_webhook(
                store, url, cast(Format, fmt), settings.webhook_allow_networks, routing_key, secret
            )
        except ValueError as refused:  # the URL, or the routing key
            raise typer.BadParameter(str(refused)) from None
    emit(as_json, {"webhook_id": webhook_id, "url": url, "format": fmt}, webhook_id)


@webhook_app.command("list")
def webhook_list(as_json: JsonOption = False) -> None:
    """The active webhooks (routing keys are never shown)."""
    from services.webhooks import webhooks

    with _open_store(get_settings()) as store:
        hooks = [{k: h[k] for k in ("webhook_id", "url", "format")} for h in webhooks(store)]
    emit(as_json, hooks, *(f"{h['webhook_id']}  {h['format']:9}  {h['url']}" for h in hooks))


@webhook_app.command("remove")
def webhook_remove(webhook_id: Annotated[str, typer.Argument(help="The webhook's id.")]) -> None:
    """Stop sending alerts to a webhook."""
    from services.webhooks import remove_webhook

    with _open_store(get_settings()) as store:
        removed = remove_webhook(store, webhook_id)
    if not removed:
        raise typer.BadParameter(f"no webhook {webhook_id!r}")
    print(f"removed {webhook_id}")


token_app = typer.Typer(help="API tokens: create and revoke (only their hashes are stored).")
app.add_typer(token_app, name="token")


@token_app.command("create")
def token_create(
    role: Annotated[str, typer.Option(help="analyst (read, acknowledge, reports) or admin.")],
    name: Annotated[str, typer.Option(help="Who or what holds the token.")] = "cli",
    as_json: JsonOption = False,
) -> None:
    """Create a token and print it once (it cannot be shown again)."""
    from services.auth import ROLES, create_token

    if role not in ROLES:
        raise typer.BadParameter(f"role must be one of {', '.join(ROLES)}")
    with _open_store(get_settings()) as store:
        token, principal = create_token(store, role, name)  # type: ignore[arg-type]
    if not as_json:
        console.print(f"token {principal.token_id} ({principal.role}) for {name!r}:")
    document = {"token": token, "token_id": principal.token_id, "role": principal.role}
    emit(as_json, document | {"name": name}, token)


@token_app.command("revoke")
def token_revoke(token_id: Annotated[str, typer.Argument(help="The token's id.")]) -> None:
    """Revoke a token by id."""
    from services.auth import revoke_token

    with _open_store(get_settings()) as store:
        revoked = revoke_token(store, token_id)
    if not revoked:
        raise typer.BadParameter(f"no token {token_id!r}")
    print(f"revoked {token_id}")


dispositions_app = typer.Typer(help="Analysts' dispositions of accounts and campaigns.")
app.add_typer(dispositions_app, name="dispositions")


@dispositions_app.command("export")
def dispositions_export(
    out: Annotated[
        Path | None, typer.Option(help="File to write (default: stdout).", dir_okay=False)
    ] = None,
    fmt: Annotated[
        str, typer.Option("--format", help="jsonl (exact: for re-import) or csv (spreadsheets).")
    ] = "jsonl",
    current: Annotated[
        bool,
        typer.Option(
            "--current/--history", help="Each subject's current disposition, or every change."
        ),
    ] = False,
    disposition: Annotated[
        str | None, typer.Option(help="Only this disposition (e.g. false_positive).")
    ] = None,
    subject_kind: Annotated[str | None, typer.Option(help="Only account or cluster.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Export the audited dispositions (subject, disposition, reason, expiry, assignee, note,
    who and when, whether in force now), oldest first, for a legal team or another system.
    CSV cells a spreadsheet would run as formulas get a leading ' (OWASP); JSONL is exact.
    With --out, a new file is private (0600) and a summary goes to stdout (--json)."""
    from services.dispositions import DISPOSITIONS, SUBJECT_KINDS, exported

    if fmt not in ("jsonl", "csv"):
        raise typer.BadParameter("jsonl or csv", param_hint="--format")
    if disposition is not None and disposition not in DISPOSITIONS:
        raise typer.BadParameter(", ".join(DISPOSITIONS), param_hint="--disposition")
    if subject_kind is not None and subject_kind not in SUBJECT_KINDS:
        raise typer.BadParameter(", ".join(SUBJECT_KINDS), param_hint="--subject-kind")
    if as_json and out is None:
        raise typer.BadParameter(
            "needs --out: without it, stdout is the export", param_hint="--json"
        )
    with _open_store(get_settings()) as store:
        records = exported(
            store, current=current, disposition=disposition, subject_kind=subject_kind
        )
    text = _dispositions_text(records, fmt)
    if out is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    out.write_text(text, encoding="utf-8")  # 0600: the command runs under umask 077
    what = "current dispositions" if current else "disposition changes"
    emit(
        as_json,
        {"records": len(records), "format": fmt, "current": current, "out": str(out)},
        f"{len(records)} {what} → {out}",
    )


def _dispositions_text(records: list[dict[str, Any]], fmt: str) -> str:
    """JSONL (one record a line), or CSV with a header and formula-safe cells."""
    import csv
    import io

    import orjson

    from services.dispositions import EXPORT_FIELDS
    from services.reports import csv_cell

    if fmt == "jsonl":
        return "".join(orjson.dumps(record).decode() + "\n" for record in records)
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\n")
    writer.writerow(EXPORT_FIELDS)
    for record in records:
        writer.writerow([csv_cell(record[field]) for field in EXPORT_FIELDS])
    return buffer.getvalue()


provenance_app = typer.Typer(
    help="Prove a suspect model learned from our outputs, and name the accounts that harvested."
)
app.add_typer(provenance_app, name="provenance")


@provenance_app.command("test")
def provenance_test(
    out: Annotated[Path, typer.Option(help="Write the case (JSON) here, for `report`.")],
    model: Annotated[
        Path | None, typer.Option(help="The suspect as a local transformers folder.")
    ] = None,
    outputs: Annotated[
        Path | None, typer.Option(help="The suspect's outputs (JSONL, field 'output' or 'text').")
    ] = None,
    endpoint: Annotated[
        str | None, typer.Option(help="The suspect's OpenAI-style chat-completions URL.")
    ] = None,
    endpoint_model: Annotated[str, typer.Option(help="Model name sent to --endpoint.")] = "suspect",
    account: Annotated[
        list[str] | None,
        typer.Option(help="Accounts whose logged prompts (closed) or responses (open) to use."),
    ] = None,
    mode: Annotated[
        str, typer.Option(help="closed (ask and score outputs) or open (--model reads text).")
    ] = "closed",
    prompts: Annotated[
        Path | None, typer.Option(help="Prompts to ask (JSONL, field 'prompt').")
    ] = None,
    texts: Annotated[
        Path | None, typer.Option(help="Watermarked texts to feed (JSONL, field 'text').")
    ] = None,
    reference: Annotated[
        Path | None,
        typer.Option(
            help="Our model's answers without the watermark (JSONL, field 'output' or 'text'), "
            "ideally to the same prompts: their windows are not scored, so a model that only "
            "speaks like ours is not accused."
        ),
    ] = None,
) -> None:
    """Radioactivity test: a p-value that the suspect learned from our watermarked outputs."""
    import orjson

    from core.tokenizer import teacher_tokenizer
    from provenance.cases import Suspect, radioactivity_case, write_case

    if mode not in ("open", "closed"):
        raise typer.BadParameter("--mode is open or closed")
    suspect = Suspect(model, outputs, endpoint, endpoint_model)
    settings = get_settings()
    with _open_store(settings) as store:
        try:
            with steps("radioactivity test", console=console):
                tokenizer = teacher_tokenizer(settings.data_dir / "teacher")
                case = radioactivity_case(
                    settings,
                    store,
                    suspect,
                    account or [],
                    mode,
                    prompts,
                    texts,
                    tokenizer=tokenizer,
                    reference_file=reference,
                )
        except ValueError as error:
            raise typer.BadParameter(str(error)) from None
    write_case(case, out)
    print(orjson.dumps(case["test"], option=orjson.OPT_INDENT_2).decode())
    score = case["test"]["score"]
    console.print(
        f"{case['test']['mode']}-model test: {score['green']}/{score['scored']} green windows, "
        f"z {score['z']:.2f}, p {score['p_value']:.3g}; case written to {out}"
    )


@provenance_app.command("attribute")
def provenance_attribute(
    suspect_outputs: Annotated[
        Path | None,
        typer.Option(help="By text: the suspect's outputs (JSONL, field 'output' or 'text')."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Also write the case (JSON) here, for `report`.")
    ] = None,
    threshold: Annotated[
        float, typer.Option(help="By text: MinHash Jaccard of word 3-grams that is a match.")
    ] = 0.3,
    since: Annotated[str | None, typer.Option(help="By text: logged from (ISO 8601).")] = None,
    until: Annotated[str | None, typer.Option(help="By text: logged until (ISO 8601).")] = None,
    model: Annotated[
        Path | None,
        typer.Option(help="By watermark: the suspect as a local transformers folder."),
    ] = None,
    endpoint: Annotated[
        str | None,
        typer.Option(help="By watermark: the suspect's OpenAI-style chat-completions URL."),
    ] = None,
    endpoint_model: Annotated[str, typer.Option(help="Model name sent to --endpoint.")] = "suspect",
    account: Annotated[
        list[str] | None,
        typer.Option(
            help="By watermark: a candidate account (repeat; the suspected ones and honest ones "
            "to contrast with): the suspect is asked each one's logged prompts."
        ),
    ] = None,
    reference: Annotated[
        Path | None,
        typer.Option(help="By watermark: our model's unwatermarked answers (as `test`)."),
    ] = None,
) -> None:
    """Rank accounts by the evidence that the suspect learned from the responses they received:
    by text (its outputs match their logged responses beyond chance) or, with --model or
    --endpoint and --account, by watermark (it answers their prompts greener than the others')."""
    from datetime import datetime

    import orjson
    from rich.table import Table

    from provenance.cases import (
        Suspect,
        attribution_case,
        watermark_attribution_case,
        write_case,
    )

    def moment(value: str | None):
        return datetime.fromisoformat(value) if value else None

    by_watermark = model is not None or endpoint is not None
    if by_watermark == (suspect_outputs is not None):
        raise typer.BadParameter(
            "give --suspect-outputs (by text) or --model/--endpoint with --account (by watermark)"
        )
    settings = get_settings()
    with _open_store(settings) as store:
        try:
            if by_watermark:
                from core.tokenizer import teacher_tokenizer

                with steps("suspect asked the accounts' prompts", console=console):
                    case = watermark_attribution_case(
                        settings,
                        store,
                        Suspect(model, None, endpoint, endpoint_model),
                        account or [],
                        tokenizer=teacher_tokenizer(settings.data_dir / "teacher"),
                        reference_file=reference,
                    )
            else:
                with steps("logged responses compared", console=console) as bar:
                    case = attribution_case(
                        settings,
                        store,
                        suspect_outputs,
                        threshold,
                        moment(since),
                        moment(until),
                        progress=bar.update,
                    )
        except ValueError as error:
            raise typer.BadParameter(str(error)) from None
    if out:
        write_case(case, out)
    columns: dict[str, Callable[[dict], str]]
    if by_watermark:
        columns = {
            "answers": lambda row: str(row["answers"]),
            "green / scored": lambda row: f"{row['score']['green']} / {row['score']['scored']}",
            "p": lambda row: f"{row['p_value']:.3g}",
            "contrast p (Bonf.)": lambda row: f"{row['contrast_p_adjusted']:.3g}",
        }
        summary = (
            f"{case['green']}/{case['scored']} green windows over all candidates "
            f"(gamma {case['gamma']})"
        )
    else:
        columns = {
            "responses": lambda row: str(row["fingerprints"]),
            "matched": lambda row: str(row["matched_outputs"]),
            "expected": lambda row: f"{row['expected']:.2f}",
            "p (Bonferroni)": lambda row: f"{row['p_adjusted']:.3g}",
        }
        totals = case["totals"]
        summary = (
            f"{totals['outputs_matched']}/{totals['outputs']} outputs match one of "
            f"{totals['fingerprints']} logged responses of {totals['accounts']} accounts"
        )
    table = Table("rank", "account", *columns)
    for rank, row in enumerate(case["accounts"], 1):
        table.add_row(str(rank), row["account_id"], *(cell(row) for cell in columns.values()))
    console.print(table)
    console.print(summary)
    if by_watermark:
        both = Table("rank", "account", "by watermark", "by text", "combined p (Bonf.)")
        keys = ("watermark_p_adjusted", "text_p_adjusted", "p_adjusted")
        for rank, row in enumerate(case["combined"], 1):
            both.add_row(str(rank), row["account_id"], *(f"{row[k]:.3g}" for k in keys))
        console.print(both)
    print(orjson.dumps(case, option=orjson.OPT_INDENT_2).decode())


@provenance_app.command("experiment")
def provenance_experiment(
    quick: Annotated[bool, typer.Option(help="Small sizes, two clean students (≈ 3 min).")] = False,
    out: Annotated[Path, typer.Option(help="Folder for experiment.json and .md.")] = Path(
        ".distillguard/provenance/experiment"
    ),
    seed: Annotated[int, typer.Option(help="Seed of prompts, key and students.")] = 0,
    student: Annotated[
        str | None,
        typer.Option(
            help="pruned (the teacher's blocks, the default) or scratch (6.7M, --quick's)."
        ),
    ] = None,
    every: Annotated[
        int, typer.Option(help="Pruned student: keep every k-th block; 0: default (10).")
    ] = 0,
    hidden: Annotated[int, typer.Option(help="Scratch student: width.")] = 128,
    layers: Annotated[int, typer.Option(help="Scratch student: blocks.")] = 2,
    pairs: Annotated[int, typer.Option(help="Training answers per student; 0: default.")] = 0,
    epochs: Annotated[int, typer.Option(help="Passes over them; 0: default.")] = 0,
    clean_students: Annotated[
        int | None,
        typer.Option(help="Students never trained on watermarked text (default 20; 0: none)."),
    ] = None,
    clean_seeds_from: Annotated[
        int,
        typer.Option(
            help="First clean student's seed (its draw and training): a later block gives "
            "students no earlier run has seen."
        ),
    ] = 0,
    shares: Annotated[
        str,
        typer.Option(
            help="Watermarked shares to train, comma-separated (0.05,0.1); none: clean "
            "students only; empty: the default dose-response."
        ),
    ] = "",
    device: Annotated[str, typer.Option(help="cpu, or cuda on a GPU machine.")] = "cpu",
    precision: PrecisionOption = None,
    text_attribution: Annotated[
        bool,
        typer.Option(
            help="Attribute by text too (the log through the pipeline into chDB); off: by "
            "watermark alone (where chDB is not installed, as on the device)."
        ),
    ] = True,
    jobs: Annotated[
        int, typer.Option(help="Students trained side by side (processes; one per CPU core).")
    ] = 1,
    table_out: Annotated[
        Path | None,
        typer.Option(help="Also write the table the README quotes here (and its plot as .png)."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Real students with 0-100 % watermarked training data: p-values against the share (a
    dose-response table and plot), false accusations and attribution precision."""
    from dataclasses import replace

    from students.provenance_experiment import (
        FULL,
        QUICK,
        markdown,
        run_experiment,
        write_results,
    )
    from students.pruned import StudentSpec

    if student not in (None, "pruned", "scratch"):
        raise typer.BadParameter("pruned or scratch", param_hint="--student")
    if jobs < 1:
        raise typer.BadParameter("at least 1", param_hint="--jobs")
    config = QUICK if quick else FULL
    spec = StudentSpec(
        student or config.student.kind,  # type: ignore[arg-type]
        every=every or FULL.student.every,
        hidden=hidden,
        layers=layers,
    )
    config = replace(
        config,
        seed=seed,
        student=spec,
        training_pairs=pairs or config.training_pairs,
        epochs=epochs or config.epochs,
        clean_seeds=config.clean_seeds if clean_students is None else clean_students,
        first_clean_seed=clean_seeds_from,
        fractions=_shares(shares) if shares else config.fractions,
        device=device,
        precision=_precision(precision, config.precision),
        text_attribution=text_attribution,
    )
    with steps("provenance experiment", experiment_steps(config), console) as bar:
        report = run_experiment(
            config, get_settings(), out, log=bar.log, calibrate=not quick, jobs=jobs
        )
    emit(as_json, report.to_dict(), markdown(report))
    if table_out:
        write_results(report, table_out)
    console.print(f"wrote {out / 'experiment.json'}, experiment.md and experiment.png")


def _shares(value: str) -> tuple[float, ...]:
    """`--shares`: "none", or watermarked shares in (0, 1]."""
    if value.strip().lower() == "none":
        return ()
    try:
        shares = tuple(float(part) for part in value.split(","))
    except ValueError as error:
        raise typer.BadParameter(
            "comma-separated numbers, or none", param_hint="--shares"
        ) from error
    if not all(0 < share <= 1 for share in shares):
        raise typer.BadParameter("each share in (0, 1]", param_hint="--shares")
    return shares


def experiment_steps(config) -> int:
    """How many lines `run_experiment` logs (its progress bar's total): the estimate and the
    plan, one per 32 teacher answers (plain pool, watermarked, benign), one per student."""
    batches = [config.pool_size, config.training_pairs, config.benign_answers]
    students = len(config.fractions) + config.clean_seeds
    return 2 + sum(math.ceil(count / 32) for count in batches) + students


report_app = typer.Typer(
    help="Forensic reports: `report --account|--cluster|--since ... --out DIR` writes one "
    "(HTML, JSON, events CSV, charts, PDF unless --format says otherwise) with a signed "
    "SHA-256 manifest; `report verify DIR` checks it; `report keygen` makes a signing key.",
    invoke_without_command=True,
    no_args_is_help=False,
)
app.add_typer(report_app, name="report")


@report_app.callback()
def report(
    ctx: typer.Context,
    out: Annotated[Path | None, typer.Option(help="Folder to write the report into.")] = None,
    account: Annotated[str | None, typer.Option(help="One account.")] = None,
    cluster: Annotated[str | None, typer.Option(help="One campaign (cluster id).")] = None,
    since: Annotated[str | None, typer.Option(help="Start of a time range (ISO 8601).")] = None,
    until: Annotated[str | None, typer.Option(help="End of a time range (ISO 8601).")] = None,
    fmt: Annotated[
        str,
        typer.Option("--format", help="pdf (every format), or html / json (no Chromium needed)."),
    ] = "pdf",
    provenance: Annotated[
        list[Path] | None,
        typer.Option(help="Attach a `provenance test|attribute --out` case (repeatable)."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """A forensic report (HTML, JSON, events CSV, charts, and PDF unless --format says
    otherwise) with a SHA-256 manifest of every file, signed with DG_REPORT_SIGNING_KEY."""
    if ctx.invoked_subcommand is not None:
        return
    from datetime import datetime

    from provenance.cases import combined_radioactivity
    from services.reports import ReportError, Subject, write_report

    def ms(value: str | None, default: int) -> int:
        return int(datetime.fromisoformat(value).timestamp() * 1000) if value else default

    if out is None:
        raise typer.BadParameter("--out is required", param_hint="--out")
    if fmt not in ("pdf", "html", "json"):
        raise typer.BadParameter("--format is pdf, html or json")
    subject = Subject(account, cluster, ms(since, 0), ms(until, END_OF_TIME_MS))
    import orjson

    cases = [orjson.loads(path.read_bytes()) for path in provenance or []]
    cases += combined_radioactivity(cases)  # a suspect tested several ways: one family-wise p
    settings = get_settings()
    with _open_store(settings) as store:
        try:
            with steps(f"report for {subject.title}", console=console):
                manifest = write_report(
                    store, settings, subject, out, pdf=fmt == "pdf", provenance=cases
                )
        except ReportError as error:
            console.print(f"[red]no report:[/] {error}")
            raise typer.Exit(ExitCode.FAILED) from None
    signing = manifest["signing"]
    if not signing["algorithm"]:
        console.print(f"[yellow]warning:[/] the report is UNSIGNED: {signing['unsigned_reason']}")
    emit(
        as_json,
        {"out": str(out), **manifest},
        f"report for {subject.title} in {out} (sha256 {manifest['report_sha256']}, "
        + (
            f"signed by key {signing['public_key_fingerprint']})"
            if signing["algorithm"]
            else "unsigned)"
        ),
    )


@report_app.command("verify")
def report_verify(
    folder: Annotated[
        Path, typer.Argument(help="The report's folder.", exists=True, file_okay=False)
    ],
    fingerprint: Annotated[
        str | None,
        typer.Option(
            help="The signing key's published fingerprint (SHA-256 of the raw public key, "
            "hex): also fail when another key signed, or nothing did."
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Check a report's signature and every file's SHA-256; name each file modified, added or
    removed, and any change to the manifest or its signature. Exit 0 only when the report is
    intact and signed; 5 when anything changed; 6 when intact but unsigned."""
    from services.signing import verify_report

    result = verify_report(folder, fingerprint)
    lines = [f"{p['file']}: {p['change']} ({p['detail']})" for p in result.problems]
    if result.verified:
        lines.append(
            f"{folder}: intact; {result.artifacts_checked} files match the manifest, signed by "
            f"key {result.public_key_fingerprint}"
        )
    elif result.intact:
        lines.append(
            f"{folder}: {result.artifacts_checked} files match the manifest, but the report is "
            f"UNSIGNED ({result.unsigned_reason}): nothing shows who wrote it"
        )
    else:
        lines.append(f"{folder}: ALTERED: {len(result.problems)} change(s) found")
    emit(as_json, result.to_dict(), *lines)
    if not result.intact:
        raise typer.Exit(ExitCode.REPORT_TAMPERED)
    if not result.verified:
        raise typer.Exit(ExitCode.REPORT_UNSIGNED)


@report_app.command("keygen")
def report_keygen(
    out: Annotated[Path, typer.Option(help="Write the private key (PEM, mode 0600) here.")],
    as_json: JsonOption = False,
) -> None:
    """A new Ed25519 report signing key. Point DG_REPORT_SIGNING_KEY (or the TOML setting) at
    its contents and publish the printed fingerprint, so readers can pin it."""
    from services.signing import load_signing_key, new_signing_key_pem, public_key_info

    pem = new_signing_key_pem()
    try:
        descriptor = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise typer.BadParameter(f"{out} exists: a signing key is never overwritten") from None
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(pem)
    from pydantic import SecretStr

    key = load_signing_key(SecretStr(pem.decode()))
    assert key is not None
    info = public_key_info(key)
    emit(
        as_json,
        {"key_file": str(out), **info},
        f"wrote {out}; public key fingerprint {info['public_key_fingerprint']}",
    )


if __name__ == "__main__":
    app()
