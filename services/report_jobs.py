"""Reports as jobs: `POST /v1/reports` answers at once with a job id, a thread of the API process
writes the report (Chromium can take a minute), and `GET /v1/reports/jobs/{id}` says how far it
got. The finished report is published under the job's id, so its files download from
`/v1/reports/{job_id}/{name}` as before.

A job's state is a small JSON file in `reports_dir/.jobs/` (private, replaced atomically), so a
status request after completion works from any thread, after a restart, and from every API
process that shares the data folder. A job whose process died before it finished (same host,
pid gone) is reported `failed`, never `running` for ever.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import orjson

from core.files import PRIVATE_FILE, private_folder
from core.settings import Settings
from services.reports import (
    NoSuchReport,
    ReportUnavailable,
    Subject,
    listed_files,
    publish_report,
    reports_dir,
)
from storage import Store

log = logging.getLogger(__name__)
JobStatus = Literal["queued", "running", "done", "failed"]
# What the client is told when a report fails; the server's log has the cause.
PDF_UNAVAILABLE = "PDF rendering is unavailable on this server; ask for the report with pdf=false"
NOT_WRITTEN = "the report could not be written on this server"
INTERRUPTED = "the server stopped before the report was finished; ask for it again"
HOST = socket.gethostname()


def jobs_dir(settings: Settings) -> Path:
    return reports_dir(settings) / ".jobs"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


class ReportJobs:
    """Runs report jobs on a small thread pool and keeps their state on disk."""

    def __init__(self, store: Store, settings: Settings, workers: int = 2) -> None:
        self.store = store
        self.settings = settings
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="dg-report")

    def submit(self, subject: Subject, pdf: bool) -> dict[str, Any]:
        """A queued job for this report; its state is on disk before this returns."""
        job_id = uuid.uuid4().hex
        state: dict[str, Any] = {
            "job_id": job_id,
            "status": "queued",
            "error": None,
            "report_id": None,
            "report_sha256": None,
            "files": [],
            "created_ms": int(time.time() * 1000),
            "finished_ms": None,
            "host": HOST,
            "pid": os.getpid(),
        }
        self._save(state)
        self._pool.submit(self._run, state, subject, pdf)
        return state

    def _run(self, state: dict[str, Any], subject: Subject, pdf: bool) -> None:
        self._save(state | {"status": "running"})
        try:
            _, manifest = publish_report(
                self.store, self.settings, subject, pdf, report_id=state["job_id"]
            )
        except Exception as failure:  # a job never dies silently: its state says failed
            log.exception("report job %s failed", state["job_id"])
            error = PDF_UNAVAILABLE if isinstance(failure, ReportUnavailable) else NOT_WRITTEN
            self._finish(state, "failed", error=error)
        else:
            self._finish(
                state,
                "done",
                report_id=state["job_id"],
                report_sha256=manifest["report_sha256"],
                files=listed_files(manifest),
            )

    def _finish(self, state: dict[str, Any], status: JobStatus, **result: Any) -> None:
        self._save(state | result | {"status": status, "finished_ms": int(time.time() * 1000)})

    def status(self, job_id: str) -> dict[str, Any]:
        """The job's state; `NoSuchReport` for an unknown id."""
        path = jobs_dir(self.settings) / f"{job_id}.json"
        if not job_id.isalnum() or not path.exists():
            raise NoSuchReport(f"no report job {job_id!r}")
        state = orjson.loads(path.read_bytes())
        unfinished = state["status"] in ("queued", "running")
        if unfinished and state["host"] == HOST and not _alive(state["pid"]):
            state |= {"status": "failed", "error": INTERRUPTED}
        return state

    def _save(self, state: dict[str, Any]) -> None:
        """Written whole to a private temporary file, then renamed over the old state."""
        folder = private_folder(jobs_dir(self.settings))
        partial = folder / f".{state['job_id']}.{time.monotonic_ns()}.partial"
        partial.write_bytes(orjson.dumps(state))
        partial.chmod(PRIVATE_FILE)
        partial.replace(folder / f"{state['job_id']}.json")

    def shutdown(self) -> None:
        """Waits for running jobs (a report is never cut off halfway by a clean stop)."""
        self._pool.shutdown(wait=True, cancel_futures=True)
