"""The analysts' API on both store backends: tokens and roles on every route, consistent errors
and pages, ranked accounts, audited evidence views, redaction, inert injection strings."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import orjson
import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from core import __version__
from core.events import Event
from core.settings import Settings
from core.verdicts import Reason, Verdict
from distillguard.client import AuthError, Client, InvalidRequest, NotFound
from distillguard.wiring import build_api
from services.api import create_app
from services.api.routers import ROUTERS
from services.auth import create_token, revoke_token
from storage import ClickHouseServer, Store
from storage.rows import event_row, verdict_row
from tests.distillguard.test_cli_conventions import closed_port  # noqa: F401 - a fixture

T0 = datetime(2026, 11, 20, 12, tzinfo=UTC)


def _verdict(account: str, score: float, label: str, seen: int, minute: int = 0) -> dict:
    verdict = Verdict(
        account_id=account,
        timestamp=T0.replace(minute=minute),
        requests_seen=seen,
        score=score,
        label=label,  # type: ignore[arg-type]
        reasons=[Reason(signal="greedy_share", value=1.0, contribution=score / 2)],
        detector_version="fusion-1",
    )
    return verdict_row(verdict)


def _event(account: str, index: int, prompt: str) -> dict:
    event = Event.model_validate(
        {
            "request_id": f"{account}-{index}",
            "account_id": account,
            "timestamp": int(T0.timestamp() * 1000) + index * 1000,
            "prompt": prompt,
            "params": {"temperature": 0},
        }
    )
    return event_row(event)


@pytest.fixture
def api(store: Store) -> Iterator[tuple[TestClient, dict[str, str], Store]]:
    store.insert(
        "verdicts",
        [
            _verdict("acct-low", 0.1, "benign", 5),
            _verdict("acct-high", 0.3, "benign", 5),
            _verdict("acct-high", 0.9, "extraction", 40, minute=5),  # latest wins
            _verdict("acct-mid", 0.6, "suspicious", 20),
        ],
    )
    store.insert("events", [_event("acct-high", i, f"prompt {i} <script>") for i in range(3)])
    tokens = {role: create_token(store, role, f"test-{role}")[0] for role in ("analyst", "admin")}
    # This module fails authentication on purpose, route after route: above the 30-a-minute
    # limit (tests/services/test_api_edge.py tests the limit itself).
    settings = Settings(
        redact_prompts="none",
        auth_failures_per_minute=1_000,
        webhook_allow_networks=["127.0.0.0/8"],
    )
    app = create_app(settings, store)
    with TestClient(app) as client:
        yield client, tokens, store


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def as_role(api) -> Callable[[str], Client]:
    """The typed client over the `api` fixture's app, holding the given role's token."""
    http, tokens, _ = api
    return lambda role: Client(token=tokens[role], http=http)


def test_health_is_503_with_its_body_while_the_store_does_not_answer(
    closed_port: int,  # noqa: F811
) -> None:
    """What a probe reading only the status code (Kubernetes, a blackbox exporter) needs; 200
    while it answers: `test_every_route_but_health_needs_a_token`."""
    down = ClickHouseServer(f"clickhouse://127.0.0.1:{closed_port}", connect_timeout=1)
    with TestClient(create_app(Settings(), down)) as client:
        response = client.get("/healthz")
        assert response.status_code == 503
        assert response.json() == {"status": "degraded", "version": __version__}
        assert Client(http=client).health().status == "degraded"  # a status, not an error


def test_every_route_but_health_needs_a_token(api) -> None:
    client, _, _ = api
    assert Client(http=client).health().status == "ok"
    routes = [r for router in ROUTERS for r in router.routes if isinstance(r, APIRoute)]
    assert len(routes) >= 19
    for route in routes:
        method = sorted(route.methods)[0]
        path = route.path.replace("{account_id}", "x").replace("{cluster_id}", "x")
        response = client.request(method, path)
        if route.path == "/healthz":
            assert response.status_code == 200
            continue
        assert response.status_code == 401, route.path
        assert response.json()["error"]["code"] == "unauthorized"
        assert response.headers["www-authenticate"] == "Bearer"
        assert client.request(method, path, headers=auth("dg_x_forged")).status_code == 401


def test_admin_routes_refuse_analysts(api, as_role) -> None:
    http, _, _ = api
    analyst, admin = as_role("analyst"), as_role("admin")
    with pytest.raises(AuthError) as refused:
        analyst.list_audit_log()
    assert refused.value.status == 403 and refused.value.code == "forbidden"
    with pytest.raises(AuthError):
        analyst.create_token("admin", "escalation")
    created = admin.create_token("admin", "escalation")
    assert created.role == "admin"
    assert Client(token=created.token, http=http).list_audit_log().items


def test_tokens_are_stored_hashed_and_revocable(api) -> None:
    client, _, store = api
    token, principal = create_token(store, "analyst", "to-revoke")
    stored = store.query("SELECT token_hash FROM {db}.api_tokens FINAL")
    assert token not in {r["token_hash"] for r in stored}
    assert revoke_token(store, principal.token_id)
    fresh = create_app(Settings(), store)  # a new verifier: no cached answer
    with TestClient(fresh) as other:
        assert other.get("/v1/accounts", headers=auth(token)).status_code == 401


def test_accounts_ranked_by_latest_score_in_pages(as_role) -> None:
    client = as_role("analyst")
    page = client.list_accounts(limit=2)
    assert [a.account_id for a in page.items] == ["acct-high", "acct-mid"]
    assert page.items[0].label == "extraction" and page.items[0].requests_seen == 40
    assert page.next_offset == 2
    second = client.list_accounts(limit=2, offset=2)
    assert [a.account_id for a in second.items] == ["acct-low"]
    assert second.next_offset is None
    flagged = client.list_accounts(label="extraction")
    assert [a.account_id for a in flagged.items] == ["acct-high"]


def test_evidence_views_are_audited(as_role) -> None:
    client = as_role("analyst")
    detail = client.get_account("acct-high")
    assert detail.latest is not None and detail.latest.label == "extraction"
    assert detail.requests == 40 and detail.latest.reasons[0].signal == "greedy_share"
    events = client.list_events("acct-high")
    assert events.items[0].prompt_text == "prompt 0 <script>"
    log = as_role("admin").list_audit_log().items
    actions = {(r.action, r.account_id, r.role) for r in log}
    assert {("view_account", "acct-high", "analyst"), ("view_events", "acct-high", "analyst")} <= (
        actions
    )
    with pytest.raises(NotFound) as missing:
        client.get_account("nobody")
    assert missing.value.code == "not_found" and "nobody" in missing.value.message


def test_redaction_setting_applies_to_prompt_text(api) -> None:
    _, tokens, store = api
    with TestClient(create_app(Settings(redact_prompts="hash"), store)) as client:
        items = client.get(
            "/v1/events", params={"account_id": "acct-high"}, headers=auth(tokens["analyst"])
        ).json()["items"]
    assert items and all(i["prompt_text"].startswith("sha256:") for i in items)


@pytest.mark.parametrize(
    "account", ["' OR 1=1 --", "acct-high' --", "x\\'; DROP TABLE verdicts; --", "%(a)s"]
)
def test_injection_strings_are_inert(api, account: str) -> None:
    client, tokens, store = api
    response = client.get(
        "/v1/verdicts", params={"account_id": account}, headers=auth(tokens["analyst"])
    )
    assert response.status_code == 200 and response.json()["items"] == []
    assert client.get(f"/v1/accounts/{account}", headers=auth(tokens["analyst"])).status_code in (
        404,
    )
    assert store.count("verdicts") == 4


def test_invalid_filters_get_one_error_shape(api, as_role) -> None:
    client, tokens, _ = api
    for params in ({"label": "evil"}, {"limit": 0}, {"limit": 10_000}, {"since": "yesterday"}):
        response = client.get("/v1/verdicts", params=params, headers=auth(tokens["analyst"]))
        assert response.status_code == 422, params
        error = response.json()["error"]
        assert error["code"] == "invalid_request" and error["message"][0]["location"]
    with pytest.raises(InvalidRequest) as invalid:  # the typed client's view of the same
        as_role("analyst").list_verdicts(label="evil")
    assert invalid.value.status == 422 and invalid.value.message[0]["location"][-1] == "label"


def test_openapi_and_metrics_behind_a_token(api) -> None:
    client, tokens, _ = api
    schema = client.get("/openapi.json", headers=auth(tokens["analyst"])).json()
    assert "/v1/accounts" in schema["paths"]
    assert schema["paths"]["/metrics"]["get"]["responses"]["200"]["content"].keys() == {
        "text/plain"
    }
    client.get("/v1/accounts", headers=auth(tokens["analyst"]))
    metrics = client.get("/metrics", headers=auth(tokens["analyst"])).text
    assert 'distillguard_api_requests_total{route="/v1/accounts",status="200"}' in metrics


GOOD = {
    "request_id": "ingest-1",
    "account_id": "acct-ingest",
    "timestamp": "2026-11-20T12:00:00Z",
    "prompt": "How do tides work?",
}


def ingest_client(store: Store, **settings) -> TestClient:
    """The API as `distillguard serve` builds it, with the deployment's ingestor."""
    config = Settings(detector="volume", embedding_tier="off", **settings)
    return TestClient(build_api(config, store))


def test_http_ingest_validates_and_dead_letters(store: Store) -> None:
    token = create_token(store, "ingest", "gateway")[0]
    lines = [
        orjson.dumps(GOOD),
        orjson.dumps({**GOOD, "request_id": "ingest-2"}),
        b'{"request_id": "broken", "account_id": ',
        orjson.dumps({**GOOD, "request_id": "ingest-3", "timestamp": "yesterday"}),
    ]
    with ingest_client(store) as client:
        response = client.post(
            "/v1/events",
            content=b"\n".join(lines),
            headers={**auth(token), "Content-Type": "application/x-ndjson"},
        )
        assert response.status_code == 202, response.text
        body = response.json()
        assert body["accepted"] == 2
        assert [d["index"] for d in body["dead_letters"]] == [2, 3]
        # An ingest token can post events and do nothing else.
        assert client.get("/v1/accounts", headers=auth(token)).status_code == 403
    assert store.count("events") == 2
    letters = store.query("SELECT raw, reason FROM {db}.dead_letters FINAL ORDER BY raw")
    assert {r["raw"] for r in letters} == {lines[2].decode(), lines[3].decode()}
    assert all(r["reason"] for r in letters)


def test_http_ingest_takes_json_arrays_and_refuses_oversized_bodies(store: Store) -> None:
    token = create_token(store, "ingest", "gateway")[0]
    with ingest_client(store, max_request_bytes=2048) as client:
        ok = client.post("/v1/events", json=[GOOD], headers=auth(token))
        assert ok.status_code == 202 and ok.json()["accepted"] == 1
        big = [{**GOOD, "request_id": f"big-{i}", "prompt": "x" * 500} for i in range(10)]
        with pytest.raises(InvalidRequest) as refused:  # the typed client, as NDJSON
            Client(token=token, http=client).ingest_events(big)
        assert (refused.value.status, refused.value.code) == (413, "payload_too_large")
        assert Client(token=token, http=client).ingest_events([GOOD]).duplicates == 1
        bad = client.post(
            "/v1/events",
            content=b"{not json",
            headers={**auth(token), "Content-Type": "application/json"},
        )
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "bad_request"
    assert store.count("events") == 1  # the resend was stored once


def test_http_ingest_takes_gateway_log_formats(store: Store) -> None:
    """`format=` maps LiteLLM, OTLP/JSON, OpenAI batch and mapped logs into schema v1 through
    the same ingestor; what does not map is a dead letter naming the field."""
    from tests.core.test_formats import FIXTURES, compact, lines

    token = create_token(store, "ingest", "gateway")[0]
    ndjson = {**auth(token), "Content-Type": "application/x-ndjson"}
    with ingest_client(store, mapping_dir=FIXTURES) as client:

        def post(body: bytes, headers=ndjson, **params: str):
            return client.post("/v1/events", content=body, params=params, headers=headers)

        litellm = post(b"\n".join(lines("litellm.jsonl")), format="litellm")
        assert litellm.status_code == 202 and litellm.json()["accepted"] == 2, litellm.text
        # An OTLP/HTTP JSON export is one object: three model-call spans, one without content.
        otlp = post(
            compact("otel_traces.json"),
            {**auth(token), "Content-Type": "application/json"},
            format="otel",
        )
        assert otlp.status_code == 202, otlp.text
        assert otlp.json()["accepted"] == 2
        ((letter),) = otlp.json()["dead_letters"]
        assert letter["index"] == 2 and "gen_ai.input.messages" in letter["reason"]
        batch = b"\n".join(lines("openai_batch.jsonl"))
        assert post(batch, format="openai-batch").status_code == 400  # no account
        started = "2026-11-20T09:30:00Z"
        taken = post(batch, format="openai-batch", account="acct-batch", start=started)
        assert taken.json()["accepted"] == 3
        again = post(batch, format="openai-batch", account="acct-batch", start=started)
        assert again.json()["duplicates"] == 3  # same batch, same start: same request ids
        mapped = post(b"\n".join(lines("gateway.jsonl")), format="mapping:gateway")
        assert mapped.json()["accepted"] == 1
        assert "account_id (from auth.customer)" in mapped.json()["dead_letters"][0]["reason"]
        for refused in ("mapping:../gateway", "mapping:/etc/passwd", "splunk"):
            assert post(b"{}", format=refused).status_code == 400
        assert post(b"{}", format="litellm", account="").status_code == 422
    accounts = store.query("SELECT account_id, count() AS n FROM {db}.events GROUP BY account_id")
    assert {r["account_id"]: r["n"] for r in accounts} == {
        "user-4242": 1,
        "1f0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a1f0e": 1,
        "acct-span": 1,
        "acct-resource": 1,
        "acct-batch": 3,
        "1017": 1,
    }
    with ingest_client(store) as client:  # no mapping_dir: mappings are off
        response = client.post(
            "/v1/events", content=b"{}", params={"format": "mapping:gateway"}, headers=ndjson
        )
        assert response.status_code == 400


def test_webhooks_and_alert_acknowledgement(api, as_role) -> None:
    from core.batch import Batch
    from services.webhooks import AlertSink

    _, _, store = api
    analyst, admin = as_role("analyst"), as_role("admin")
    hook = {"url": "http://127.0.0.1:9/dg", "format": "slack"}  # allowlisted: see `api`
    with pytest.raises(AuthError):
        analyst.create_webhook(**hook)
    created = admin.create_webhook(**hook)
    with pytest.raises(InvalidRequest):
        admin.create_webhook("javascript:alert(1)")
    sink = AlertSink(store)
    sink.write(
        Batch(
            verdicts=[
                Verdict(
                    account_id="acct-high",
                    timestamp=T0,
                    requests_seen=40,
                    score=0.9,
                    label="extraction",
                    reasons=[],
                    detector_version="fusion-1",
                )
            ]
        )
    )
    sink.flush()
    (alert,) = analyst.list_alerts().items
    assert alert.status == "pending" and alert.webhook_id == created.webhook_id
    acked = analyst.acknowledge_alert(alert.alert_id)
    assert acked.alert_id == alert.alert_id
    (again,) = analyst.list_alerts().items
    assert again.acknowledged_by and again.status == "pending"
    assert admin.delete_webhook(created.webhook_id).active is False
    assert admin.list_webhooks().items == []


def test_oversized_bodies_get_a_clear_413_on_every_route(api) -> None:
    client, tokens, store = api
    with TestClient(create_app(Settings(max_request_bytes=1024), store)) as small:
        body = {"role": "analyst", "name": "x" * 5000}
        response = small.post("/v1/tokens", json=body, headers=auth(tokens["admin"]))
        assert response.status_code == 413
        assert "1024 bytes" in response.json()["error"]["message"]


def test_openapi_documents_every_response_as_sent(api) -> None:
    """Named operations, a model for every success, and the one error shape for every 4xx:
    FastAPI's `{"detail"}` validation schema appears nowhere."""
    client, tokens, _ = api
    schema = client.get("/openapi.json", headers=auth(tokens["analyst"])).json()
    operations = {
        (method, path): operation
        for path, methods in schema["paths"].items()
        for method, operation in methods.items()
    }
    assert {o["operationId"] for o in operations.values()} >= {
        "list_accounts",
        "get_account",
        "list_verdicts",
        "get_cluster",
        "ingest_events",
        "create_report",
        "acknowledge_alert",
        "create_token",
    }
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    error_ref = "#/components/schemas/ErrorResponse"
    for (method, path), operation in operations.items():
        responses = operation["responses"]
        success = [code for code in responses if code.startswith("2")]
        assert len(success) == 1 and responses[success[0]]["content"], (method, path)
        for code, response in responses.items():
            if (path, code) == ("/healthz", "503"):  # degraded: the health body, not an error
                health_ref = "#/components/schemas/Health"
                assert response["content"]["application/json"]["schema"] == {"$ref": health_ref}
            elif code.startswith(("4", "5")):
                assert response["content"]["application/json"]["schema"] == {"$ref": error_ref}
        if path != "/healthz":
            assert {"401", "403"} <= responses.keys(), (method, path)
        if operation.get("parameters") or operation.get("requestBody"):
            assert "422" in responses, (method, path)
    account = operations[("get", "/v1/accounts/{account_id}")]["responses"]
    assert account["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/AccountDetail"
    }
    assert "404" in account


def test_an_api_built_without_an_ingestor_takes_no_events(store: Store) -> None:
    token = create_token(store, "ingest", "gateway")[0]
    with TestClient(create_app(Settings(), store)) as client:
        response = client.post("/v1/events", json=[GOOD], headers=auth(token))
    assert response.status_code == 503 and response.json()["error"]["code"] == "server_error"
    assert store.count("events") == 0


def _operations(app) -> dict[str, dict]:
    return {
        operation["operationId"]: operation
        for methods in app.openapi()["paths"].values()
        for operation in methods.values()
    }


def test_every_success_response_has_a_named_schema(store: Store) -> None:
    """No operation answers a bare `object`: each JSON success references a named component
    that exists, and every other media type is a documented string (text or binary)."""
    app = create_app(Settings(), store)
    components = app.openapi()["components"]["schemas"]
    for name, operation in _operations(app).items():
        (success,) = [r for code, r in operation["responses"].items() if code.startswith("2")]
        for media, content in success["content"].items():
            schema = content["schema"]
            if media == "application/json":
                assert set(schema) == {"$ref"}, (name, schema)
                assert schema["$ref"].removeprefix("#/components/schemas/") in components
            else:
                assert schema.get("type") == "string", (name, media, schema)


def test_the_client_has_a_method_for_every_operation(store: Store) -> None:
    """One method per operation, taking every path and query parameter the route takes."""
    for name, operation in _operations(create_app(Settings(), store)).items():
        method = getattr(Client, name, None)
        assert callable(method), f"distillguard.client lacks {name}()"
        taken = inspect.signature(method).parameters
        for parameter in operation.get("parameters", []):
            if parameter["in"] in ("path", "query"):
                assert parameter["name"] in taken, f"{name}() lacks {parameter['name']}"
