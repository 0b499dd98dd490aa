"""What the API takes and returns, as pydantic models: the OpenAPI document describes every
body exactly, and a response that drifts from its model fails loudly instead of reaching a
client. Rows from `storage.queries` become responses here (`from_row`), so route functions stay
a lookup and a return."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, RootModel, SecretStr

from core.settings import Settings
from core.timeutil import END_OF_TIME_MS
from core.verdicts import Label
from services.auth import Role
from services.report_jobs import JobStatus
from services.reports import Subject
from services.webhooks import Format
from storage.queries import Checkpoint, RowPage
from storage.queries.access import AuditRow
from storage.queries.accounts import AccountRiskRow
from storage.queries.alerts import AlertSummaryRow
from storage.queries.clusters import ClusterRow, ClusterSummaryRow
from storage.queries.events import AccountEventRow
from storage.queries.verdicts import VerdictRow
from storage.rows import redact_for_display

T = TypeVar("T")


def window_ms(since: datetime | None, until: datetime | None) -> tuple[int, int]:
    """Inclusive bounds in epoch milliseconds. Only a missing end is open: `until=0` (the
    epoch) is a bound like any other, and excludes everything after it."""
    return (
        0 if since is None else int(since.timestamp() * 1000),
        END_OF_TIME_MS if until is None else int(until.timestamp() * 1000),
    )


# --- errors -----------------------------------------------------------------------------------
class ValidationIssue(BaseModel):
    """One invalid input: where it is (`["query", "limit"]`) and what is wrong with it."""

    location: list[str | int]
    message: str


class ErrorBody(BaseModel):
    status: int = Field(description="The HTTP status, repeated for logs and proxies.")
    code: str = Field(description="`not_found`, `invalid_request`, `unauthorized`, ...")
    message: str | list[ValidationIssue] = Field(
        description="What went wrong; for `invalid_request`, one entry per invalid input."
    )


class ErrorResponse(BaseModel):
    """Every 4xx and 5xx answer has this one shape."""

    error: ErrorBody


# --- lists ------------------------------------------------------------------------------------
class Page(BaseModel, Generic[T]):
    """One page of a list; `next_offset` is null on the last page."""

    items: list[T]
    limit: int
    offset: int
    next_offset: int | None

    @classmethod
    def of(cls, page: RowPage[Any], item: Callable[[Any], T]) -> Page[T]:
        return cls(
            items=[item(row) for row in page.rows],
            limit=page.limit,
            offset=page.offset,
            next_offset=page.next_offset,
        )

    @classmethod
    def whole(cls, items: list[T]) -> Page[T]:
        """A list that is never paged: every item on one page."""
        return cls(items=items, limit=len(items), offset=0, next_offset=None)


# --- health -----------------------------------------------------------------------------------
class Health(BaseModel):
    status: Literal["ok", "degraded"] = Field(description="`degraded`: the store does not answer.")
    version: str


# --- accounts and verdicts --------------------------------------------------------------------
class Reason(BaseModel):
    """One signal's part in a verdict."""

    signal: str
    value: float | None = Field(description="The signal's value (null: not computable).")
    contribution: float | None
    evidence: dict[str, Any] | None = None


class Verdict(BaseModel):
    verdict_id: str
    account_id: str
    cluster_id: str | None
    timestamp_ms: int
    requests_seen: int = Field(description="The account's requests processed at the verdict.")
    score: float
    label: Label
    reasons: list[Reason]
    detector_version: str

    @classmethod
    def from_row(cls, row: VerdictRow) -> Verdict:
        return cls(
            verdict_id=row["verdict_id"],
            account_id=row["account_id"],
            cluster_id=row["cluster_id"] or None,
            timestamp_ms=int(row["verdict_ms"]),
            requests_seen=int(row["requests_seen"]),
            score=float(row["score"]),
            label=row["label"],  # type: ignore[arg-type]
            reasons=orjson.loads(row["reasons_json"] or "[]"),
            detector_version=row["detector_version"],
        )


class AccountSummary(BaseModel):
    """An account's latest verdict, as the risk ranking lists it."""

    account_id: str
    score: float
    label: Label
    requests_seen: int
    cluster_id: str | None
    last_verdict_ms: int

    @classmethod
    def from_row(cls, row: AccountRiskRow) -> AccountSummary:
        return cls(
            account_id=row["account_id"],
            score=float(row["latest_score"]),
            label=row["latest_label"],  # type: ignore[arg-type]
            requests_seen=int(row["most_seen"]),
            cluster_id=row["latest_cluster"] or None,
            last_verdict_ms=int(row["last_ms"]),
        )


class AccountDetail(BaseModel):
    account_id: str
    latest: Verdict | None
    history: list[Verdict] = Field(description="Up to 200 verdicts, newest first.")
    requests: int = Field(description="Requests the detector has processed for the account.")
    state_checkpointed_ms: int | None

    @classmethod
    def from_rows(
        cls, account_id: str, history: list[VerdictRow], checkpoint: Checkpoint
    ) -> AccountDetail:
        verdicts = [Verdict.from_row(row) for row in history]
        return cls(
            account_id=account_id,
            latest=verdicts[0] if verdicts else None,
            history=verdicts,
            requests=max([checkpoint.requests_seen, *(v.requests_seen for v in verdicts)]),
            state_checkpointed_ms=checkpoint.updated_ms or None,
        )

    @property
    def known(self) -> bool:
        """Whether the detector has seen the account at all."""
        return bool(self.history or self.requests)


# --- campaigns --------------------------------------------------------------------------------
class Cluster(BaseModel):
    """A campaign: accounts linked as one operator, scored together."""

    cluster_id: str
    updated_time: int = Field(description="Epoch seconds of the latest member activity.")
    members: list[str]
    score: float
    label: str = Field(description="A verdict label, or `unscored`.")

    @classmethod
    def from_row(cls, row: ClusterSummaryRow) -> Cluster:
        return cls(
            cluster_id=row["cluster_id"],
            updated_time=int(row["updated_time"]),
            members=list(row["members"]),
            score=float(row["score"]),
            label=row["label"],
        )


class ClusterDetail(Cluster):
    evidence: dict[str, Any] = Field(description="Why the accounts were linked.")

    @classmethod
    def from_row(cls, row: ClusterRow) -> ClusterDetail:  # type: ignore[override]
        return cls(
            **Cluster.from_row(row).model_dump(),
            evidence=orjson.loads(row["evidence_json"] or "{}"),
        )


# --- events and ingest ------------------------------------------------------------------------
class LoggedEvent(BaseModel):
    """One logged request; the prompt text as the redaction setting allows."""

    request_id: str
    account_id: str
    model: str
    endpoint: str
    timestamp_ms: int
    prompt_text: str
    prompt_chars: int
    turn_count: int
    params: dict[str, Any]
    client_ip: str
    user_agent: str

    @classmethod
    def from_row(cls, row: AccountEventRow, settings: Settings) -> LoggedEvent:
        """The row under the redaction policy in force now (it may have tightened since)."""
        prompt_text = redact_for_display(
            row["prompt_text"], settings.redact_prompts, settings.redact_truncate_chars
        )
        return cls(
            request_id=row["request_id"],
            account_id=row["account_id"],
            model=row["model"],
            endpoint=row["endpoint"],
            timestamp_ms=int(row["event_ms"]),
            prompt_text=prompt_text,
            prompt_chars=int(row["prompt_chars"]),
            turn_count=int(row["turn_count"]),
            params=orjson.loads(row["params_json"] or "{}"),
            client_ip=row["client_ip"],
            user_agent=row["user_agent"],
        )


class Rejected(BaseModel):
    index: int = Field(description="The event's position in the posted batch.")
    reason: str


class IngestReceipt(BaseModel):
    accepted: int = Field(description="Events taken in, resends of stored events included.")
    dead_letters: list[Rejected]
    duplicates: int = Field(
        0,
        description="Accepted events already taken in with the same content: stored and counted"
        " once. Through Kafka the worker drops them later, so this is 0 there.",
    )


# --- reports ----------------------------------------------------------------------------------
class ReportRequest(BaseModel):
    account_id: str | None = Field(default=None, max_length=512)
    cluster_id: str | None = Field(default=None, max_length=512)
    since: datetime | None = None
    until: datetime | None = None
    pdf: bool = True

    def subject(self) -> Subject:
        return Subject(self.account_id, self.cluster_id, *window_ms(self.since, self.until))


class ReportJob(BaseModel):
    """A report being written in the background; poll `GET /v1/reports/jobs/{job_id}`."""

    job_id: str
    status: JobStatus = Field(description="`queued`, `running`, `done` or `failed`.")
    error: str | None = Field(description="Why a `failed` job failed.")
    report_id: str | None = Field(
        description="Once `done`: download its files from `/v1/reports/{report_id}/{name}`."
    )
    report_sha256: str | None = Field(description="Once `done`: binds every file (manifest).")
    files: list[str] = Field(description="Once `done`: the report's files, manifest last.")
    created_ms: int
    finished_ms: int | None

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ReportJob:
        return cls.model_validate({k: v for k, v in state.items() if k in cls.model_fields})


class ManifestArtifact(BaseModel):
    file: str
    sha256: str


class ReportDocument(BaseModel):
    """`report.json`: every figure of the report (`services.reports.gather`, less the events,
    which are `events.csv`)."""

    model_config = ConfigDict(extra="allow")

    subject: dict[str, Any]
    generated_at: str
    distillguard_version: str
    accounts: list[str]
    summary: dict[str, Any]
    signals: list[dict[str, Any]]
    verdicts: list[dict[str, Any]]
    harvest: dict[str, Any]
    methodology: dict[str, Any]


class ReportManifest(BaseModel):
    """`manifest.json`: the SHA-256 of every artifact, the report's own hash over them, the
    version, configuration and signing key (`services.reports.render` writes it)."""

    model_config = ConfigDict(extra="allow")

    distillguard_version: str
    generated_at: str
    generated_unix: int
    subject: dict[str, Any]
    configuration: dict[str, Any]
    artifacts: list[ManifestArtifact]
    report_sha256: str
    signing: dict[str, Any]


class ReportJSONFile(RootModel[ReportManifest | ReportDocument]):
    """A report's JSON file: `manifest.json` or `report.json`."""


# --- alerts and webhooks ----------------------------------------------------------------------
class Alert(BaseModel):
    alert_id: str
    kind: str = Field(
        description="`extraction` (an account), `campaign`, or `acknowledge` (PagerDuty hears "
        "an analyst's acknowledgement)."
    )
    status: Literal["pending", "delivered", "expired"]
    last_error: str
    webhook_id: str
    account_id: str | None
    cluster_id: str | None
    created_time: int
    attempts: int
    payload: dict[str, Any]
    acknowledged_by: str | None
    acknowledged_ms: int | None

    @classmethod
    def from_row(cls, row: AlertSummaryRow) -> Alert:
        return cls(
            alert_id=row["alert_id"],
            kind=row["kind"],
            status=row["status"],  # type: ignore[arg-type]
            last_error=row["last_error"],
            webhook_id=row["webhook_id"],
            account_id=row["account_id"] or None,
            cluster_id=row["cluster_id"] or None,
            created_time=int(row["created_time"]),
            attempts=int(row["attempts"]),
            payload=orjson.loads(row["payload_json"]),
            acknowledged_by=row["acknowledged_by"] or None,
            acknowledged_ms=int(row["acknowledged_ms"]) or None,
        )


class Acknowledgement(BaseModel):
    alert_id: str
    acknowledged_by: str = Field(description="The acknowledging token's id.")
    acknowledged_ms: int


class WebhookRequest(BaseModel):
    url: str = Field(pattern=r"^https?://", max_length=2000)
    format: Format = "json"
    routing_key: SecretStr | None = Field(
        None,
        description="The PagerDuty Events v2 integration key (32 letters and digits): required "
        "with, and only with, the `pagerduty` format. Stored sealed; never shown again.",
    )


class Webhook(BaseModel):
    webhook_id: str
    url: str
    format: Format


class WebhookRemoved(BaseModel):
    webhook_id: str
    active: Literal[False] = False


# --- admin ------------------------------------------------------------------------------------
class AuditRecord(BaseModel):
    audit_ms: int
    token_id: str
    role: str
    action: str
    resource: str
    account_id: str
    cluster_id: str
    status: int
    client_ip: str

    @classmethod
    def from_row(cls, row: AuditRow) -> AuditRecord:
        return cls.model_validate(row)


class TokenRequest(BaseModel):
    role: Role
    name: str = Field(min_length=1, max_length=200)


class TokenCreated(BaseModel):
    token: str = Field(description="Shown once: only its hash is stored.")
    token_id: str
    role: Role


class TokenRevoked(BaseModel):
    token_id: str
    revoked: Literal[True] = True
