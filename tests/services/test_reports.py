"""Forensic reports on both store backends: a real PDF from headless Chromium whose first page
renders to PNG and whose text (pdftotext) says what the report found; manifest hashes verify
and catch tampering; prompt text is escaped in the HTML and defused in the CSV."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import orjson
import pytest

from core.events import Event
from core.settings import Settings
from core.verdicts import ClusterVerdict
from services.reports import Subject, verify_manifest, write_report
from storage import Store
from storage.rows import cluster_row, event_row
from tests.services.test_api import T0, _verdict

XSS = '<script>alert(1)</script><img src=x onerror="alert(2)">'


def _seed(store: Store) -> None:
    events = [
        Event.model_validate(
            {
                "request_id": f"harvest-{i}",
                "account_id": "acct-harvest",
                "timestamp": int(T0.timestamp() * 1000) + i * 60_000,
                "prompt": XSS if i == 0 else ("=HYPERLINK(1)" if i == 1 else f"Explain topic {i}"),
                "prompt_tokens": 20,
                "completion_tokens": 200,
                "params": {"temperature": 0},
            }
        )
        for i in range(30)
    ]
    store.insert("events", [event_row(e) for e in events])
    store.insert(
        "verdicts",
        [
            _verdict("acct-harvest", 0.3, "benign", 8),
            _verdict("acct-harvest", 0.83, "extraction", 30, 20),
        ],
    )
    store.insert(
        "clusters",
        [
            cluster_row(
                ClusterVerdict(
                    cluster_id="c-7",
                    updated=T0,
                    members=["acct-harvest", "acct-other"],
                    score=0.7,
                    label="extraction",
                )
            )
        ],
    )


@pytest.mark.browser
def test_account_report_renders_a_checkable_pdf(store: Store, tmp_path: Path) -> None:
    _seed(store)
    folder = tmp_path / "report"
    manifest = write_report(store, Settings(), Subject(account_id="acct-harvest"), folder)
    files = {a["file"] for a in manifest["artifacts"]}
    assert {"report.pdf", "report.html", "report.json", "events.csv", "volume.png"} <= files
    assert verify_manifest(folder) == []

    subprocess.run(
        [
            shutil.which("pdftoppm") or "pdftoppm",
            "-png",
            "-r",
            "60",
            "-f",
            "1",
            "-l",
            "1",
            str(folder / "report.pdf"),
            str(tmp_path / "page"),
        ],
        check=True,
    )
    (page,) = tmp_path.glob("page*.png")
    assert page.stat().st_size > 5_000  # a rendered page, not a blank stub
    text = subprocess.run(
        ["pdftotext", "-layout", str(folder / "report.pdf"), "-"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    for expected in (
        "Forensic report: account acct-harvest",
        "extraction",
        "greedy_share",
        "c-7",
        "Chain of custody",
    ):
        assert expected in text, expected
    assert "6600" in text.replace(",", "")  # 30 requests x 220 tokens in the harvest estimate

    html = (folder / "report.html").read_text()
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html
    assert 'onerror="alert(2)"' not in html
    csv_text = (folder / "events.csv").read_text()
    assert "'=HYPERLINK(1)" in csv_text
    report = orjson.loads((folder / "report.json").read_bytes())
    assert report["summary"]["label"] == "extraction" and report["harvest"]["requests"] == 30

    (folder / "events.csv").write_text(csv_text + "tampered\n")
    assert verify_manifest(folder) == ["events.csv"]


def test_campaign_report_covers_its_members(store: Store, tmp_path: Path) -> None:
    _seed(store)
    manifest = write_report(
        store, Settings(), Subject(cluster_id="c-7"), tmp_path / "campaign", pdf=False
    )
    report = orjson.loads((tmp_path / "campaign" / "report.json").read_bytes())
    assert report["accounts"] == ["acct-harvest", "acct-other"]
    assert (
        manifest["subject"]["cluster_id"] == "c-7" and verify_manifest(tmp_path / "campaign") == []
    )


def test_reports_from_the_api_are_audited_downloads(store: Store, tmp_path: Path) -> None:
    """Through the typed client: a report job is queued (202), polled to `done`, and its files
    download; names outside the manifest are 404s."""
    from fastapi.testclient import TestClient

    from distillguard.client import Client, NotFound
    from services.api import create_app
    from services.api.schemas import ReportManifest
    from services.auth import create_token

    _seed(store)
    token = create_token(store, "analyst", "legal")[0]
    with (
        TestClient(create_app(Settings(data_dir=tmp_path), store)) as http,
        Client(token=token, http=http) as client,
    ):
        queued = client.create_report(account_id="acct-harvest", pdf=False)
        assert queued.status in ("queued", "running") and queued.report_id is None
        job = client.wait_for_report(queued, timeout=120)
        assert job.report_id == queued.job_id and job.files[-1] == "manifest.json"
        assert client.get_report_job(job.job_id) == job  # the finished state stays readable
        manifest = ReportManifest.model_validate_json(
            client.get_report_file(job.report_id, "manifest.json")
        )
        assert manifest.report_sha256 == job.report_sha256
        html = client.get_report_file(job.report_id, "report.html")
        assert b"acct-harvest" in html
        for bad in ("../../etc/passwd", "..%2F..%2Fsecret", "nothing.txt"):
            with pytest.raises(NotFound):
                client.get_report_file(job.report_id, bad)
        with pytest.raises(NotFound):
            client.get_report_job("0" * 32)
    actions = {r["action"].split(":")[0] for r in store.query("SELECT action FROM {db}.audit_log")}
    assert {"generate_report", "export_report"} <= actions
