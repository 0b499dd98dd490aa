"""Forensic reports for legal teams: one account, one campaign or a time range.

A report folder holds `report.json` (every figure), `report.html` (jinja2, autoescaped: prompt
text is inert), `events.csv`, two timeline charts (matplotlib PNG), `report.pdf` (the HTML
printed by headless Chromium) and `manifest.json`: the SHA-256 of every artifact, the report's
own hash (SHA-256 of the canonical artifact list, so it binds them all), the DistillGuard
version, the detector and its calibration, and the redaction policy. Anyone can re-hash the
files and compare (`verify_manifest`).

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

import orjson
from jinja2 import Environment, PackageLoader, select_autoescape

from core import __version__
from core.files import PRIVATE_FILE, private_folder
from core.settings import Settings
from core.timeutil import END_OF_TIME_MS
from detectors.registry import CALIBRATION_FILE, calibration_dir
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
    tokens = sum(int(e["prompt_tokens"] or 0) + int(e["completion_tokens"] or 0) for e in events)
    calibration = _calibration(settings)
    return {
        "subject": {"title": subject.title, **subject.__dict__},
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
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
                "benign_tail_probability": (r.get("evidence") or {}).get("benign_tail_probability"),
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
        "harvest": {
            "requests": len(events),
            "tokens": tokens,
            "estimated_cost_usd": round(tokens / 1000 * PRICE_PER_1K_TOKENS, 2),
            "price_per_1k_tokens_usd": PRICE_PER_1K_TOKENS,
        },
        "provenance": list(provenance),
        "methodology": {
            "detector": latest["detector_version"] if latest else None,
            "target_fpr": calibration.get("target_fpr", settings.target_fpr),
            "thresholds": calibration.get("thresholds"),
            "explanation": (
                "Each signal is compared with honest accounts at a comparable window size; its "
                "surprise is -log10 of the honest tail probability. The extraction threshold was "
                "set from honest accounts only, so that about "
                f"{calibration.get('target_fpr', settings.target_fpr):.2%} of honest accounts "
                "would be flagged over their lifetime."
            ),
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
    path = calibration_dir(settings) / CALIBRATION_FILE
    if not path.exists():
        return {}
    calibration = orjson.loads(path.read_bytes()).get("calibration", {})
    return {k: calibration.get(k) for k in ("target_fpr", "thresholds")}


def _charts(data: dict, folder: Path) -> list[str]:
    """Timeline charts: requests per hour and score over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    hours: dict[int, int] = {}
    for event in data["events"]:
        hour = int(event["event_ms"]) // 3_600_000
        hours[hour] = hours.get(hour, 0) + 1
    figure, axis = plt.subplots(figsize=(7, 2.4))
    axis.bar(
        [datetime.fromtimestamp(h * 3600, UTC) for h in hours], list(hours.values()), width=0.04
    )
    axis.set_ylabel("requests / hour")
    figure.autofmt_xdate()
    figure.tight_layout()
    figure.savefig(folder / "volume.png", dpi=110)
    plt.close(figure)
    names.append("volume.png")
    figure, axis = plt.subplots(figsize=(7, 2.4))
    for account in data["accounts"][:20]:
        points = [v for v in data["verdicts"] if v["account_id"] == account]
        axis.step(
            [datetime.fromtimestamp(v["time_ms"] / 1000, UTC) for v in points],
            [v["score"] for v in points],
            where="post",
        )
    axis.axhline(0.5, color="red", linestyle="--", linewidth=1)
    axis.set_ylim(0, 1)
    axis.set_ylabel("score (0.5 = threshold)")
    figure.autofmt_xdate()
    figure.tight_layout()
    figure.savefig(folder / "score.png", dpi=110)
    plt.close(figure)
    names.append("score.png")
    return names


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
    """Write every artifact and the manifest into `folder`; returns the manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    charts = _charts(data, folder)
    document = {k: v for k, v in data.items() if k != "events"}
    (folder / "report.json").write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))
    (folder / "events.csv").write_bytes(_events_csv(data["events"], settings))
    environment = Environment(
        loader=PackageLoader("services", "templates"), autoescape=select_autoescape(["html"])
    )
    html = environment.get_template("report.html").render(report=document, charts=charts)
    (folder / "report.html").write_text(html)
    artifacts = ["report.json", "events.csv", *charts, "report.html"]
    if pdf:
        print_pdf(folder / "report.html", folder / "report.pdf")
        artifacts.append("report.pdf")
    listing = [{"file": name, "sha256": _sha256(folder / name)} for name in artifacts]
    manifest = {
        "distillguard_version": __version__,
        "generated_at": data["generated_at"],
        "generated_unix": int(time.time()),
        "subject": document["subject"],
        "configuration": {
            "detector": settings.detector,
            "embedding_tier": settings.embedding_tier,
            "target_fpr": settings.target_fpr,
            "redact_prompts": settings.redact_prompts,
            "store": settings.store,
        },
        "artifacts": listing,
        "report_sha256": hashlib.sha256(
            orjson.dumps(listing, option=orjson.OPT_SORT_KEYS)
        ).hexdigest(),
    }
    (folder / "manifest.json").write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
    return manifest


def verify_manifest(folder: Path) -> list[str]:
    """Artifacts whose hash no longer matches (empty: the report is intact)."""
    manifest = orjson.loads((folder / "manifest.json").read_bytes())
    bad = [a["file"] for a in manifest["artifacts"] if _sha256(folder / a["file"]) != a["sha256"]]
    listing = orjson.dumps(manifest["artifacts"], option=orjson.OPT_SORT_KEYS)
    if hashlib.sha256(listing).hexdigest() != manifest["report_sha256"]:
        bad.append("manifest.json")
    return bad


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
    """Every file of a report, its manifest last."""
    return [a["file"] for a in manifest["artifacts"]] + ["manifest.json"]


def publish_report(
    store: Store, settings: Settings, subject: Subject, pdf: bool = True
) -> tuple[str, dict]:
    """A new report in `reports_dir` under a fresh random id; returns the id and manifest."""
    report_id = uuid.uuid4().hex
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
