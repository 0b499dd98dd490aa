"""Forensic reports: generate one, and download its files (both audited)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

from services.api.deps import Analyst, Audit, SettingsDep, StoreDep
from services.api.errors import errors
from services.api.schemas import ReportCreated, ReportRequest
from services.reports import (
    NoSuchReport,
    ReportError,
    ReportUnavailable,
    listed_files,
    publish_report,
    published_file,
)

router = APIRouter(tags=["reports"])
# What the client is told when a report fails; the server's log has the cause.
PDF_UNAVAILABLE = "PDF rendering is unavailable on this server; ask for the report with pdf=false"
NOT_WRITTEN = "the report could not be written on this server"
BINARY = {"schema": {"type": "string", "format": "binary"}}
REPORT_FILE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The file, as its type says (the manifest is JSON).",
        "content": {
            "application/pdf": BINARY,
            "text/html": {"schema": {"type": "string"}},
            "text/csv": {"schema": {"type": "string"}},
            "image/png": BINARY,
            "application/json": {"schema": {"type": "object"}},
        },
    }
}


@router.post("/v1/reports", status_code=201, responses=errors(401, 403, 413, 422, 503))
def create_report(
    body: ReportRequest, _who: Analyst, store: StoreDep, settings: SettingsDep, audit: Audit
) -> ReportCreated:
    """Generate a forensic report (PDF, HTML, JSON, CSV, charts, SHA-256 manifest). 503 when
    this server cannot render the PDF (`pdf: false` still works) or write the report; nothing
    of a failed report is kept."""
    subject = {"account_id": body.account_id or "", "cluster_id": body.cluster_id or ""}
    try:
        report_id, manifest = publish_report(store, settings, body.subject(), body.pdf)
    except ReportError as failure:
        audit.note("generate_report", **subject)  # audited with the 503
        unavailable = isinstance(failure, ReportUnavailable)
        raise HTTPException(503, PDF_UNAVAILABLE if unavailable else NOT_WRITTEN) from failure
    audit.note(f"generate_report:{report_id}", **subject)
    return ReportCreated(
        report_id=report_id,
        report_sha256=manifest["report_sha256"],
        files=listed_files(manifest),
    )


@router.get(
    "/v1/reports/{report_id}/{name}",
    response_class=FileResponse,
    responses=REPORT_FILE | errors(401, 403, 404, 422),
)
def get_report_file(
    report_id: str, name: str, _who: Analyst, settings: SettingsDep, audit: Audit
) -> FileResponse:
    """Download one file of a report (only files its manifest lists)."""
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
