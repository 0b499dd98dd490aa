"""The `distillguard` command line (typer). Commands are thin: they parse options and call
the library, so every entry point shares the same code paths."""

from __future__ import annotations

import os
import re
from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from core import __version__
from core.settings import Settings, get_settings
from core.timeutil import END_OF_TIME_MS

app = typer.Typer(
    help="DistillGuard: catch and prove model-extraction attacks.", no_args_is_help=True
)
console = Console(stderr=True)
# The audit log is the evidence of who read what: retention never drops it.
RETENTION_PROTECTED = frozenset({"audit_log"})
# scheme://userinfo@ (userinfo up to the last "@" of the word, so a password with "@" is masked
# whole), and credentials passed as query parameters.
_URL_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][\w+.-]*://)(?P<userinfo>\S*)@")
_URL_SECRET_PARAMETER = re.compile(
    r"(?P<key>[?&;](?:password|passwd|pwd|secret|token|access_token|api_key|key)=)[^&;#\s]*",
    re.IGNORECASE,
)


@app.callback()
def _main(ctx: typer.Context) -> None:
    """Settings come from DG_* environment variables and an optional distillguard.toml."""
    # Everything a command writes (the data folder, the embedded store, reports, calibrations)
    # holds prompts and evidence: private to the user (0700 folders, 0600 files) while it runs.
    previous = os.umask(0o077)
    ctx.call_on_close(lambda: os.umask(previous))


@app.command()
def version() -> None:
    """Print the DistillGuard version."""
    print(__version__)


@app.command("config")
def show_config() -> None:
    """Print the effective settings (secrets masked)."""
    settings = get_settings()
    for key, value in settings.model_dump().items():
        print(f"{key} = {mask_credentials(value)}")


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


@app.command()
def migrate() -> None:
    """Create the database and apply pending schema migrations."""
    from storage import open_store

    store = open_store(get_settings(), migrate=False)
    try:
        applied = store.migrate()
        console.print(
            f"{store.backend} store {store.database}: applied {applied or 'nothing'}; "
            f"at migration {max(store.applied_migrations())}"
        )
    finally:
        store.close()


@app.command()
def retention(
    table: Annotated[
        str, typer.Option(help="Day-partitioned table to prune, or `all` (never audit_log).")
    ] = "events",
    before: Annotated[
        str, typer.Option(help="Drop whole days before this date (YYYY-MM-DD).")
    ] = "",
) -> None:
    """Drop daily partitions older than a date (how retention works on every ClickHouse).
    The audit log is never dropped."""
    from storage import open_store

    if table in RETENTION_PROTECTED:
        raise typer.BadParameter(
            f"{table} is evidence of who read what: retention never drops it", param_hint="--table"
        )
    try:
        cutoff = date.fromisoformat(before)
    except ValueError:
        raise typer.BadParameter("a date (YYYY-MM-DD) is required", param_hint="--before") from None
    tables = retention_tables() if table == "all" else [table]
    store = open_store(get_settings())
    try:
        for name in tables:
            dropped = store.drop_partitions_before(name, cutoff)
            console.print(
                f"dropped {len(dropped)} partitions of {name}: {', '.join(dropped) or '-'}"
            )
    finally:
        store.close()


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
    batch_size: Annotated[int, typer.Option(help="Events per checkpoint.")] = 2000,
) -> None:
    """Run a JSONL request log through the pipeline into the store (idempotent: rerun freely)."""
    from distillguard.wiring import store_pipeline
    from storage import open_store
    from streaming.files import run_file

    settings = get_settings()
    store = open_store(settings)
    try:
        totals = run_file(store_pipeline(settings, store), events, batch_size)
    finally:
        store.close()
    console.print(
        f"{totals.events} events, {totals.dead_letters} dead letters, "
        f"{len(totals.verdicts)} verdicts, {totals.replayed} already counted, "
        f"{totals.duplicates} resends of stored events → {store.backend} store {store.database}"
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
) -> None:
    """Fit detector thresholds on benign history at a target false-positive rate; print the
    false-positive rate they give on held-out benign accounts and what to doubt about it."""
    from detectors.base import calibration_of
    from detectors.registry import events_in_file, save_calibration
    from distillguard.wiring import build_detector

    detector = build_detector(get_settings(), target_fpr).fit(events_in_file(benign))
    report = getattr(detector, "calibration_report_", None)
    if live is not None:
        if report is None:
            console.print(
                f"[yellow]warning:[/] --live needs the fused detector, not {detector.name}"
            )
        else:
            from detectors.fusion import calibration

            report["live"] = calibration.compare_live(detector, events_in_file(live))
    path = save_calibration(detector, out)
    summary = {
        key: value
        for key, value in calibration_of(detector).items()
        if key == "thresholds" or not isinstance(value, list | dict | None)
    }
    if report is not None:
        _print_calibration_report(report)
    console.print(f"calibrated {detector.name} at FPR {target_fpr}: {summary} → {path}")


def _print_calibration_report(report: dict) -> None:
    """The held-out false-positive rates next to the tail's prediction, then the warnings (one
    line each: they wrap in a narrow terminal and read the same in a log)."""

    def percent(share: float) -> str:
        return f"{100 * share:.2g}%"

    console.print(
        f"benign history: {report['accounts']:,} accounts with a score, {report['requests']:,} "
        f"requests over {report['history_days']:.1f} days; thresholds from {report['folds']}-fold "
        "held-out peaks"
    )
    for label, level in report["levels"].items():
        low, high = level["interval"]
        per, per_low, per_high = level["per_1000_accounts"]
        console.print(
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
        console.print(f"live sample: {live['accounts']:,} accounts; PSI by signal: {moved}")
    for warning in [*report["warnings"], *(live["warnings"] if live else [])]:
        console.print(f"[yellow]warning:[/] {warning}")


@app.command()
def score(
    events: Annotated[Path, typer.Option(help="JSONL request log.", exists=True, dir_okay=False)],
    out: Annotated[Path, typer.Option(help="Verdict JSONL to write.")],
    calibration: Annotated[
        Path | None,
        typer.Option(help="Benign JSONL to calibrate on, or a folder from `calibrate`."),
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Events per checkpoint.")] = 2000,
) -> None:
    """Offline scoring with the same pipeline; without --calibration, self-calibrate on the
    stream (assumes attackers are a small minority of accounts)."""
    from detectors.registry import events_in_file, load_calibration
    from distillguard.wiring import build_detector, build_pipeline
    from streaming.files import run_file
    from streaming.sinks import VerdictFileSink

    settings = get_settings()
    detector = build_detector(settings)
    if calibration is not None and calibration.is_dir():
        load_calibration(detector, calibration)
    else:
        detector.fit(events_in_file(calibration or events))
    sink = VerdictFileSink(out)
    try:
        totals = run_file(build_pipeline(settings, [sink], detector=detector), events, batch_size)
    finally:
        sink.close()
    flagged = len({v.account_id for v in totals.verdicts if v.label != "benign"})
    console.print(
        f"{totals.events} events, {totals.dead_letters} dead letters, "
        f"{len(totals.verdicts)} verdicts ({flagged} accounts flagged) → {out}"
    )


@app.command()
def worker(
    metrics_port: Annotated[
        int | None, typer.Option(help="Prometheus /metrics port (0 disables).")
    ] = None,
    client_id: Annotated[str, typer.Option(help="Kafka client id of this worker.")] = "",
) -> None:
    """Kafka consumer-group worker: topic DG_TOPIC → pipeline → store; commits after the store."""
    import logging
    import os

    from distillguard.wiring import build_worker
    from storage import open_store
    from streaming.kafka import make_producer
    from streaming.worker import serve_metrics

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    # The worker reports outages itself, one line per state change; drivers would log each retry.
    logging.getLogger("kafka").setLevel(logging.ERROR)
    logging.getLogger("clickhouse_driver").setLevel(logging.CRITICAL)
    settings = get_settings()
    store = open_store(settings)
    producer = make_producer(settings.kafka_bootstrap)
    runner = build_worker(
        settings, store, producer, client_id or f"distillguard-worker-{os.getpid()}"
    )
    serve_metrics(settings.metrics_port if metrics_port is None else metrics_port)
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
        stats = runner.run()
    finally:
        producer.close()
        store.close()
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
) -> None:
    """The campaign linker: every worker's profile updates → clusters and member verdicts in the
    store. Exactly one is active per consumer group; start another as a standby."""
    import logging
    import os
    import signal

    from distillguard.wiring import build_linker
    from storage import open_store

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("kafka").setLevel(logging.ERROR)
    settings = get_settings()
    store = open_store(settings)
    role = build_linker(settings, store, client_id or f"distillguard-linker-{os.getpid()}")
    role.idle_s = idle_s

    def request_stop(_signum: int, _frame: object) -> None:
        role.stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    logging.getLogger("distillguard.linker").info(
        "linking profiles of %s → %s store %s", settings.topic, store.backend, store.database
    )
    try:
        role.run()
    finally:
        store.close()


@app.command()
def produce(
    events: Annotated[Path, typer.Argument(help="JSONL request log.", exists=True, dir_okay=False)],
    topic: Annotated[str | None, typer.Option(help="Topic (default DG_TOPIC).")] = None,
    partitions: Annotated[int, typer.Option(help="Partitions if the topic is created.")] = 4,
) -> None:
    """Publish a JSONL request log to Kafka, one message per line, keyed by account_id."""
    from rich.progress import Progress

    from streaming.kafka import ensure_topic, make_producer, produce_lines

    settings = get_settings()
    topic = topic or settings.topic
    ensure_topic(settings.kafka_bootstrap, topic, partitions)
    producer = make_producer(settings.kafka_bootstrap)
    total = sum(1 for _ in events.open("rb"))
    with Progress(console=console) as progress, events.open("rb") as handle:
        task = progress.add_task(f"→ {topic}", total=total)
        sent = produce_lines(
            producer,
            topic,
            (line.rstrip(b"\r\n") for line in handle),
            on_sent=lambda n: progress.update(task, completed=n),
        )
    producer.close()
    console.print(f"published {sent} messages to {topic} at {settings.kafka_bootstrap}")


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

    from provenance.watermark import WatermarkKey
    from students.gateway import JsonlEventLog, KafkaEventLog, create_gateway
    from students.teacher import Teacher, watermarked

    settings = get_settings()
    event_log = (
        JsonlEventLog(log) if log else KafkaEventLog(settings.kafka_bootstrap, settings.topic)
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
    quick: Annotated[bool, typer.Option(help="Two strategies, small budgets (≤ 5 min).")] = False,
    out: Annotated[Path, typer.Option(help="Folder for JSON, markdown and PNG.")] = Path(
        ".distillguard/validation"
    ),
    seed: Annotated[int, typer.Option(help="Seed of every actor.")] = 0,
    table_out: Annotated[
        Path | None, typer.Option(help="Also write the table the README quotes here.")
    ] = None,
) -> None:
    """Real attacks on the real teacher through the pipeline; students trained on what each
    attacker harvested before and after its first flag."""
    from dataclasses import replace

    from students.validate import FULL, QUICK, markdown, run_validation, write_results

    config = replace(QUICK if quick else FULL, seed=seed)
    report = run_validation(config, get_settings(), out, log=console.print)
    print(markdown(report))
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

    from distillguard.wiring import UVICORN_OPTIONS, build_api
    from services.auth import create_token
    from storage import open_store

    store = open_store(settings)
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
        uvicorn.run(api, host=host, port=port, log_level="warning", **UVICORN_OPTIONS)
    finally:
        stop.set()


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
) -> None:
    """Send due webhook alerts (signed), retrying with backoff for up to 24 hours."""
    import threading

    from storage import open_store

    settings = get_settings()
    dispatcher = _dispatcher(settings, open_store(settings))
    if dispatcher is None:
        raise typer.Exit(1)
    if once:
        console.print(f"delivered {dispatcher.run_once()}")
        return
    dispatcher.run(threading.Event())


token_app = typer.Typer(help="API tokens: create and revoke (only their hashes are stored).")
app.add_typer(token_app, name="token")


@token_app.command("create")
def token_create(
    role: Annotated[str, typer.Option(help="analyst (read, acknowledge, reports) or admin.")],
    name: Annotated[str, typer.Option(help="Who or what holds the token.")] = "cli",
) -> None:
    """Create a token and print it once (it cannot be shown again)."""
    from services.auth import ROLES, create_token
    from storage import open_store

    if role not in ROLES:
        raise typer.BadParameter(f"role must be one of {', '.join(ROLES)}")
    token, principal = create_token(open_store(get_settings()), role, name)  # type: ignore[arg-type]
    console.print(f"token {principal.token_id} ({principal.role}) for {name!r}:")
    print(token)


@token_app.command("revoke")
def token_revoke(token_id: Annotated[str, typer.Argument(help="The token's id.")]) -> None:
    """Revoke a token by id."""
    from services.auth import revoke_token
    from storage import open_store

    if not revoke_token(open_store(get_settings()), token_id):
        raise typer.BadParameter(f"no token {token_id!r}")
    console.print(f"revoked {token_id}")


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
) -> None:
    """Radioactivity test: a p-value that the suspect learned from our watermarked outputs."""
    import orjson

    from provenance.cases import Suspect, radioactivity_case, write_case
    from storage import open_store
    from students.teacher import teacher_tokenizer

    if mode not in ("open", "closed"):
        raise typer.BadParameter("--mode is open or closed")
    suspect = Suspect(model, outputs, endpoint, endpoint_model)
    settings = get_settings()
    store = open_store(settings)
    try:
        tokenizer = teacher_tokenizer(settings.data_dir / "teacher")
        case = radioactivity_case(
            settings, store, suspect, account or [], mode, prompts, texts, tokenizer=tokenizer
        )
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    finally:
        store.close()
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
        Path, typer.Option(help="The suspect model's outputs (JSONL, field 'output' or 'text').")
    ],
    out: Annotated[
        Path | None, typer.Option(help="Also write the case (JSON) here, for `report`.")
    ] = None,
    threshold: Annotated[
        float, typer.Option(help="MinHash Jaccard of word 3-grams that counts as a match.")
    ] = 0.3,
    since: Annotated[str | None, typer.Option(help="Logged from (ISO 8601).")] = None,
    until: Annotated[str | None, typer.Option(help="Logged until (ISO 8601).")] = None,
) -> None:
    """Rank the accounts whose harvested responses the suspect's outputs match beyond chance."""
    from datetime import datetime

    import orjson
    from rich.table import Table

    from provenance.cases import attribution_case, write_case
    from storage import open_store

    def moment(value: str | None):
        return datetime.fromisoformat(value) if value else None

    settings = get_settings()
    store = open_store(settings)
    try:
        case = attribution_case(
            settings, store, suspect_outputs, threshold, moment(since), moment(until)
        )
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    finally:
        store.close()
    if out:
        write_case(case, out)
    table = Table("rank", "account", "responses", "matched", "expected", "p (Bonferroni)")
    for rank, account in enumerate(case["accounts"], 1):
        table.add_row(
            str(rank),
            account["account_id"],
            str(account["fingerprints"]),
            str(account["matched_outputs"]),
            f"{account['expected']:.2f}",
            f"{account['p_adjusted']:.3g}",
        )
    console.print(table)
    totals = case["totals"]
    console.print(
        f"{totals['outputs_matched']}/{totals['outputs']} outputs match one of "
        f"{totals['fingerprints']} logged responses of {totals['accounts']} accounts"
    )
    print(orjson.dumps(case, option=orjson.OPT_INDENT_2).decode())


@provenance_app.command("experiment")
def provenance_experiment(
    quick: Annotated[bool, typer.Option(help="Small sizes, two clean students (≈ 3 min).")] = False,
    out: Annotated[Path, typer.Option(help="Folder for experiment.json and .md.")] = Path(
        ".distillguard/provenance/experiment"
    ),
    seed: Annotated[int, typer.Option(help="Seed of prompts, key and students.")] = 0,
    table_out: Annotated[
        Path | None, typer.Option(help="Also write the table the README quotes here.")
    ] = None,
) -> None:
    """Real students with 0-100 % watermarked training data: p-values, false accusations and
    attribution precision, as a table."""
    from dataclasses import replace

    from students.provenance_experiment import (
        FULL,
        QUICK,
        markdown,
        run_experiment,
        write_results,
    )

    config = replace(QUICK if quick else FULL, seed=seed)
    report = run_experiment(config, get_settings(), out, log=console.print, calibrate=not quick)
    print(markdown(report))
    if table_out:
        write_results(report, table_out)
    console.print(f"wrote {out / 'experiment.json'} and experiment.md")


@app.command()
def report(
    out: Annotated[Path, typer.Option(help="Folder to write the report into.")],
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
) -> None:
    """A forensic report (HTML, JSON, events CSV, charts, and PDF unless --format says
    otherwise) with a SHA-256 manifest of every file."""
    from datetime import datetime

    from services.reports import ReportError, Subject, write_report
    from storage import open_store

    def ms(value: str | None, default: int) -> int:
        return int(datetime.fromisoformat(value).timestamp() * 1000) if value else default

    if fmt not in ("pdf", "html", "json"):
        raise typer.BadParameter("--format is pdf, html or json")
    subject = Subject(account, cluster, ms(since, 0), ms(until, END_OF_TIME_MS))
    import orjson

    cases = [orjson.loads(path.read_bytes()) for path in provenance or []]
    settings = get_settings()
    try:
        manifest = write_report(
            open_store(settings), settings, subject, out, pdf=fmt == "pdf", provenance=cases
        )
    except ReportError as error:
        console.print(f"[red]no report:[/] {error}")
        raise typer.Exit(1) from None
    console.print(f"report for {subject.title} in {out} (sha256 {manifest['report_sha256']})")


if __name__ == "__main__":
    app()
