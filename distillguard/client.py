"""A typed Python client for the DistillGuard API, for notebooks and automation.

    from distillguard.client import Client

    with Client("http://127.0.0.1:8000", token="dg_...") as dg:
        top = dg.list_accounts(label="extraction", limit=10).items
        job = dg.wait_for_report(dg.create_report(account_id=top[0].account_id, pdf=False))
        html = dg.get_report_file(job.report_id, "report.html")

One method per API operation, named as its OpenAPI `operationId`, returning the API's own
pydantic models (`services.api.schemas`), so a response that drifts from the document fails
here loudly. Every 4xx/5xx raises an `APIError` subclass carrying the API's error body. Built on
httpx: pass `http=` to reuse a configured `httpx.Client` (a proxy, TLS settings, or Starlette's
`TestClient` to talk to an app in-process).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import orjson
from pydantic import BaseModel

from services.api.routers.dispositions import DispositionRecord, DispositionRequest
from services.api.schemas import (
    AccountDetail,
    AccountSummary,
    Acknowledgement,
    Alert,
    AuditRecord,
    Cluster,
    ClusterDetail,
    Health,
    IngestReceipt,
    LoggedEvent,
    Page,
    ReportJob,
    TokenCreated,
    TokenRevoked,
    Verdict,
    Webhook,
    WebhookRemoved,
)

M = TypeVar("M", bound=BaseModel)
Params = Mapping[str, str | int | float | datetime | None]


class APIError(RuntimeError):
    """The API refused or failed a request: its status, error code and message (for an
    `invalid_request`, a list of `{location, message}` issues)."""

    def __init__(self, status: int, code: str, message: Any, response: httpx.Response) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.response = response


class AuthError(APIError):
    """401 (no, unknown or revoked token) or 403 (the token's role may not do this)."""


class NotFound(APIError):
    """404: no such account, campaign, alert, webhook, token, report or job."""


class InvalidRequest(APIError):
    """400, 413 or 422: the request itself is wrong; `message` says where."""


class RateLimited(APIError):
    """429: too many failed authentications from this address; `retry_after` seconds."""

    @property
    def retry_after(self) -> int | None:
        value = self.response.headers.get("Retry-After")
        return int(value) if value and value.isdigit() else None


class ServerError(APIError):
    """5xx: the server could not do it (503: not now, or not on this server)."""


class ReportFailed(RuntimeError):
    """A report job ended `failed`; `job.error` says why."""

    def __init__(self, job: ReportJob) -> None:
        super().__init__(f"report job {job.job_id} failed: {job.error}")
        self.job = job


ERRORS: dict[int, type[APIError]] = {
    400: InvalidRequest,
    401: AuthError,
    403: AuthError,
    404: NotFound,
    413: InvalidRequest,
    422: InvalidRequest,
    429: RateLimited,
}


def _error(response: httpx.Response) -> APIError:
    """The typed error for a 4xx/5xx; a body not in the API's shape (a proxy's page) is kept
    as the message, shortened."""
    try:
        body = response.json()["error"]
        code, message = str(body["code"]), body["message"]
    except (ValueError, KeyError, TypeError):
        code, message = "error", response.text[:500]
    fallback = ServerError if response.status_code >= 500 else APIError
    kind = ERRORS.get(response.status_code, fallback)
    return kind(response.status_code, code, message, response)


def _segment(value: str) -> str:
    """A path segment with every reserved character escaped (`a/b` stays one id)."""
    return quote(value, safe="")


def _query(params: Params) -> dict[str, str | int | float]:
    """Query parameters without the unset ones; datetimes as ISO 8601."""
    return {
        key: value.isoformat() if isinstance(value, datetime) else value
        for key, value in params.items()
        if value is not None
    }


class Client:
    """The API at `base_url` as the caller holding `token` (sent as a bearer header)."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        token: str | None = None,
        *,
        timeout: float = 60.0,
        http: httpx.Client | None = None,
    ) -> None:
        self._owned = http is None
        self._http = http or httpx.Client(base_url=base_url, timeout=timeout)
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._owned:
            self._http.close()

    # --- plumbing ---------------------------------------------------------------------------
    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = self._headers | kwargs.pop("headers", {})
        response = self._http.request(method, path, headers=headers, **kwargs)
        if response.status_code >= 400:
            raise _error(response)
        return response

    def _call(self, model: type[M], method: str, path: str, **kwargs: Any) -> M:
        return model.model_validate_json(self._send(method, path, **kwargs).content)

    # --- health -----------------------------------------------------------------------------
    def health(self) -> Health:
        """The API's health: `degraded` (answered 503 with the same body) is returned, not
        raised; any other error is."""
        response = self._http.request("GET", "/healthz", headers=self._headers)
        if response.status_code == 503:
            try:
                return Health.model_validate_json(response.content)
            except ValueError:  # a proxy's 503, not the API's
                pass
        if response.status_code >= 400:
            raise _error(response)
        return Health.model_validate_json(response.content)

    def get_metrics(self) -> str:
        """Prometheus text."""
        return self._send("GET", "/metrics").text

    # --- accounts, verdicts, campaigns, events ----------------------------------------------
    def list_accounts(
        self,
        label: str | None = None,
        disposition: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> Page[AccountSummary]:
        """Accounts by risk; `disposition`: only those whose disposition in force is this one
        (`none`: those without one)."""
        params = _query(
            {"label": label, "disposition": disposition, "limit": limit, "offset": offset}
        )
        return self._call(Page[AccountSummary], "GET", "/v1/accounts", params=params)

    def get_account(self, account_id: str) -> AccountDetail:
        return self._call(AccountDetail, "GET", f"/v1/accounts/{_segment(account_id)}")

    def list_verdicts(
        self,
        account_id: str | None = None,
        label: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> Page[Verdict]:
        params = _query(
            {
                "account_id": account_id,
                "label": label,
                "since": since,
                "until": until,
                "limit": limit,
                "offset": offset,
            }
        )
        return self._call(Page[Verdict], "GET", "/v1/verdicts", params=params)

    def list_clusters(
        self, label: str | None = None, limit: int = 50, offset: int = 0
    ) -> Page[Cluster]:
        params = _query({"label": label, "limit": limit, "offset": offset})
        return self._call(Page[Cluster], "GET", "/v1/clusters", params=params)

    def get_cluster(self, cluster_id: str) -> ClusterDetail:
        return self._call(ClusterDetail, "GET", f"/v1/clusters/{_segment(cluster_id)}")

    def list_events(
        self,
        account_id: str,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> Page[LoggedEvent]:
        params = _query(
            {
                "account_id": account_id,
                "since": since,
                "until": until,
                "limit": limit,
                "offset": offset,
            }
        )
        return self._call(Page[LoggedEvent], "GET", "/v1/events", params=params)

    def ingest_events(
        self,
        events: Iterable[Mapping[str, Any] | bytes] | bytes,
        format: str = "distillguard",
        account: str | None = None,
        start: datetime | None = None,
        content_type: str = "application/x-ndjson",
    ) -> IngestReceipt:
        """Post a batch (an ingest token): event documents, sent as NDJSON, or a body already
        in the log format (`bytes`: a log file's lines; an OTLP export with
        `content_type="application/json"`)."""
        if isinstance(events, bytes):
            body = events
        else:
            body = b"\n".join(e if isinstance(e, bytes) else orjson.dumps(e) for e in events)
        params = _query({"format": format, "account": account, "start": start})
        return self._call(
            IngestReceipt,
            "POST",
            "/v1/events",
            content=body,
            params=params,
            headers={"Content-Type": content_type},
        )

    # --- reports ----------------------------------------------------------------------------
    def create_report(
        self,
        account_id: str | None = None,
        cluster_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        pdf: bool = True,
    ) -> ReportJob:
        """Queue a report; `wait_for_report` waits for it."""
        body = _query({"account_id": account_id, "cluster_id": cluster_id})
        body |= _query({"since": since, "until": until})
        return self._call(ReportJob, "POST", "/v1/reports", json={**body, "pdf": pdf})

    def get_report_job(self, job_id: str) -> ReportJob:
        return self._call(ReportJob, "GET", f"/v1/reports/jobs/{_segment(job_id)}")

    def wait_for_report(
        self, job: ReportJob | str, timeout: float = 600.0, interval: float = 0.5
    ) -> ReportJob:
        """Poll until the job is `done` (returned) or `failed` (`ReportFailed`);
        `TimeoutError` after `timeout` seconds."""
        job_id = job.job_id if isinstance(job, ReportJob) else job
        deadline = time.monotonic() + timeout
        while True:
            state = self.get_report_job(job_id)
            if state.status == "done":
                return state
            if state.status == "failed":
                raise ReportFailed(state)
            if time.monotonic() >= deadline:
                raise TimeoutError(f"report job {job_id} still {state.status} after {timeout} s")
            time.sleep(interval)

    def get_report_file(self, report_id: str, name: str) -> bytes:
        """One file of a finished report, as bytes (`manifest.json`, `report.pdf`, ...)."""
        path = f"/v1/reports/{_segment(report_id)}/{_segment(name)}"
        return self._send("GET", path).content

    # --- alerts and webhooks ----------------------------------------------------------------
    def list_alerts(
        self, status: str | None = None, limit: int = 50, offset: int = 0
    ) -> Page[Alert]:
        params = _query({"status": status, "limit": limit, "offset": offset})
        return self._call(Page[Alert], "GET", "/v1/alerts", params=params)

    def acknowledge_alert(self, alert_id: str) -> Acknowledgement:
        return self._call(Acknowledgement, "POST", f"/v1/alerts/{_segment(alert_id)}/ack")

    def create_disposition(self, request: DispositionRequest) -> DispositionRecord:
        """Set an account's or a campaign's disposition (allowlist, false positive, ...)."""
        body = orjson.loads(request.model_dump_json(exclude_none=True))
        return self._call(DispositionRecord, "POST", "/v1/dispositions", json=body)

    def account_dispositions(self, account_id: str) -> Page[DispositionRecord]:
        path = f"/v1/accounts/{_segment(account_id)}/dispositions"
        return self._call(Page[DispositionRecord], "GET", path)

    def cluster_dispositions(self, cluster_id: str) -> Page[DispositionRecord]:
        path = f"/v1/clusters/{_segment(cluster_id)}/dispositions"
        return self._call(Page[DispositionRecord], "GET", path)

    def list_dispositions(
        self,
        disposition: str | None = None,
        subject_kind: str | None = None,
        active: bool = False,
        limit: int = 50,
        offset: int = 0,
    ) -> Page[DispositionRecord]:
        params = _query(
            {
                "disposition": disposition,
                "subject_kind": subject_kind,
                "active": "true" if active else None,
                "limit": limit,
                "offset": offset,
            }
        )
        return self._call(Page[DispositionRecord], "GET", "/v1/dispositions", params=params)

    def list_webhooks(self) -> Page[Webhook]:
        return self._call(Page[Webhook], "GET", "/v1/webhooks")

    def create_webhook(
        self, url: str, format: str = "json", routing_key: str | None = None
    ) -> Webhook:
        body = _query({"url": url, "format": format, "routing_key": routing_key})
        return self._call(Webhook, "POST", "/v1/webhooks", json=body)

    def delete_webhook(self, webhook_id: str) -> WebhookRemoved:
        return self._call(WebhookRemoved, "DELETE", f"/v1/webhooks/{_segment(webhook_id)}")

    # --- admin ------------------------------------------------------------------------------
    def list_audit_log(
        self, account_id: str | None = None, limit: int = 50, offset: int = 0
    ) -> Page[AuditRecord]:
        params = _query({"account_id": account_id, "limit": limit, "offset": offset})
        return self._call(Page[AuditRecord], "GET", "/v1/audit", params=params)

    def create_token(self, role: str, name: str) -> TokenCreated:
        return self._call(TokenCreated, "POST", "/v1/tokens", json={"role": role, "name": name})

    def revoke_token(self, token_id: str) -> TokenRevoked:
        return self._call(TokenRevoked, "DELETE", f"/v1/tokens/{_segment(token_id)}")
