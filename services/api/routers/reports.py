"""Forensic reports as jobs: ask for one (202 with a job id), poll the job, download the
finished report's files (asking and downloading are audited). `services.report_jobs` runs the
jobs in threads of this process and keeps their state on disk."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import FileResponse

from services.api.deps import Analyst, Audit, SettingsDep
from services.api.errors import errors
from services.api.schemas import ReportJob, ReportJSONFile, ReportRequest
from services.report_jobs import NOT_WRITTEN, PDF_UNAVAILABLE, ReportJobs
from services.reports import (
    NoSuchReport,
    ReportError,
    ReportUnavailable,
    check_ready,
    published_file,
)

router = APIRouter(tags=["reports"])
BINARY = {"schema": {"type": "string", "format": "binary"}}
REPORT_FILE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The file, as its type says (`manifest.json` and `report.json` are JSON).",
        "model": ReportJSONFile,
        "content": {
            "application/pdf": BINARY,
            "text/html": {"schema": {"type": "string"}},
            "text/csv": {"schema": {"type": "string"}},
            "image/png": BINARY,
        },
    }
}


def report_jobs(request: Request) -> ReportJobs:
    return request.app.state.report_jobs


Jobs = Annotated[ReportJobs, Depends(report_jobs)]


JOB_LOCATION: dict[int | str, dict[str, Any]] = {
    202: {
        "description": "Queued.",
        "headers": {
            "Location": {"description": "The job's status route.", "schema": {"type": "string"}}
        },
    }
}


@router.post(
    "/v1/reports", status_code=202, responses=JOB_LOCATION | errors(401, 403, 413, 422, 503)
)
def create_report(
    body: ReportRequest,
    response: Response,
    _who: Analyst,
    settings: SettingsDep,
    jobs: Jobs,
    audit: Audit,
) -> ReportJob:
    """Ask for a forensic report (PDF, HTML, JSON, CSV, charts, SHA-256 manifest): 202 with a
    job to poll at `Location`. 503 at once when this server cannot render the PDF (`pdf: false`
    still works) or sign the report; a job that fails later says why, and keeps nothing."""
    subject = {"account_id": body.account_id or "", "cluster_id": body.cluster_id or ""}
    try:
        check_ready(settings, body.pdf)
    except ReportError as failure:
        audit.note("generate_report", **subject)  # audited with the 503
        unavailable = isinstance(failure, ReportUnavailable)
        raise HTTPException(503, PDF_UNAVAILABLE if unavailable else NOT_WRITTEN) from failure
    state = jobs.submit(body.subject(), body.pdf)
    audit.note(f"generate_report:{state['job_id']}", **subject)
    response.headers["Location"] = f"/v1/reports/jobs/{state['job_id']}"
    return ReportJob.from_state(state)


@router.get("/v1/reports/jobs/{job_id}", responses=errors(401, 403, 404, 422))
def get_report_job(job_id: str, _who: Analyst, jobs: Jobs) -> ReportJob:
    """A report job's state; once `done`, its report's id and files."""
    try:
        return ReportJob.from_state(jobs.status(job_id))
    except NoSuchReport as missing:
        raise HTTPException(404, str(missing)) from None


@router.get(
    "/v1/reports/{report_id}/{name}",
    response_class=FileResponse,
    responses=REPORT_FILE | errors(401, 403, 404, 422),
)
def get_report_file(
    report_id: str, name: str, _who: Analyst, settings: SettingsDep, audit: Audit
) -> FileResponse:
    """Download one file of a finished report (only files its manifest lists)."""
    try:
        path, subject = published_file(settings, report_id, name)
    except NoSuchReport as missing:
        raise HTTPException(404, str(missing)) from None
    audit.note(
        f"export_report:{report_id}/{name}",
        account_id=subject.get("account_id") or "",
        cluster_id=subject.get("cluster_id") or "",
    )
    return FileResponse(path, filename=name)
