"""The typed client (`distillguard.client`) against the API on a real uvicorn on 127.0.0.1
(`tests/services/serve_api.py`, the embedded store): bearer token, typed models, typed errors,
and the report job flow from queueing to download. Also: a job whose process died is reported
failed, not running for ever."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient

from core.settings import Settings
from distillguard.client import AuthError, Client, InvalidRequest, NotFound, ReportFailed
from services.api import create_app
from services.api.routers.dispositions import DispositionRequest
from services.api.schemas import ReportDocument, ReportManifest
from services.auth import create_token
from services.report_jobs import INTERRUPTED, PDF_UNAVAILABLE, ReportJobs, jobs_dir
from services.reports import Subject, reports_dir
from storage import Store
from tests.services.test_api_edge_server import Server, served


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with served(tmp_path_factory.mktemp("client-server")) as running:
        yield running


def test_the_client_over_a_real_server(server: Server) -> None:
    base = f"http://127.0.0.1:{server.port}"
    with Client(base, token=server.admin) as admin:
        assert admin.health().status == "ok"
        analyst_token = admin.create_token("analyst", "notebook")
        assert "distillguard_api_requests_total" in admin.get_metrics()
    with Client(base, token=analyst_token.token) as client:
        assert client.list_accounts().items == []
        assert client.list_accounts(disposition="false_positive", label="extraction").items == []
        with pytest.raises(InvalidRequest):
            client.list_accounts(disposition="maybe")
        assert client.list_clusters().items == [] and client.list_verdicts().next_offset is None
        with pytest.raises(NotFound):
            client.get_cluster("c-none")
        with pytest.raises(NotFound):
            client.get_account("nobody/../x")  # one escaped path segment, not a traversal
        with pytest.raises(AuthError) as forbidden:
            client.list_webhooks()
        assert forbidden.value.status == 403

        job = client.wait_for_report(client.create_report(account_id="acct-none", pdf=False))
        assert job.status == "done" and job.error is None and job.finished_ms
        files = {name: client.get_report_file(job.report_id or "", name) for name in job.files}
        manifest = ReportManifest.model_validate_json(files["manifest.json"])
        assert manifest.report_sha256 == job.report_sha256
        assert ReportDocument.model_validate_json(files["report.json"]).accounts == ["acct-none"]

        until = datetime.now(UTC) + timedelta(days=7)
        request = DispositionRequest(
            subject_kind="account", subject_id="acct-ci", disposition="allowlisted",
            reason="nightly CI", expires_at=until,
        )  # fmt: skip
        recorded = client.create_disposition(request)
        assert recorded.active and recorded.actor == "notebook"
        assert [d.disposition for d in client.account_dispositions("acct-ci").items] == [
            "allowlisted"
        ]
        listed = client.list_dispositions(disposition="allowlisted", active=True).items
        assert [d.subject_id for d in listed] == ["acct-ci"]
        assert client.cluster_dispositions("c-none").items == []
        with pytest.raises(InvalidRequest):  # an allowlist needs an expiry
            client.create_disposition(request.model_copy(update={"expires_at": None}))
    with Client(base, token=server.admin) as admin:
        assert admin.revoke_token(analyst_token.token_id).revoked
    for token in (analyst_token.token, "dg_x_forged"):  # revoked, then never issued
        with Client(base, token=token) as refused_client, pytest.raises(AuthError) as refused:
            refused_client.list_accounts()
        assert refused.value.status == 401 and refused.value.code == "unauthorized"
    assert httpx.get(f"{base}/v1/reports/jobs/{job.job_id}").status_code == 401


def test_a_job_whose_process_died_reads_failed(embedded: Store, tmp_path: Path) -> None:
    """The job's state is on disk, private: it outlives the pool that ran it, and one left
    `running` by a process that is gone says it was interrupted."""
    settings = Settings(data_dir=tmp_path)
    jobs = ReportJobs(embedded, settings)
    state = jobs.submit(Subject(account_id="acct-none"), pdf=False)
    jobs.shutdown()  # waits for the job
    assert jobs.status(state["job_id"])["status"] == "done"
    exited = subprocess.run(  # noqa: S603 - a process that is gone by the time it is read
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True
    )
    stale = {**state, "job_id": "f" * 32, "status": "running", "pid": int(exited.stdout)}
    (jobs_dir(settings) / f"{stale['job_id']}.json").write_bytes(orjson.dumps(stale))
    read = jobs.status(stale["job_id"])
    assert (read["status"], read["error"]) == ("failed", INTERRUPTED)
    assert jobs_dir(settings).stat().st_mode & 0o777 == 0o700
    assert (jobs_dir(settings) / f"{state['job_id']}.json").stat().st_mode & 0o077 == 0


def test_a_failed_job_says_why_and_the_client_raises(
    embedded: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job that fails in its thread (Chromium gone after the job was queued) ends `failed`
    with the generic reason, keeps no report, and `wait_for_report` raises `ReportFailed`."""
    app = create_app(Settings(data_dir=tmp_path), embedded)
    token = create_token(embedded, "analyst", "failing")[0]
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    state = app.state.report_jobs.submit(Subject(account_id="acct-none"), pdf=True)
    with TestClient(app) as http, pytest.raises(ReportFailed) as failed:
        Client(token=token, http=http).wait_for_report(state["job_id"], timeout=60)
    assert failed.value.job.error == PDF_UNAVAILABLE and failed.value.job.report_id is None
    assert [p.name for p in reports_dir(Settings(data_dir=tmp_path)).iterdir()] == [".jobs"]
