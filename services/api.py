"""The analysts' REST API (`distillguard serve`): accounts ranked by risk, verdicts, campaigns,
events, the audit log and tokens. Every route but `/healthz` needs a bearer token; analysts
read, admins also manage tokens and read the audit log. Every view of an account's or a
campaign's evidence is written to the append-only audit log.

Errors have one shape, `{"error": {"status": 404, "code": "not_found", "message": ...}}`, and
lists one envelope, `{"items": [...], "limit": 50, "offset": 0, "next_offset": 50 | null}`.
All SQL takes its values through placeholders.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import orjson
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

import dashboards
from core import __version__
from core.settings import Settings, get_settings
from core.timeutil import END_OF_TIME_MS
from services.auth import Principal, Role, TokenVerifier, audit, create_token
from services.ingest import Ingestor, KafkaIngestor, PipelineIngestor
from services.reports import Subject, write_report
from services.webhooks import Format, add_webhook, remove_webhook, store_sinks, webhooks
from storage import Store, open_store
from storage.rows import redact_for_display
from streaming.pipeline import build_pipeline
from streaming.sinks import DeadLetterTopicSink, StoreSink

DASHBOARD = Path(dashboards.__file__).parent / "web"
MAX_PAGE = 500
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE)]
Offset = Annotated[int, Query(ge=0, le=1_000_000)]
LabelFilter = Annotated[str | None, Query(pattern="^(benign|suspicious|extraction)$")]
_bearer = HTTPBearer(auto_error=False)

ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    422: "invalid_request",
}


class WebhookRequest(BaseModel):
    url: str = Field(pattern=r"^https?://", max_length=2000)
    format: Format = "json"


class ReportRequest(BaseModel):
    account_id: str | None = Field(default=None, max_length=512)
    cluster_id: str | None = Field(default=None, max_length=512)
    since: datetime | None = None
    until: datetime | None = None
    pdf: bool = True


class TokenRequest(BaseModel):
    role: Role
    name: str = Field(min_length=1, max_length=200)


def _error(status: int, message: Any) -> JSONResponse:
    code = ERROR_CODES.get(status, "server_error" if status >= 500 else "error")
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(
        {"error": {"status": status, "code": code, "message": message}},
        status_code=status,
        headers=headers,
    )


def _page(items: list[dict], limit: int, offset: int) -> dict:
    """One page; `items` holds up to limit + 1 rows, the extra one only says there is more."""
    more = len(items) > limit
    return {
        "items": items[:limit],
        "limit": limit,
        "offset": offset,
        "next_offset": offset + limit if more else None,
    }


def _paged(store: Store, sql: str, params: dict, limit: int, offset: int) -> list[dict]:
    """One page of `sql`'s rows plus one more, which only says whether another page exists."""
    return store.query(
        sql + " LIMIT %(offset)s, %(limit)s", {**params, "offset": offset, "limit": limit + 1}
    )


def _one(store: Store, table: str, column: str, value: str, what: str) -> dict:
    """The row whose `column` is `value` (table and column are fixed names from this module,
    never input), or a 404."""
    rows = store.query(
        f"SELECT * FROM {{db}}.{table} FINAL WHERE {column} = %(value)s",  # noqa: S608
        {"value": value},
    )
    if not rows:
        raise HTTPException(404, f"no {what} {value!r}")
    return rows[0]


def _cluster(row: dict) -> dict:
    return {
        "cluster_id": row["cluster_id"],
        "updated_time": int(row["updated_time"]),
        "members": list(row["members"]),
        "score": float(row["score"]),
        "label": row["label"],
    }


def _ms(value: datetime | None) -> int | None:
    return None if value is None else int(value.timestamp() * 1000)


def _verdict(row: dict) -> dict:
    return {
        "verdict_id": row["verdict_id"],
        "account_id": row["account_id"],
        "cluster_id": row["cluster_id"] or None,
        "timestamp_ms": int(row["verdict_ms"]),
        "requests_seen": int(row["requests_seen"]),
        "score": float(row["score"]),
        "label": row["label"],
        "reasons": orjson.loads(row["reasons_json"] or "[]"),
        "detector_version": row["detector_version"],
    }


def _principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(401, "a bearer token is required")
    who = request.app.state.verify(credentials.credentials)
    if who is None:
        raise HTTPException(401, "unknown or revoked token")
    return who


def _requires(role: Role) -> Callable[..., Principal]:
    def check(who: Annotated[Principal, Depends(_principal)]) -> Principal:
        if not who.can(role):
            raise HTTPException(403, f"this route needs the {role!r} role")
        return who

    return check


# Module level, so FastAPI can resolve them from the route functions' string annotations.
Analyst = Annotated[Principal, Depends(_requires("analyst"))]
Admin = Annotated[Principal, Depends(_requires("admin"))]
Ingest = Annotated[Principal, Depends(_requires("ingest"))]


def default_ingestor(settings: Settings, store: Store) -> Ingestor:
    """Kafka when the deployment has a ClickHouse server (production), else the in-process
    pipeline (the embedded demo); `ingest_to` overrides."""
    target = settings.ingest_to or ("kafka" if settings.store == "server" else "pipeline")
    if target == "kafka":
        from streaming.kafka import make_producer

        producer = make_producer(settings.kafka_bootstrap)
        return KafkaIngestor(
            producer,
            settings.topic,
            DeadLetterTopicSink(producer, settings.dlq_topic),
            StoreSink(store),
            settings.max_event_bytes,
        )
    return PipelineIngestor(build_pipeline(settings, store_sinks(store), store=store))


def request_lines(body: bytes, content_type: str) -> list[bytes]:
    """A batch as raw event documents: a JSON array, or one event per line (NDJSON)."""
    if content_type.split(";")[0].strip() == "application/json":
        try:
            documents = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise HTTPException(400, f"body is not JSON: {exc}") from exc
        if not isinstance(documents, list):
            raise HTTPException(400, "a JSON body must be an array of events")
        return [orjson.dumps(document) for document in documents]
    return [line for line in body.split(b"\n") if line.strip()]


def create_app(
    settings: Settings | None = None,
    store: Store | None = None,
    ingestor: Ingestor | None = None,
) -> FastAPI:
    """The API over `store` (default: the store the settings name); `ingestor` receives
    `POST /v1/events` (default: `default_ingestor`, created on first use)."""
    settings = settings or get_settings()
    store = store or open_store(settings)
    ingestors: list[Ingestor] = [ingestor] if ingestor else []
    verify = TokenVerifier(store)
    registry = CollectorRegistry()
    requests_total = Counter(
        "distillguard_api_requests", "API requests", ["route", "status"], registry=registry
    )
    app = FastAPI(
        title="DistillGuard",
        version=__version__,
        description="Model-extraction detection: accounts, verdicts, campaigns and evidence.",
        openapi_url=None,  # served below, behind a token like every route but health
        docs_url=None,
        redoc_url=None,
    )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, exc.detail)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        details = [{"location": list(e["loc"]), "message": e["msg"]} for e in exc.errors()]
        return _error(422, details)

    @app.middleware("http")
    async def count_requests(request: Request, call_next: Callable) -> Response:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > settings.max_request_bytes:
            response: Response = _error(
                413, f"request body over {settings.max_request_bytes} bytes"
            )
        else:
            response = await call_next(request)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "no-referrer"
        route = request.scope.get("route")
        requests_total.labels(getattr(route, "path", "unmatched"), str(response.status_code)).inc()
        return response

    def record(request: Request, who: Principal, action: str, **subject: str) -> None:
        client = request.client.host if request.client else ""
        audit(store, who, action, request.url.path, 200, client, **subject)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict:
        return {"status": "ok" if store.ping() else "degraded", "version": __version__}

    @app.get("/metrics", tags=["health"])
    def metrics(_who: Analyst) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/openapi.json", tags=["health"], include_in_schema=False)
    def openapi(_who: Analyst) -> dict:
        return app.openapi()

    @app.get("/v1/accounts", tags=["accounts"])
    def accounts(
        _who: Analyst, label: LabelFilter = None, limit: Limit = 50, offset: Offset = 0
    ) -> dict:
        """Accounts ranked by risk: each account's latest score, highest first."""
        rows = _paged(
            store,
            "SELECT account_id, latest_score, latest_label, most_seen, latest_cluster, last_ms"
            " FROM (SELECT account_id, argMax(score, verdict_ms) AS latest_score,"
            " argMax(label, verdict_ms) AS latest_label, max(requests_seen) AS most_seen,"
            " argMax(cluster_id, verdict_ms) AS latest_cluster, max(verdict_ms) AS last_ms"
            # No FINAL: a replayed verdict is an identical row, so argMax/max are unchanged,
            # and skipping the merge-on-read keeps the ranking fast at 100k accounts.
            " FROM {db}.verdicts GROUP BY account_id)"
            " WHERE %(label)s = '' OR latest_label = %(label)s"
            " ORDER BY latest_score DESC, account_id",
            {"label": label or ""},
            limit,
            offset,
        )
        items = [
            {
                "account_id": r["account_id"],
                "score": float(r["latest_score"]),
                "label": r["latest_label"],
                "requests_seen": int(r["most_seen"]),
                "cluster_id": r["latest_cluster"] or None,
                "last_verdict_ms": int(r["last_ms"]),
            }
            for r in rows
        ]
        return _page(items, limit, offset)

    @app.get("/v1/accounts/{account_id}", tags=["accounts"])
    def account(request: Request, account_id: str, who: Analyst) -> dict:
        """An account's latest verdict with its signals, its verdict history and activity."""
        history = store.query(
            "SELECT * FROM {db}.verdicts FINAL WHERE account_id = %(a)s "
            "ORDER BY verdict_ms DESC, requests_seen DESC LIMIT 200",
            {"a": account_id},
        )
        # The detector's checkpoint (keyed by account) says how many requests it has seen:
        # counting the events table instead would scan it, as it is ordered by request id.
        state = store.query(
            "SELECT max(requests_seen) AS seen, max(updated_ms) AS updated"
            " FROM {db}.account_state FINAL WHERE account_id = %(a)s",
            {"a": account_id},
        )[0]
        seen = max([int(state["seen"] or 0), *(int(r["requests_seen"]) for r in history)])
        if not history and not seen:
            raise HTTPException(404, f"no account {account_id!r}")
        record(request, who, "view_account", account_id=account_id)
        verdicts = [_verdict(r) for r in history]
        return {
            "account_id": account_id,
            "latest": verdicts[0] if verdicts else None,
            "history": verdicts,
            "requests": seen,
            "state_checkpointed_ms": int(state["updated"] or 0) or None,
        }

    @app.get("/v1/verdicts", tags=["verdicts"])
    def verdicts(
        _who: Analyst,
        account_id: str | None = None,
        label: LabelFilter = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> dict:
        rows = _paged(
            store,
            "SELECT * FROM {db}.verdicts FINAL"
            " WHERE (%(account)s = '' OR account_id = %(account)s)"
            " AND (%(label)s = '' OR label = %(label)s)"
            " AND verdict_ms >= %(since)s AND verdict_ms <= %(until)s"
            " ORDER BY verdict_ms DESC, verdict_id",
            {
                "account": account_id or "",
                "label": label or "",
                "since": _ms(since) or 0,
                "until": _ms(until) or END_OF_TIME_MS,
            },
            limit,
            offset,
        )
        return _page([_verdict(r) for r in rows], limit, offset)

    @app.get("/v1/clusters", tags=["clusters"])
    def clusters(
        _who: Analyst, label: LabelFilter = None, limit: Limit = 50, offset: Offset = 0
    ) -> dict:
        rows = _paged(
            store,
            "SELECT cluster_id, updated_time, members, score, label FROM {db}.clusters FINAL"
            " WHERE %(label)s = '' OR label = %(label)s"
            " ORDER BY score DESC, cluster_id",
            {"label": label or ""},
            limit,
            offset,
        )
        return _page([_cluster(r) for r in rows], limit, offset)

    @app.get("/v1/clusters/{cluster_id}", tags=["clusters"])
    def cluster(request: Request, cluster_id: str, who: Analyst) -> dict:
        row = _one(store, "clusters", "cluster_id", cluster_id, "campaign")
        record(request, who, "view_cluster", cluster_id=cluster_id)
        return {**_cluster(row), "evidence": orjson.loads(row["evidence_json"] or "{}")}

    @app.get("/v1/events", tags=["events"])
    def events(
        request: Request,
        who: Analyst,
        account_id: Annotated[str, Query(min_length=1)],
        since: datetime | None = None,
        until: datetime | None = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> dict:
        """An account's requests; prompt text as the redaction setting allows."""
        rows = _paged(
            store,
            "SELECT request_id, account_id, event_ms, model, endpoint, prompt_text,"
            " prompt_chars, turn_count, params_json, client_ip, user_agent"
            " FROM {db}.events FINAL WHERE account_id = %(a)s"
            " AND event_ms >= %(since)s AND event_ms <= %(until)s"
            " ORDER BY event_ms, request_id",
            {
                "a": account_id,
                "since": _ms(since) or 0,
                "until": _ms(until) or END_OF_TIME_MS,
            },
            limit,
            offset,
        )
        record(request, who, "view_events", account_id=account_id)
        items = [
            {
                **{k: r[k] for k in ("request_id", "account_id", "model", "endpoint")},
                "timestamp_ms": int(r["event_ms"]),
                "prompt_text": redact_for_display(
                    r["prompt_text"], settings.redact_prompts, settings.redact_truncate_chars
                ),
                "prompt_chars": int(r["prompt_chars"]),
                "turn_count": int(r["turn_count"]),
                "params": orjson.loads(r["params_json"] or "{}"),
                "client_ip": r["client_ip"],
                "user_agent": r["user_agent"],
            }
            for r in rows
        ]
        return _page(items, limit, offset)

    @app.post("/v1/events", tags=["ingest"], status_code=202)
    async def ingest_events(request: Request, _who: Ingest) -> dict:
        """A batch of request events (NDJSON, or a JSON array). Malformed events become dead
        letters (topic and table) with their reason; the rest go on. 202 once durable."""
        limit = settings.max_request_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise HTTPException(413, f"request body over {limit} bytes; send smaller batches")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise HTTPException(413, f"request body over {limit} bytes; send smaller batches")
        lines = request_lines(bytes(body), request.headers.get("content-type", ""))
        if not ingestors:
            ingestors.append(default_ingestor(settings, store))
        result = await run_in_threadpool(ingestors[0].ingest, lines)
        return {"accepted": result.accepted, "dead_letters": result.dead_letters}

    reports_dir = settings.data_dir / "reports"

    @app.post("/v1/reports", tags=["reports"], status_code=201)
    def new_report(request: Request, body: ReportRequest, who: Analyst) -> dict:
        """Generate a forensic report (PDF, HTML, JSON, CSV, charts, SHA-256 manifest)."""
        subject = Subject(
            body.account_id,
            body.cluster_id,
            _ms(body.since) or 0,
            _ms(body.until) or END_OF_TIME_MS,
        )
        report_id = uuid.uuid4().hex
        manifest = write_report(store, settings, subject, reports_dir / report_id, body.pdf)
        record(
            request,
            who,
            f"generate_report:{report_id}",
            account_id=body.account_id or "",
            cluster_id=body.cluster_id or "",
        )
        return {
            "report_id": report_id,
            "report_sha256": manifest["report_sha256"],
            "files": [a["file"] for a in manifest["artifacts"]] + ["manifest.json"],
        }

    @app.get("/v1/reports/{report_id}/{name}", tags=["reports"])
    def report_file(request: Request, report_id: str, name: str, who: Analyst) -> FileResponse:
        """Download one file of a report (only files its manifest lists)."""
        folder = reports_dir / report_id
        if not report_id.isalnum() or not (folder / "manifest.json").exists():
            raise HTTPException(404, f"no report {report_id!r}")
        manifest = orjson.loads((folder / "manifest.json").read_bytes())
        listed = {a["file"] for a in manifest["artifacts"]} | {"manifest.json"}
        if name not in listed:
            raise HTTPException(404, f"report {report_id} has no file {name!r}")
        subject = manifest["subject"]
        record(
            request,
            who,
            f"export_report:{report_id}/{name}",
            account_id=subject.get("account_id") or "",
            cluster_id=subject.get("cluster_id") or "",
        )
        return FileResponse(folder / name, filename=name)

    @app.get("/v1/alerts", tags=["alerts"])
    def alerts(
        _who: Analyst,
        status: Annotated[str | None, Query(pattern="^(pending|delivered|expired)$")] = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> dict:
        rows = _paged(
            store,
            "SELECT alert_id, created_time, kind, account_id, cluster_id, payload_json, status,"
            " attempts, last_error, webhook_id, acknowledged_by, acknowledged_ms"
            " FROM {db}.alerts FINAL WHERE %(status)s = '' OR status = %(status)s"
            " ORDER BY created_time DESC, alert_id",
            {"status": status or ""},
            limit,
            offset,
        )
        items = [
            {
                **{k: r[k] for k in ("alert_id", "kind", "status", "last_error", "webhook_id")},
                "account_id": r["account_id"] or None,
                "cluster_id": r["cluster_id"] or None,
                "created_time": int(r["created_time"]),
                "attempts": int(r["attempts"]),
                "payload": orjson.loads(r["payload_json"]),
                "acknowledged_by": r["acknowledged_by"] or None,
                "acknowledged_ms": int(r["acknowledged_ms"]) or None,
            }
            for r in rows
        ]
        return _page(items, limit, offset)

    @app.post("/v1/alerts/{alert_id}/ack", tags=["alerts"])
    def acknowledge(request: Request, alert_id: str, who: Analyst) -> dict:
        row = _one(store, "alerts", "alert_id", alert_id, "alert")
        now_ms = int(time.time() * 1000)
        store.revise("alerts", row, acknowledged_by=who.token_id, acknowledged_ms=now_ms)
        record(request, who, "acknowledge_alert", account_id=row["account_id"])
        return {"alert_id": alert_id, "acknowledged_by": who.token_id, "acknowledged_ms": now_ms}

    @app.get("/v1/webhooks", tags=["admin"])
    def list_webhooks(_who: Admin) -> dict:
        items = [
            {"webhook_id": h["webhook_id"], "url": h["url"], "format": h["format"]}
            for h in webhooks(store)
        ]
        return {"items": items, "limit": len(items), "offset": 0, "next_offset": None}

    @app.post("/v1/webhooks", tags=["admin"], status_code=201)
    def new_webhook(request: Request, body: WebhookRequest, who: Admin) -> dict:
        webhook_id = add_webhook(store, body.url, body.format)
        record(request, who, f"add_webhook:{webhook_id}")
        return {"webhook_id": webhook_id, "url": body.url, "format": body.format}

    @app.delete("/v1/webhooks/{webhook_id}", tags=["admin"])
    def delete_webhook(request: Request, webhook_id: str, who: Admin) -> dict:
        if not remove_webhook(store, webhook_id):
            raise HTTPException(404, f"no webhook {webhook_id!r}")
        record(request, who, f"remove_webhook:{webhook_id}")
        return {"webhook_id": webhook_id, "active": False}

    @app.get("/v1/audit", tags=["admin"])
    def audit_log(
        _who: Admin,
        account_id: str | None = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> dict:
        rows = _paged(
            store,
            "SELECT audit_ms, token_id, role, action, resource, account_id, cluster_id, status,"
            " client_ip FROM {db}.audit_log"
            " WHERE %(account)s = '' OR account_id = %(account)s"
            " ORDER BY audit_ms DESC, audit_id",
            {"account": account_id or ""},
            limit,
            offset,
        )
        return _page(
            [{**r, "audit_ms": int(r["audit_ms"]), "status": int(r["status"])} for r in rows],
            limit,
            offset,
        )

    @app.post("/v1/tokens", tags=["admin"], status_code=201)
    def new_token(request: Request, body: TokenRequest, who: Admin) -> dict:
        token, created = create_token(store, body.role, body.name)
        record(request, who, f"create_token:{created.token_id}")
        return {"token": token, "token_id": created.token_id, "role": created.role}

    # The dashboard's static files hold no data (every data call needs the token).
    app.mount("/dashboard", StaticFiles(directory=DASHBOARD, html=True), name="dashboard")

    app.router.add_route(
        "/", lambda _request: RedirectResponse("/dashboard/"), include_in_schema=False
    )

    app.state.store = store
    app.state.verify = verify
    app.state.started = time.time()
    return app
