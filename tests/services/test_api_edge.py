"""The API's edge and audit over a real store (issue 15): the failed-token limit per client
address (429, audited once per window, bounded memory), 401 and 403 audited with their real
status, `X-Forwarded-For` believed only from a trusted proxy, every read of an account's data
audited with its status, token revocation over the API, `until=0` as a real bound, bodies
counted as they stream, and unexpected failures as the JSON error shape. The same limits on a
real uvicorn with a 120 MiB chunked body: `test_api_edge_server.py`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from core.settings import Settings
from distillguard.client import Client
from services.api import create_app
from services.api.edge import FailureLimiter, client_address, trusted_networks
from services.api.schemas import ReportRequest
from services.auth import create_token
from services.report_jobs import PDF_UNAVAILABLE
from services.reports import reports_dir
from storage import Store, queries
from tests.services.test_api import _event, _verdict, auth

ATTACKER = ("203.0.113.7", 40000)
NEIGHBOUR = ("203.0.113.8", 40000)
LOOPBACK = ("127.0.0.1", 40000)


@pytest.fixture
def seeded(store: Store) -> tuple[Store, dict[str, str]]:
    """Verdicts and events of `acct-high`, and a token per role."""
    store.insert(
        "verdicts",
        [_verdict("acct-high", 0.9, "extraction", 40), _verdict("acct-low", 0.1, "benign", 5)],
    )
    store.insert("events", [_event("acct-high", i, f"prompt {i}") for i in range(3)])
    roles = ("analyst", "admin", "ingest")
    return store, {role: create_token(store, role, f"edge-{role}")[0] for role in roles}


def client(store: Store, peer: tuple[str, int] = ATTACKER, **settings) -> TestClient:
    """The API as `peer` sees it (the TCP peer address is what the edge starts from)."""
    app = create_app(Settings(**settings), store)  # data_dir: the test's own (conftest)
    return TestClient(app, client=peer, raise_server_exceptions=False)


def audit_rows(store: Store) -> list[dict]:
    return list(queries.audit_page(store, None, 500, 0).rows)


# --- failed authentication: 429 past the limit, audited, bounded -------------------------------
def test_the_31st_bad_token_from_one_address_gets_429_and_is_audited(seeded) -> None:
    store, tokens = seeded
    api = client(store)
    for attempt in range(30):
        response = api.get("/v1/accounts", headers=auth(f"dg_guess_{attempt}"))
        assert response.status_code == 401, attempt
    throttled = [api.get("/v1/accounts", headers=auth("dg_guess_x")) for _ in range(5)]
    assert {r.status_code for r in throttled} == {429}
    error = throttled[0].json()["error"]
    assert error["code"] == "too_many_requests" and error["status"] == 429
    assert 1 <= int(throttled[0].headers["retry-after"]) <= 60
    # Past the limit even a valid token from that address waits (it is not looked up) ...
    assert api.get("/v1/accounts", headers=auth(tokens["analyst"])).status_code == 429
    # ... while another address is untouched.
    neighbour = client(store, NEIGHBOUR)
    assert neighbour.get("/v1/accounts", headers=auth(tokens["analyst"])).status_code == 200

    rows = [r for r in audit_rows(store) if r["client_ip"] == ATTACKER[0]]
    failed = [r for r in rows if r["action"] == "authentication_failed"]
    assert len(failed) == 30 and {(r["status"], r["resource"]) for r in failed} == {
        (401, "/v1/accounts")
    }
    # Six 429s, one audit row: a flood past the limit cannot fill the audit log.
    assert [(r["action"], r["status"]) for r in rows if r["status"] == 429] == [("throttled", 429)]
    assert len(rows) == 31


def test_the_limiter_forgets_windows_and_holds_bounded_memory() -> None:
    now = [0.0]
    limiter = FailureLimiter(2, max_addresses=3, audits_per_window=5, clock=lambda: now[0])
    assert limiter.failed("a") and limiter.failed("a")
    assert limiter.retry_after("a") == 60 and limiter.retry_after("b") is None
    assert limiter.throttled("a") and not limiter.throttled("a")  # audited once a window
    now[0] = 59.5
    assert limiter.retry_after("a") == 1
    now[0] = 60.0
    assert limiter.retry_after("a") is None  # its window is over
    # At most 5 audited failures a window, whatever the number of addresses ...
    assert [limiter.failed(address) for address in "bcdefg"] == [True] * 5 + [False]
    # ... and at most 3 windows held: the oldest made room.
    assert len(limiter) == 3
    now[0] = 120.0
    assert limiter.failed("h")  # a new audit window


# --- 401 and 403 audited with their real status ------------------------------------------------
def test_refusals_are_audited_with_their_real_status(seeded) -> None:
    store, tokens = seeded
    api = client(store, NEIGHBOUR)
    assert api.get("/v1/accounts").status_code == 401
    assert api.post("/v1/tokens", headers=auth("dg_forged"), json={}).status_code == 401
    assert api.get("/v1/audit", headers=auth(tokens["analyst"])).status_code == 403
    ingest = api.get(
        "/v1/events", params={"account_id": "acct-high"}, headers=auth(tokens["ingest"])
    )
    assert ingest.status_code == 403
    rows = {(r["action"], r["resource"], r["status"], r["role"]) for r in audit_rows(store)}
    assert rows == {
        ("authentication_failed", "/v1/accounts", 401, ""),
        ("authentication_failed", "/v1/tokens", 401, ""),
        ("forbidden", "/v1/audit", 403, "analyst"),
        ("forbidden", "/v1/events", 403, "ingest"),
    }
    assert {r["client_ip"] for r in audit_rows(store)} == {NEIGHBOUR[0]}


# --- the client address -------------------------------------------------------------------------
def _scope(peer: str, *forwarded: str) -> dict:
    headers = [(b"x-forwarded-for", value.encode()) for value in forwarded]
    return {"type": "http", "client": (peer, 5000), "headers": headers}


def test_forwarded_for_is_believed_only_from_a_trusted_proxy() -> None:
    none = trusted_networks([])
    proxies = trusted_networks(["127.0.0.1", "10.0.0.0/8"])
    assert client_address(_scope("127.0.0.1", "198.51.100.9"), none) == "127.0.0.1"
    assert client_address(_scope("203.0.113.7", "198.51.100.9"), proxies) == "203.0.113.7"
    assert client_address(_scope("127.0.0.1", "198.51.100.9"), proxies) == "198.51.100.9"
    # Each proxy appends: the nearest untrusted hop is the client; what it sent is ignored.
    chain = ("6.6.6.6, 198.51.100.9", "10.1.2.3")
    assert client_address(_scope("127.0.0.1", *chain), proxies) == "198.51.100.9"
    assert client_address(_scope("127.0.0.1", "not-an-ip, 10.1.2.3"), proxies) == "10.1.2.3"
    assert client_address(_scope("::ffff:127.0.0.1", "198.51.100.9"), proxies) == "198.51.100.9"
    assert client_address(_scope("127.0.0.1"), proxies) == "127.0.0.1"


def test_forwarded_for_cannot_dodge_the_limit_or_the_audit_log_by_default(seeded) -> None:
    store, tokens = seeded
    api = client(store, LOOPBACK)
    statuses = [
        api.get(
            "/v1/accounts", headers={**auth("dg_x"), "X-Forwarded-For": f"198.51.100.{i}"}
        ).status_code
        for i in range(31)
    ]
    assert statuses == [401] * 30 + [429]
    assert {r["client_ip"] for r in audit_rows(store)} == {"127.0.0.1"}

    behind = client(store, LOOPBACK, trusted_proxies=["127.0.0.1"])
    spoofed = {**auth(tokens["analyst"]), "X-Forwarded-For": "6.6.6.6, 198.51.100.77"}
    assert behind.get("/v1/accounts/acct-high", headers=spoofed).status_code == 200
    (view,) = [r for r in audit_rows(store) if r["action"] == "view_account"]
    assert view["client_ip"] == "198.51.100.77"


# --- every read of an account's data is audited -------------------------------------------------
def test_every_read_of_account_data_is_audited_with_its_status(seeded, tmp_path: Path) -> None:
    store, tokens = seeded
    api = client(store, data_dir=tmp_path)
    analyst = auth(tokens["analyst"])
    reads = [
        ("/v1/verdicts", {"account_id": "acct-high"}, 200),
        ("/v1/verdicts", {}, 200),
        ("/v1/accounts", {}, 200),
        ("/v1/accounts/acct-high", {}, 200),
        ("/v1/accounts/nobody", {}, 404),
        ("/v1/events", {"account_id": "acct-high"}, 200),
        ("/v1/clusters", {}, 200),
        ("/v1/clusters/c-none", {}, 404),
        ("/v1/alerts", {}, 200),
    ]
    for path, params, status in reads:
        assert api.get(path, params=params, headers=analyst).status_code == status, path
    report = api.post(
        "/v1/reports", json={"account_id": "acct-high", "pdf": False}, headers=analyst
    )
    assert report.status_code == 202, report.text
    assert report.headers["location"] == f"/v1/reports/jobs/{report.json()['job_id']}"
    job = Client(http=api, token=tokens["analyst"]).wait_for_report(report.json()["job_id"])
    report_id = job.report_id
    assert report_id == job.job_id  # the finished report is published under the job's id
    export = api.get(f"/v1/reports/{report_id}/events.csv", headers=analyst)
    assert export.status_code == 200 and "acct-high" in export.text

    rows = {
        (r["action"], r["resource"], r["account_id"], r["cluster_id"], r["status"])
        for r in audit_rows(store)
    }
    assert rows == {
        ("view_verdicts", "/v1/verdicts", "acct-high", "", 200),
        ("view_verdicts", "/v1/verdicts", "", "", 200),
        ("list_accounts", "/v1/accounts", "", "", 200),
        ("view_account", "/v1/accounts/acct-high", "acct-high", "", 200),
        ("view_account", "/v1/accounts/nobody", "nobody", "", 404),
        ("view_events", "/v1/events", "acct-high", "", 200),
        ("list_clusters", "/v1/clusters", "", "", 200),
        ("view_cluster", "/v1/clusters/c-none", "", "c-none", 404),
        ("list_alerts", "/v1/alerts", "", "", 200),
        (f"generate_report:{report_id}", "/v1/reports", "acct-high", "", 202),
        (
            f"export_report:{report_id}/events.csv",
            f"/v1/reports/{report_id}/events.csv",
            "acct-high",
            "",
            200,
        ),
    }
    assert {r["role"] for r in audit_rows(store)} == {"analyst"}


# --- token revocation ---------------------------------------------------------------------------
def test_a_token_revoked_over_the_api_is_refused_at_once(seeded) -> None:
    store, tokens = seeded
    api = client(store, NEIGHBOUR)
    admin = auth(tokens["admin"])
    created = api.post("/v1/tokens", json={"role": "analyst", "name": "leaver"}, headers=admin)
    token, token_id = created.json()["token"], created.json()["token_id"]
    assert api.get("/v1/accounts", headers=auth(token)).status_code == 200  # cached as valid

    assert api.delete(f"/v1/tokens/{token_id}", headers=auth(token)).status_code == 403
    revoked = api.delete(f"/v1/tokens/{token_id}", headers=admin)
    assert revoked.status_code == 200 and revoked.json() == {"token_id": token_id, "revoked": True}
    refused = api.get("/v1/accounts", headers=auth(token))
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized"
    missing = api.delete("/v1/tokens/nosuchtoken", headers=admin)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"

    actions = {(r["action"], r["status"], r["role"]) for r in audit_rows(store)}
    assert {
        (f"revoke_token:{token_id}", 200, "admin"),
        ("revoke_token:nosuchtoken", 404, "admin"),
        ("forbidden", 403, "analyst"),
        ("authentication_failed", 401, ""),
    } <= actions


# --- time bounds --------------------------------------------------------------------------------
def test_until_zero_is_a_bound_not_a_missing_value(seeded) -> None:
    store, tokens = seeded
    epoch = _verdict("acct-epoch", 0.2, "benign", 1)
    store.insert("verdicts", [{**epoch, "verdict_ms": 0, "verdict_id": "v-epoch"}])
    api = client(store)
    analyst = auth(tokens["analyst"])

    def verdicts(**params) -> list[str]:
        page = api.get("/v1/verdicts", params=params, headers=analyst)
        assert page.status_code == 200, page.text
        return sorted(v["account_id"] for v in page.json()["items"])

    assert verdicts(until=0) == ["acct-epoch"]
    assert verdicts(until="1970-01-01T00:00:00Z") == ["acct-epoch"]
    assert verdicts(since=0) == ["acct-epoch", "acct-high", "acct-low"]
    assert verdicts(since="2030-01-01T00:00:00Z") == []
    events = api.get("/v1/events", params={"account_id": "acct-high", "until": 0}, headers=analyst)
    assert events.status_code == 200 and events.json()["items"] == []
    epoch_only = ReportRequest.model_validate({"until": 0}).subject()
    assert (epoch_only.since_ms, epoch_only.until_ms) == (0, 0)


# --- bodies counted as they stream --------------------------------------------------------------
@pytest.mark.parametrize("path", ["/v1/tokens", "/v1/webhooks", "/v1/reports", "/v1/events"])
def test_a_body_without_a_length_is_counted_on_every_route(seeded, path: str) -> None:
    store, tokens = seeded
    api = client(store, max_request_bytes=4096)

    def chunks() -> Iterator[bytes]:  # no Content-Length: sent chunked
        yield from (b"x" * 1024 for _ in range(64))

    response = api.post(path, content=chunks(), headers=auth(tokens["admin"]))
    assert "content-length" not in response.request.headers
    assert response.status_code == 413, response.text
    assert response.json()["error"]["message"] == "request body over 4096 bytes"


# --- failures as JSON ---------------------------------------------------------------------------
def test_an_unexpected_failure_is_a_generic_json_500_and_audited(seeded, monkeypatch) -> None:
    store, tokens = seeded

    def broken(*_args: object) -> None:
        raise RuntimeError("secret internals: /srv/db password=hunter2")

    monkeypatch.setattr(queries, "account_event_page", broken)
    response = client(store).get(
        "/v1/events", params={"account_id": "acct-high"}, headers=auth(tokens["analyst"])
    )
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "error": {"status": 500, "code": "server_error", "message": "internal server error"}
    }
    assert response.headers["x-content-type-options"] == "nosniff"
    ((action, account, status),) = {
        (r["action"], r["account_id"], r["status"]) for r in audit_rows(store)
    }
    assert (action, account, status) == ("view_events", "acct-high", 500)


def test_a_report_without_chromium_is_a_clean_503(seeded, tmp_path: Path, monkeypatch) -> None:
    store, tokens = seeded
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no chromium to be found
    settings = {"data_dir": tmp_path}
    response = client(store, **settings).post(
        "/v1/reports", json={"account_id": "acct-high"}, headers=auth(tokens["analyst"])
    )
    assert response.status_code == 503, response.text
    assert response.json() == {
        "error": {"status": 503, "code": "server_error", "message": PDF_UNAVAILABLE}
    }
    folder = reports_dir(Settings(data_dir=tmp_path))
    assert not folder.exists() or list(folder.iterdir()) == []  # nothing left behind
    (row,) = audit_rows(store)
    assert (row["action"], row["account_id"], row["status"]) == (
        "generate_report",
        "acct-high",
        503,
    )


def test_health_and_the_dashboard_need_no_token(seeded) -> None:
    store, _ = seeded
    api = client(store)
    assert api.get("/healthz").status_code == 200
    assert api.get("/dashboard/").status_code == 200
    assert api.get("/", follow_redirects=False).status_code in (302, 307)
    assert audit_rows(store) == []
