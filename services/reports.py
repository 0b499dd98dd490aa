"""Forensic reports for legal teams: one account, one campaign or a time range.

A report folder holds `report.json` (every figure), `report.html` (jinja2, autoescaped: prompt
text is inert), `events.csv`, two timeline charts (matplotlib PNG), `report.pdf` (the HTML
printed by headless Chromium), `manifest.json` (the SHA-256 of every artifact, the report's
own hash over the artifact list, the DistillGuard version with its commit, the configuration and
the signing key) and `manifest.sig`, the manifest's Ed25519 signature (`services/signing.py`;
absent, and said so, when no key is configured). `signing.verify_report` re-checks it all.

Every rate is printed with its denominator (how many honest accounts calibrated the detector,
how many the benchmark measured), and the methodology quotes the detection benchmark's measured
error rates from `bench/results/detection-error-rates.json` (written by `bench/detection.py`,
read here as a data file: the product never imports the benchmarks).

A report is written into a private temporary folder (0700, files 0600) beside its destination
and moved into place only when complete, so a failure (no Chromium, say) leaves nothing behind.
"""

from __future__ import annotations

import csv
import hashlib
import io
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jinja2 import Environment, PackageLoader, select_autoescape

from core.files import PRIVATE_FILE, private_folder
from core.settings import Settings
from core.timeutil import END_OF_TIME_MS
from core.tokenizer import TOKENIZER_LABEL, token_counter
from core.version import full_version
from detectors.registry import CALIBRATION_FILE, calibration_dir, embedding_model, variant
from services.signing import (
    SIGNATURE,
    SigningKeyError,
    load_signing_key,
    sign_manifest,
    signing_block,
    verify_report,
)
from storage import Store, queries
from storage.rows import redact_for_display

CHROMIUM = ("chromium", "chromium-browser", "google-chrome")
EXAMPLE_PROMPTS = 10
# List price used for the harvest estimate, USD per 1,000 tokens (a setting in a deployment).
PRICE_PER_1K_TOKENS = 0.002
# A cell starting with one of these is a formula (or hides one) to a spreadsheet (OWASP CSV
# injection); so is one whose first non-blank character is one of FORMULA_STARTS.
FORMULA_STARTS = ("=", "+", "-", "@")
RISKY_FIRST = (*FORMULA_STARTS, "\t", "\r", "\n", "\0")
# The detection benchmark's measured error rates (bench/detection.py writes it; the wheel ships
# it as package data of `bench`, beside this package).
BENCHMARK_ERROR_RATES = (
    Path(__file__).resolve().parents[1] / "bench" / "results" / "detection-error-rates.json"
)
# What the benchmark does not show, or shows failing: every report states it.
KNOWN_LIMITATIONS = (
    "Thresholds come from honest traffic only; an attacker who spreads requests thinly over "
    "time or over many accounts can stay below every per-account signal.",
    "Paraphrasing a watermarked answer, or distilling from paraphrases, weakens or removes "
    "the watermark: a non-significant radioactivity test does not clear a suspect model.",
    "A threshold calibrated on another population's traffic flags far more honest accounts "
    "(see the benchmark's other-worlds figures): calibrate on the provider's own history.",
    "Token counts estimated from stored text leave out chat templates and earlier turns of a "
    "conversation, and shrink under prompt redaction: they are lower bounds.",
)


class ReportError(RuntimeError):
    """A report that could not be written; nothing of it was left on disk."""


class ReportUnavailable(ReportError):
    """The PDF renderer (headless Chromium) is missing or failed; reports without a PDF work."""


@dataclass(frozen=True)
class Subject:
    """What a report is about: an account, a campaign, or everything in a time range."""

    account_id: str | None = None
    cluster_id: str | None = None
    since_ms: int = 0
    until_ms: int = END_OF_TIME_MS

    @property
    def title(self) -> str:
        if self.account_id:
            return f"account {self.account_id}"
        if self.cluster_id:
            return f"campaign {self.cluster_id}"
        return "time range"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _accounts(store: Store, subject: Subject) -> list[str]:
    if subject.account_id:
        return [subject.account_id]
    if subject.cluster_id:
        return queries.cluster_members(store, subject.cluster_id)
    return queries.extraction_accounts(store, subject.since_ms, subject.until_ms)


def gather(
    store: Store, settings: Settings, subject: Subject, provenance: Sequence[dict] = ()
) -> dict:
    """Every figure the report shows, from the store, plus provenance cases (`distillguard
    provenance test|attribute` documents) the investigator attaches."""
    accounts = _accounts(store, subject)
    verdicts = queries.verdicts_of(store, accounts, subject.since_ms, subject.until_ms)
    events = queries.events_of(store, accounts, subject.since_ms, subject.until_ms)
    clusters = queries.clusters_touching(store, accounts, subject.cluster_id or "")
    latest = max(
        verdicts, key=lambda v: (v["label"] == "extraction", v["verdict_ms"]), default=None
    )
    reasons = orjson.loads(latest["reasons_json"]) if latest else []
    calibration = _calibration(settings)
    honest = calibration.get("benign_accounts")
    return {
        "subject": {"title": subject.title, **subject.__dict__},
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "distillguard_version": full_version(),
        "accounts": accounts,
        "summary": {
            "label": latest["label"] if latest else "no verdict",
            "score": float(latest["score"]) if latest else None,
            "requests_seen_at_verdict": int(latest["requests_seen"]) if latest else None,
            "first_request": _iso(events[0]["event_ms"]) if events else None,
            "last_request": _iso(events[-1]["event_ms"]) if events else None,
        },
        "signals": [
            {
                "signal": r["signal"],
                "value": r["value"],
                "contribution": r["contribution"],
                "explanation": (r.get("evidence") or {}).get("explanation", ""),
                **_honest_share((r.get("evidence") or {}).get("benign_tail_probability"), honest),
            }
            for r in reasons
        ],
        "verdicts": [
            {
                "account_id": v["account_id"],
                "time": _iso(v["verdict_ms"]),
                "time_ms": int(v["verdict_ms"]),
                "requests_seen": int(v["requests_seen"]),
                "score": float(v["score"]),
                "label": v["label"],
            }
            for v in verdicts
        ],
        "representative_prompts": [
            {
                "account_id": e["account_id"],
                "time": _iso(e["event_ms"]),
                "prompt": _shown(e, settings),
            }
            for e in _spread(events, EXAMPLE_PROMPTS)
        ],
        "neighbours": [
            {
                "cluster_id": c["cluster_id"],
                "members": sorted(c["members"]),
                "score": float(c["score"]),
                "label": c["label"],
                "evidence": orjson.loads(c["evidence_json"] or "{}"),
            }
            for c in clusters
        ],
        "harvest": harvest(events, settings),
        "provenance": list(provenance),
        "methodology": {
            "detector": latest["detector_version"] if latest else None,
            "target_fpr": calibration.get("target_fpr", settings.target_fpr),
            "thresholds": calibration.get("thresholds"),
            "honest_accounts": honest,
            "held_out": calibration.get("held_out"),
            "explanation": (
                "Each signal is compared with honest accounts at a comparable window size; its "
                "surprise is -log10 of the honest tail probability. The extraction threshold was "
                "set from honest accounts only"
                + (f" ({honest:,} of them)" if honest else "")
                + ", so that about "
                f"{calibration.get('target_fpr', settings.target_fpr):.2%} of honest accounts "
                "would be flagged over their lifetime."
            ),
            "benchmark": benchmark_error_rates(settings),
            "limitations": list(KNOWN_LIMITATIONS),
        },
        "events": events,
    }


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(int(ms) / 1000, UTC).isoformat(timespec="seconds")


def _shown(event: dict, settings: Settings) -> str:
    return redact_for_display(
        event["prompt_text"], settings.redact_prompts, settings.redact_truncate_chars
    )


def _spread(items: list, count: int) -> list:
    """`count` items spread evenly over the list (first and last included)."""
    if len(items) <= count:
        return items
    step = (len(items) - 1) / (count - 1)
    return [items[round(i * step)] for i in range(count)]


def _calibration(settings: Settings) -> dict:
    """The saved calibration's target, thresholds, how many honest accounts it scored (the
    denominator of every honest share the report prints) and the extraction threshold's
    held-out false-positive count (`calibrate`'s report; absent from older calibrations)."""
    path = calibration_dir(settings) / CALIBRATION_FILE
    if not path.exists():
        return {}
    calibration = orjson.loads(path.read_bytes()).get("calibration", {})
    report = calibration.get("report") or {}
    level = (report.get("levels") or {}).get("extraction")
    return {
        "target_fpr": calibration.get("target_fpr"),
        "thresholds": calibration.get("thresholds"),
        "benign_accounts": report.get("accounts") or calibration.get("fitted_accounts") or None,
        "held_out": None
        if level is None
        else {
            "flagged": level["flagged"],
            "accounts": report["accounts"],
            "interval": level["interval"],
        },
    }


def _honest_share(probability: float | None, honest: int | None) -> dict:
    """A signal's honest tail probability with its denominator: about how many of the honest
    accounts the detector was calibrated on were this extreme ("0 of 412")."""
    return {
        "benign_tail_probability": probability,
        "honest_accounts": honest,
        "honest_accounts_this_extreme": None
        if probability is None or not honest
        else round(probability * honest),
    }


def harvest(events: list[dict], settings: Settings) -> dict:
    """Requests and tokens harvested, and their cost at list price. Logged token counts are
    used where the log has them; for requests without, the tokens of the stored prompt and
    response text in the teacher's tokenizer, labelled as an estimate. Nothing is printed as 0
    that was not measured: an unknown total is None, with the reason."""
    unlogged = [e for e in events if e["prompt_tokens"] is None and e["completion_tokens"] is None]
    logged = sum(int(e["prompt_tokens"] or 0) + int(e["completion_tokens"] or 0) for e in events)
    estimated, note = None, None
    if unlogged and settings.redact_prompts == "hash":
        note = "not estimated: prompts and responses are stored as hashes (redact_prompts = hash)"
    elif unlogged:
        try:
            count = token_counter(settings.data_dir / "teacher")
        except (ImportError, RuntimeError, OSError) as error:
            note = f"not estimated: the teacher's tokenizer is unavailable ({error})"
        else:
            texts = [e["prompt_text"] for e in unlogged] + [e["response_text"] for e in unlogged]
            estimated = sum(count(texts))
            note = (
                f"estimated with the {TOKENIZER_LABEL} tokenizer from the stored prompt and "
                "response text (no chat template, latest turn only"
                + (", truncated by redaction" if settings.redact_prompts == "truncate" else "")
                + "): a lower bound"
            )
    tokens = None if unlogged and estimated is None else logged + (estimated or 0)
    return {
        "requests": len(events),
        "requests_with_logged_tokens": len(events) - len(unlogged),
        "logged_tokens": logged,
        "requests_estimated": len(unlogged) if estimated is not None else 0,
        "estimated_tokens": estimated,
        "estimate_note": note,
        "tokens": tokens,
        "tokens_include_estimate": estimated is not None,
        "estimated_cost_usd": None
        if tokens is None
        else round(tokens / 1000 * PRICE_PER_1K_TOKENS, 2),
        "price_per_1k_tokens_usd": PRICE_PER_1K_TOKENS,
    }


def benchmark_error_rates(settings: Settings, path: Path = BENCHMARK_ERROR_RATES) -> dict | None:
    """The detection benchmark's worst held-out world for the configured detector, calibrated
    on each world's own history (what a deployment does) and on other worlds' (what goes wrong
    otherwise); None when this detector was not benchmarked or no figures ship here."""
    key = variant(settings)
    if key is None or not path.exists():
        return None
    rates = orjson.loads(path.read_bytes())
    measured = rates["detectors"].get(key)
    if not measured:
        return None
    return {
        "detector": key,
        "measured": rates["measured"],
        "source": rates["source"],
        "worlds": rates["worlds"],
        "own": measured.get("own"),
        "transfer": measured.get("transfer"),
    }


SCORE_CHART_ACCOUNTS = 20  # more lines than this read as noise; the table lists them all
LEGEND_ACCOUNTS = 8


def chart_figures(data: dict) -> dict[str, Any]:
    """The timeline charts as matplotlib figures, by file name: requests per hour (bars) and
    each account's score over time. Every point is drawn with a marker and each account's
    score is held (a step) until its last request, so a constant series or a single verdict
    still shows; an empty period says so in the chart instead of leaving it blank."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure  # no pyplot: no global figure registry to leak

    hours: dict[int, int] = {}
    for event in data["events"]:
        hour = int(event["event_ms"]) // 3_600_000
        hours[hour] = hours.get(hour, 0) + 1
    volume = Figure(figsize=(7, 2.6))
    axis = volume.subplots()
    axis.bar(
        [datetime.fromtimestamp(h * 3600, UTC) for h in hours],
        list(hours.values()),
        width=0.8 / 24,
        align="edge",
        color="#36c",
    )
    axis.set_title("Requests per hour", fontsize=9)
    axis.set_xlabel("hour (UTC)")
    axis.set_ylabel("requests / hour")
    axis.set_ylim(0, max(hours.values(), default=0) * 1.15 + 1)
    if hours:  # an hour of padding each side: a lone bar stays a bar, not the whole chart
        axis.set_xlim(
            datetime.fromtimestamp((min(hours) - 1) * 3600, UTC),
            datetime.fromtimestamp((max(hours) + 2) * 3600, UTC),
        )
    else:
        axis.text(0.5, 0.5, "no requests in this period", ha="center", transform=axis.transAxes)

    score = Figure(figsize=(7, 2.8))
    axis = score.subplots()
    end_ms = max(
        [int(e["event_ms"]) for e in data["events"]] + [v["time_ms"] for v in data["verdicts"]],
        default=0,
    )
    drawn = [a for a in data["accounts"] if any(v["account_id"] == a for v in data["verdicts"])]
    for account in drawn[:SCORE_CHART_ACCOUNTS]:
        points = [v for v in data["verdicts"] if v["account_id"] == account]
        times = [v["time_ms"] for v in points] + [max(end_ms, points[-1]["time_ms"])]
        scores = [v["score"] for v in points] + [points[-1]["score"]]
        axis.plot(
            [datetime.fromtimestamp(t / 1000, UTC) for t in times],
            scores,
            drawstyle="steps-post",
            marker="o",
            markersize=4,
            markevery=list(range(len(points))),  # the held end is a line, not a verdict
            linewidth=1.2,
            label=account,
        )
    axis.axhline(0.5, color="red", linestyle="--", linewidth=1, label="extraction threshold")
    axis.set_ylim(0, 1.02)
    axis.set_title(
        "Score over time"
        + (
            f" ({SCORE_CHART_ACCOUNTS} of {len(drawn)} accounts drawn)"
            if len(drawn) > SCORE_CHART_ACCOUNTS
            else ""
        ),
        fontsize=9,
    )
    axis.set_xlabel("time (UTC)")
    axis.set_ylabel("score (0.5 = threshold)")
    if not drawn:
        axis.text(0.5, 0.6, "no verdicts in this period", ha="center", transform=axis.transAxes)
    if len(drawn) <= LEGEND_ACCOUNTS:
        axis.legend(fontsize=7, loc="lower right")
    for figure in (volume, score):
        figure.autofmt_xdate()
        figure.tight_layout()
    return {"volume.png": volume, "score.png": score}


def _charts(data: dict, folder: Path) -> list[str]:
    """The charts written as PNG into `folder`; returns their file names."""
    figures = chart_figures(data)
    for name, figure in figures.items():
        figure.savefig(folder / name, dpi=110)
    return list(figures)


def _events_csv(events: list[dict], settings: Settings) -> bytes:
    """Every event as a row; every cell, whatever its column, is formula-safe (`csv_cell`)."""
    buffer = io.StringIO()
    columns = ["request_id", "account_id", "time", "model", "prompt_tokens", "completion_tokens"]
    writer = csv.writer(buffer, quoting=csv.QUOTE_ALL)
    writer.writerow([*columns, "params_json", "client_ip", "user_agent", "prompt"])
    for e in events:
        row = [
            e["request_id"],
            e["account_id"],
            _iso(e["event_ms"]),
            e["model"],
            e["prompt_tokens"],
            e["completion_tokens"],
            e["params_json"],
            e["client_ip"],
            e["user_agent"],
            _shown(e, settings),
        ]
        writer.writerow([csv_cell(value) for value in row])
    return buffer.getvalue().encode()


def csv_cell(value: object) -> str:
    """A cell a spreadsheet shows as text, never runs (OWASP CSV injection): one starting with
    = + - @, tab, CR, LF or NUL, or with = + - @ after leading blanks, gets a leading single
    quote. Quoting every cell (the writer) keeps separators and quotes inside it."""
    text = "" if value is None else str(value)
    if text.startswith(RISKY_FIRST) or text.lstrip().startswith(FORMULA_STARTS):
        return "'" + text
    return text


def chromium() -> str:
    for name in CHROMIUM:
        found = shutil.which(name)
        if found:
            return found
    raise ReportUnavailable(
        "PDF reports need headless Chromium, which is not installed (Debian: `apt install "
        "chromium`); ask for a report without PDF (pdf=false, --format html) meanwhile"
    )


def print_pdf(html: Path, pdf: Path, timeout_s: float = 120.0) -> None:
    """The HTML printed to PDF by headless Chromium (no network, no first-run work)."""
    executable = chromium()
    with tempfile.TemporaryDirectory(prefix="dg-chromium-") as profile:
        try:
            _run_chromium(executable, profile, html, pdf, timeout_s)
        except subprocess.TimeoutExpired:
            raise ReportUnavailable(f"Chromium printed no PDF within {timeout_s:.0f} s") from None
        except (OSError, subprocess.CalledProcessError) as error:
            raise ReportUnavailable(f"Chromium failed to print the PDF: {error}") from None
    if not pdf.exists() or pdf.stat().st_size == 0:
        raise ReportUnavailable("Chromium wrote no PDF")


def _run_chromium(executable: str, profile: str, html: Path, pdf: Path, timeout_s: float) -> None:
    """Headless Chromium prints `html` to `pdf` with a throwaway profile and no network."""
    subprocess.run(  # noqa: S603 - fixed executable, our own file paths
        [
            executable,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--no-pdf-header-footer",
            f"--user-data-dir={profile}",
            f"--print-to-pdf={pdf}",
            html.resolve().as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=timeout_s,
    )


def render(data: dict, folder: Path, settings: Settings, pdf: bool = True) -> dict:
    """Write every artifact, the manifest and its signature into `folder`; returns the manifest.
    A signing key that is configured but unusable fails the report (it is never left unsigned
    by accident)."""
    key = _signing_key(settings)
    signing = signing_block(key)
    folder.mkdir(parents=True, exist_ok=True)
    charts = _charts(data, folder)
    document = {k: v for k, v in data.items() if k != "events"}
    (folder / "report.json").write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))
    (folder / "events.csv").write_bytes(_events_csv(data["events"], settings))
    environment = Environment(
        loader=PackageLoader("services", "templates"), autoescape=select_autoescape(["html"])
    )
    html = environment.get_template("report.html").render(
        report=document, charts=charts, signing=signing
    )
    (folder / "report.html").write_text(html)
    artifacts = ["report.json", "events.csv", *charts, "report.html"]
    if pdf:
        print_pdf(folder / "report.html", folder / "report.pdf")
        artifacts.append("report.pdf")
    listing = [{"file": name, "sha256": _sha256(folder / name)} for name in artifacts]
    manifest = {
        "distillguard_version": data.get("distillguard_version") or full_version(),
        "generated_at": data["generated_at"],
        "generated_unix": int(time.time()),
        "subject": document["subject"],
        "configuration": {
            "detector": settings.detector,
            "embedding_tier": settings.embedding_tier,
            "embedding_model": embedding_model(settings),
            "target_fpr": settings.target_fpr,
            "redact_prompts": settings.redact_prompts,
            "store": settings.store,
        },
        "artifacts": listing,
        "report_sha256": hashlib.sha256(
            orjson.dumps(listing, option=orjson.OPT_SORT_KEYS)
        ).hexdigest(),
        "signing": signing,
    }
    (folder / "manifest.json").write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
    if key is not None:
        sign_manifest(folder, key)
    return manifest


def _signing_key(settings: Settings) -> Ed25519PrivateKey | None:
    try:
        return load_signing_key(settings.report_signing_key)
    except SigningKeyError as error:
        raise ReportError(str(error)) from None


def verify_manifest(folder: Path) -> list[str]:
    """Files that changed, appeared or went missing, and `manifest.json` / `manifest.sig` when
    they were altered (empty: the report is intact; `signing.verify_report` says more)."""
    return list(dict.fromkeys(p["file"] for p in verify_report(folder).problems))


def write_report(
    store: Store,
    settings: Settings,
    subject: Subject,
    folder: Path,
    pdf: bool = True,
    provenance: Sequence[dict] = (),
) -> dict:
    """A complete report in `folder` (absent or empty: a report never mixes with another's
    files), or an exception and nothing on disk."""
    _signing_key(settings)  # a broken key fails before any work
    data = gather(store, settings, subject, provenance)
    return _staged(folder, lambda staging: render(data, staging, settings, pdf))


def _staged(folder: Path, write: Callable[[Path], dict]) -> dict:
    """`write` into a private temporary folder beside `folder`, moved into place only when it
    returned; on any failure the temporary folder is removed."""
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ReportError(f"{folder} already exists and is not empty: choose a new folder")
    if not folder.parent.exists():
        private_folder(folder.parent)
    staging = Path(
        tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".partial", dir=folder.parent)
    )
    try:
        manifest = write(staging)
        for file in staging.iterdir():
            file.chmod(PRIVATE_FILE)
        staging.rename(folder)  # atomic; onto an absent or empty folder only
    except OSError as error:
        shutil.rmtree(staging, ignore_errors=True)
        raise ReportError(f"the report could not be written to {folder}: {error}") from error
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


class NoSuchReport(LookupError):
    """No stored report by that id, or no such file in it."""


def reports_dir(settings: Settings) -> Path:
    """Where the API keeps the reports it generates, one folder per report id."""
    return settings.data_dir / "reports"


def listed_files(manifest: dict) -> list[str]:
    """Every file of a report, its manifest (and the manifest's signature, if any) last."""
    signed = bool((manifest.get("signing") or {}).get("algorithm"))
    return [a["file"] for a in manifest["artifacts"]] + ["manifest.json"] + [SIGNATURE] * signed


def check_ready(settings: Settings, pdf: bool = True) -> None:
    """Raises what would fail any report at once (no Chromium for a PDF, an unusable signing
    key), so the API can refuse a report job before queueing it."""
    if pdf:
        chromium()
    _signing_key(settings)


def publish_report(
    store: Store,
    settings: Settings,
    subject: Subject,
    pdf: bool = True,
    report_id: str | None = None,
) -> tuple[str, dict]:
    """A new report in `reports_dir` under `report_id` (a report job's id) or a fresh random
    one; returns the id and manifest."""
    report_id = report_id or uuid.uuid4().hex
    folder = private_folder(reports_dir(settings)) / report_id
    return report_id, write_report(store, settings, subject, folder, pdf)


def published_file(settings: Settings, report_id: str, name: str) -> tuple[Path, dict]:
    """A published report's file and the report's subject. Only files its manifest lists are
    served, so no name (`../..`, a file added later) reaches outside them."""
    folder = reports_dir(settings) / report_id
    if not report_id.isalnum() or not (folder / "manifest.json").exists():
        raise NoSuchReport(f"no report {report_id!r}")
    manifest = orjson.loads((folder / "manifest.json").read_bytes())
    if name not in listed_files(manifest):
        raise NoSuchReport(f"report {report_id} has no file {name!r}")
    return folder / name, manifest["subject"]
