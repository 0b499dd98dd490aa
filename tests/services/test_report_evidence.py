"""Evidence a legal team can rely on (issue 19 §5): the manifest is signed with Ed25519 and
`report verify` names every change (a file modified, added or removed; the manifest or the
signature altered; another key); every honest share has its denominator; a log without token
counts gets an estimate in the teacher's tokens, labelled as one; the methodology quotes the
benchmark's measured error rates; charts draw their data; the version names the commit."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from matplotlib.dates import date2num
from pydantic import SecretStr
from typer.testing import CliRunner

from core.events import Event
from core.settings import Settings
from core.tokenizer import token_counter
from core.verdicts import Reason, Verdict
from core.version import full_version, package_version, source_commit
from detectors.registry import CALIBRATION_FILE, calibration_dir, variant
from distillguard.cli import ExitCode, app
from services.reports import ReportError, Subject, chart_figures, listed_files, write_report
from services.signing import new_signing_key_pem, sign_manifest, signing_block, verify_report
from storage import EmbeddedClickHouse, Store
from storage.rows import event_row, verdict_row
from tests.conftest import data_folder, drop_database, unique_database
from tests.services.test_api import T0

runner = CliRunner()
ACCOUNT = "acct-quiet"
HONEST = 412  # benign accounts in the saved calibration's report


def _key() -> SecretStr:
    return SecretStr(new_signing_key_pem().decode())


def _seed(store: Store) -> None:
    """Requests whose log carries no token counts, and one extraction verdict whose top reason
    is rarer than any honest account (tail probability 1e-6)."""
    events = [
        Event.model_validate(
            {
                "request_id": f"quiet-{i}",
                "account_id": ACCOUNT,
                "timestamp": int(T0.timestamp() * 1000) + i * 600_000,
                "prompt": f"List every capital city of region {i}, one per line.",
                "response": "Paris\nBerlin\nMadrid\nRome\nLisbon",
            }
        )
        for i in range(6)
    ]
    store.insert("events", [event_row(e) for e in events])
    verdict = Verdict(
        account_id=ACCOUNT,
        timestamp=T0.replace(minute=50),
        requests_seen=6,
        score=0.729,
        label="extraction",
        reasons=[
            Reason(
                signal="greedy_share",
                value=1.0,
                contribution=0.7,
                evidence={"explanation": "greedy requests", "benign_tail_probability": 1e-6},
            )
        ],
        detector_version="fusion-1",
    )
    store.insert("verdicts", [verdict_row(verdict)])


def _calibration(settings: Settings) -> None:
    """A saved calibration whose report scored `HONEST` benign accounts (as `calibrate` saves)."""
    folder = calibration_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    level = {"flagged": 1, "interval": [0.0004, 0.0136]}
    document = {
        "detector": "extraction",
        "calibration": {
            "target_fpr": 0.001,
            "thresholds": {"extraction": 3.1},
            "fitted_accounts": HONEST,
            "report": {"accounts": HONEST, "levels": {"extraction": level}},
        },
    }
    (folder / CALIBRATION_FILE).write_bytes(orjson.dumps(document))


@pytest.fixture(scope="module")
def reports(chdb_path: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One store, one signed and one unsigned report for the whole module (each test works on
    its own copy): a chDB database and a report cost seconds each on a busy machine."""
    store = EmbeddedClickHouse(chdb_path, database=unique_database())
    store.migrate()
    _seed(store)
    base = tmp_path_factory.mktemp("evidence")
    settings = Settings(data_dir=data_folder(base / "data"), report_signing_key=_key())
    _calibration(settings)
    subject = Subject(account_id=ACCOUNT)
    try:
        write_report(store, settings, subject, base / "signed", pdf=False)
        write_report(store, Settings(data_dir=settings.data_dir), subject, base / "unsigned", False)
        with pytest.raises(ReportError, match="32 bytes"):  # fails before reading the store
            bad = SecretStr("bm90IGEga2V5")  # base64 of 9 bytes
            write_report(store, Settings(report_signing_key=bad), subject, base / "bad", False)
        assert not (base / "bad").exists()
    finally:
        drop_database(store)
    return {"signed": base / "signed", "unsigned": base / "unsigned", "data": settings.data_dir}


@pytest.fixture
def signed(reports: dict[str, Path], tmp_path: Path) -> Path:
    return Path(shutil.copytree(reports["signed"], tmp_path / "report"))


def _verify(folder: Path, *options: str) -> tuple[int, dict]:
    result = runner.invoke(app, ["report", "verify", str(folder), "--json", *options])
    return result.exit_code, orjson.loads(result.stdout)


def _changes(document: dict) -> list[tuple[str, str]]:
    return [(p["file"], p["change"]) for p in document["problems"]]


def test_a_signed_report_verifies_and_carries_its_key(signed: Path) -> None:
    folder = signed
    manifest = orjson.loads((folder / "manifest.json").read_bytes())
    raw = base64.b64decode(manifest["signing"]["public_key"])
    fingerprint = hashlib.sha256(raw).hexdigest()
    assert manifest["signing"]["public_key_fingerprint"] == fingerprint
    assert "manifest.sig" in listed_files(manifest)  # the API serves the signature too
    html = (folder / "report.html").read_text()
    assert fingerprint in html and manifest["signing"]["public_key"] in html
    assert "UNSIGNED" not in html

    code, document = _verify(folder, "--fingerprint", fingerprint)
    assert code == ExitCode.OK and document["verified"] and document["artifacts_checked"] == 5
    assert document["public_key_fingerprint"] == fingerprint

    # Anyone can check it without DistillGuard: OpenSSL over the manifest's exact bytes.
    signature = orjson.loads((folder / "manifest.sig").read_bytes())
    (folder.parent / "sig.bin").write_bytes(base64.b64decode(signature["signature"]))
    (folder.parent / "key.pem").write_text(signature["public_key_pem"])
    checked = subprocess.run(
        [shutil.which("openssl") or "openssl", "pkeyutl", "-verify", "-pubin", "-inkey"]
        + [str(folder.parent / "key.pem"), "-rawin", "-in", str(folder / "manifest.json")]
        + ["-sigfile", str(folder.parent / "sig.bin")],
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0 and "Signature Verified Successfully" in checked.stdout


def _tamper_file(folder: Path) -> None:
    with (folder / "events.csv").open("a") as handle:
        handle.write('"forged","row"\n')


def _regenerate_manifest(folder: Path) -> None:
    """What the issue's forger did: edit a file, then rewrite its hash in the manifest."""
    _tamper_file(folder)
    manifest = orjson.loads((folder / "manifest.json").read_bytes())
    for entry in manifest["artifacts"]:
        entry["sha256"] = hashlib.sha256((folder / entry["file"]).read_bytes()).hexdigest()
    listing = orjson.dumps(manifest["artifacts"], option=orjson.OPT_SORT_KEYS)
    manifest["report_sha256"] = hashlib.sha256(listing).hexdigest()
    (folder / "manifest.json").write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))


def _flip_signature(folder: Path) -> None:
    document = orjson.loads((folder / "manifest.sig").read_bytes())
    signature = bytearray(base64.b64decode(document["signature"]))
    signature[0] ^= 1
    document["signature"] = base64.b64encode(bytes(signature)).decode()
    (folder / "manifest.sig").write_bytes(orjson.dumps(document))


TAMPERING = {
    "artifact modified": (_tamper_file, [("events.csv", "modified")]),
    "artifact added": (
        lambda folder: (folder / "notes.txt").write_text("x"),
        [("notes.txt", "added")],
    ),
    "artifact removed": (
        lambda folder: (folder / "score.png").unlink(),
        [("score.png", "removed")],
    ),
    "manifest rewritten": (_regenerate_manifest, [("manifest.json", "tampered")]),
    "signature altered": (_flip_signature, [("manifest.sig", "tampered")]),
    "signature removed": (
        lambda folder: (folder / "manifest.sig").unlink(),
        [("manifest.sig", "removed")],
    ),
}


@pytest.mark.parametrize("case", list(TAMPERING))
def test_verify_names_each_change(signed: Path, case: str) -> None:
    folder = signed
    tamper, expected = TAMPERING[case]
    tamper(folder)
    code, document = _verify(folder)
    assert code == ExitCode.REPORT_TAMPERED and not document["intact"]
    assert _changes(document) == expected, document["problems"]
    human = runner.invoke(app, ["report", "verify", str(folder)])
    assert human.exit_code == ExitCode.REPORT_TAMPERED
    assert f"{expected[0][0]}: {expected[0][1]}" in human.stdout and "ALTERED" in human.stdout


def test_a_report_re_signed_with_another_key_fails_against_the_published_fingerprint(
    signed: Path,
) -> None:
    folder = signed
    published = orjson.loads((folder / "manifest.json").read_bytes())["signing"]
    _regenerate_manifest(folder)
    forger = Ed25519PrivateKey.generate()
    manifest = orjson.loads((folder / "manifest.json").read_bytes())
    manifest["signing"] = signing_block(forger)
    (folder / "manifest.json").write_bytes(orjson.dumps(manifest))
    sign_manifest(folder, forger)
    assert verify_report(folder).verified  # self-consistent: only the pinned key tells
    code, document = _verify(folder, "--fingerprint", published["public_key_fingerprint"])
    assert code == ExitCode.REPORT_TAMPERED
    assert _changes(document) == [("manifest.json", "tampered")]
    assert "not the expected" in document["problems"][0]["detail"]


def test_without_a_key_the_report_says_unsigned_and_verify_exits_6(
    reports: dict[str, Path],
) -> None:
    folder = reports["unsigned"]
    manifest = orjson.loads((folder / "manifest.json").read_bytes())
    assert manifest["signing"]["algorithm"] is None and not (folder / "manifest.sig").exists()
    assert "UNSIGNED REPORT" in (folder / "report.html").read_text()
    code, document = _verify(folder)
    assert code == ExitCode.REPORT_UNSIGNED and document["intact"] and not document["verified"]
    code, document = _verify(folder, "--fingerprint", "ab" * 32)
    assert code == ExitCode.REPORT_TAMPERED


def test_the_report_gives_denominators_estimates_measured_rates_and_version(
    reports: dict[str, Path],
) -> None:
    folder = reports["signed"]
    html = (folder / "report.html").read_text()
    report = orjson.loads((folder / "report.json").read_bytes())
    assert "0 of 412 honest accounts" in html  # tail probability 1e-6 among 412
    assert "flagged 1 of 412" in html  # the threshold's held-out false positives

    harvest = report["harvest"]
    count = token_counter(reports["data"] / "teacher")
    prompts = [f"List every capital city of region {i}, one per line." for i in range(6)]
    expected = sum(count(prompts + ["Paris\nBerlin\nMadrid\nRome\nLisbon"] * 6))
    assert harvest["tokens"] == harvest["estimated_tokens"] == expected > 6 * 10
    assert harvest["tokens_include_estimate"] and harvest["requests_estimated"] == 6
    assert f"&asymp; {expected:,} (estimate)" in html and "SmolLM2-135M-Instruct" in html

    # The benchmark's worst held-out world, from the committed file (not the template), for
    # the variant the default settings run (on this CPU: static embeddings of every prompt).
    rates = orjson.loads(
        (Path(__file__).parents[2] / "bench/results/detection-error-rates.json").read_bytes()
    )["detectors"][variant(Settings())]["own"]
    benign, attackers = rates["benign_flagged"], rates["attackers_flagged"]
    assert f"{benign['flagged']} of {benign['accounts']:,}" in html
    assert f"{attackers['flagged']} of {attackers['accounts']:,}" in html
    assert "paraphras" in html.split("Known limitations")[1]

    assert report["distillguard_version"] == full_version() in html
    manifest = orjson.loads((folder / "manifest.json").read_bytes())
    assert manifest["distillguard_version"] == full_version()


def test_the_version_is_the_package_plus_the_commit(tmp_path: Path) -> None:
    root = Path(__file__).parents[2]
    head = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert full_version().startswith(f"{package_version()}+g{head}")
    assert source_commit(tmp_path) is None  # an installed wheel: no git beside it
    (tmp_path / ".git").mkdir()  # a folder git does not know stays without a commit too
    (tmp_path / "pyproject.toml").write_text("")
    assert source_commit(tmp_path) is None
    version = runner.invoke(app, ["--version"])
    assert version.stdout.strip() == full_version()


def _data(accounts: int, verdicts_each: int, score: float) -> dict:
    start = int(T0.timestamp() * 1000)
    names = [f"acct-{i}" for i in range(accounts)]
    return {
        "accounts": names,
        "events": [{"event_ms": start + i * 60_000} for i in range(30)],
        "verdicts": [
            {"account_id": name, "time_ms": start + k * 300_000, "score": score}
            for name in names
            for k in range(verdicts_each)
        ],
    }


@pytest.mark.parametrize(
    ("accounts", "verdicts_each"),
    [(12, 1), (1, 1), (2, 4)],
    ids=["campaign-constant", "single-verdict", "series"],
)
def test_charts_draw_every_verdict_visibly(accounts: int, verdicts_each: int) -> None:
    data = _data(accounts, verdicts_each, 0.729)
    figures = chart_figures(data)
    axis = figures["score.png"].axes[0]
    lines = [line for line in axis.get_lines() if line.get_label().startswith("acct-")]
    assert [line.get_label() for line in lines] == data["accounts"]
    low, high = axis.get_xlim()
    for line in lines:
        ys = list(line.get_ydata())
        assert ys[:verdicts_each] == [0.729] * verdicts_each
        assert line.get_marker() == "o" and line.get_visible()
        days = list(date2num(line.get_xdata()))  # matplotlib's unit, as the limits are
        assert days[-1] > days[0]  # held until the last request: a line, not a lone pixel
        assert all(low <= day <= high for day in days)
    assert axis.get_xlabel() and axis.get_ylabel() and axis.get_title()

    bars = figures["volume.png"].axes[0].patches
    assert sum(bar.get_height() for bar in bars) == 30  # every request counted
    assert figures["volume.png"].axes[0].get_ylim()[1] > 30


def test_charts_say_so_when_there_is_nothing_to_draw() -> None:
    figures = chart_figures({"accounts": ["acct-0"], "events": [], "verdicts": []})
    texts = [t.get_text() for name in figures for t in figures[name].axes[0].texts]
    assert texts == ["no requests in this period", "no verdicts in this period"]


def test_report_is_still_a_command_beside_verify_and_keygen(tmp_path: Path) -> None:
    """`distillguard report --account ... --out DIR` works as before (a real process on its own
    embedded store), signs with DG_REPORT_SIGNING_KEY, and `report keygen` makes that key."""
    key_file = tmp_path / "signing.pem"
    made = runner.invoke(app, ["report", "keygen", "--out", str(key_file), "--json"])
    assert made.exit_code == 0 and (key_file.stat().st_mode & 0o777) == 0o600
    fingerprint = orjson.loads(made.stdout)["public_key_fingerprint"]
    again = runner.invoke(app, ["report", "keygen", "--out", str(key_file)])
    assert again.exit_code == ExitCode.USAGE  # a key is never overwritten
    assert runner.invoke(app, ["report", "--account", "a"]).exit_code == ExitCode.USAGE  # --out

    folder = tmp_path / "report"
    result = subprocess.run(
        [sys.executable, "-m", "distillguard.cli", "report", "--account", "nobody"]
        + ["--out", str(folder), "--format", "json", "--json"],
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "DG_DATA_DIR": str(tmp_path / "data"),
            "DG_DETECTOR": "volume",
            "DG_REPORT_SIGNING_KEY": key_file.read_text(),
        },
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert orjson.loads(result.stdout)["signing"]["public_key_fingerprint"] == fingerprint
    assert _verify(folder, "--fingerprint", fingerprint)[0] == ExitCode.OK
