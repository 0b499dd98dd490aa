"""Dispositions on both store backends: set through the API (analyst role, audited, clear 422s),
read back as history and lists, and an allowlist in force silencing alerts at a real loopback
receiver while the verdicts themselves are still stored."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from fastapi.testclient import TestClient

from core.settings import Settings
from core.verdicts import ClusterVerdict
from services.api import create_app
from services.auth import create_token
from services.dispositions import set_disposition
from storage import Store, queries
from tests.services.test_api import _verdict as _account_verdict
from tests.services.test_api import auth
from tests.services.test_webhooks import LOOPBACK, Receiver, _dispatcher, _drain, _queue, _verdict

SOON = (datetime.now(UTC) + timedelta(days=30)).isoformat()


@pytest.fixture
def api(store: Store) -> Iterator[tuple[TestClient, dict[str, str], Store]]:
    tokens = {role: create_token(store, role, f"test-{role}")[0] for role in ROLES}
    with TestClient(create_app(Settings(), store)) as client:
        yield client, tokens, store


ROLES = ("analyst", "admin", "ingest")


def _set(client: TestClient, token: str, **body: object):
    return client.post("/v1/dispositions", json=body, headers=auth(token))


def test_analysts_set_dispositions_and_read_the_history(api) -> None:
    client, tokens, store = api
    analyst = tokens["analyst"]
    assert client.get("/v1/dispositions").status_code == 401
    refused = _set(
        client, tokens["ingest"], subject_kind="account", subject_id="a", disposition="none"
    )
    assert refused.status_code == 403
    first = _set(
        client,
        analyst,
        subject_kind="account",
        subject_id="acct-1",
        disposition="false_positive",
        reason="a power user's batch job",
        assignee="eve",
        note="checked with the customer",
    )
    assert first.status_code == 201, first.text
    record = first.json()
    assert record["actor"] == "test-analyst" and record["active"] is True
    assert record["expires_at"] is None and record["assignee"] == "eve"
    second = _set(
        client,
        analyst,
        subject_kind="account",
        subject_id="acct-1",
        disposition="allowlisted",
        expires_at=SOON,
        reason="contract partner",
    )
    assert second.status_code == 201, second.text
    _set(
        client,
        analyst,
        subject_kind="cluster",
        subject_id="c-1",
        disposition="confirmed_extraction",
    )

    history = client.get("/v1/accounts/acct-1/dispositions", headers=auth(analyst)).json()
    assert [h["disposition"] for h in history["items"]] == ["allowlisted", "false_positive"]
    assert [h["active"] for h in history["items"]] == [True, False]
    cluster = client.get("/v1/clusters/c-1/dispositions", headers=auth(analyst)).json()
    assert [h["disposition"] for h in cluster["items"]] == ["confirmed_extraction"]
    assert client.get("/v1/clusters/none/dispositions", headers=auth(analyst)).json()["items"] == []

    listed = client.get(
        "/v1/dispositions",
        params={"disposition": "allowlisted", "active": True},
        headers=auth(analyst),
    ).json()
    assert [(i["subject_kind"], i["subject_id"]) for i in listed["items"]] == [
        ("account", "acct-1")
    ]
    everything = client.get("/v1/dispositions", headers=auth(analyst)).json()["items"]
    assert {i["subject_id"] for i in everything} == {"acct-1", "c-1"}
    cleared = _set(client, analyst, subject_kind="account", subject_id="acct-1", disposition="none")
    assert cleared.status_code == 201
    active = client.get("/v1/dispositions", params={"active": True}, headers=auth(analyst)).json()
    assert [i["subject_id"] for i in active["items"]] == ["c-1"]

    changes = store.query(
        "SELECT action, account_id, cluster_id, status FROM {db}.audit_log"
        " WHERE action LIKE 'set_disposition:%%' ORDER BY audit_ms"
    )
    assert [(c["account_id"], c["cluster_id"], c["status"]) for c in changes] == [
        ("acct-1", "", 201),
        ("acct-1", "", 201),
        ("", "c-1", 201),
        ("acct-1", "", 201),
    ]
    assert changes[1]["action"].endswith(":allowlisted")


def test_the_leaderboard_filters_by_disposition(api) -> None:
    client, tokens, store = api
    analyst = auth(tokens["analyst"])
    store.insert(
        "verdicts",
        [_account_verdict(a, s, "suspicious", 40) for a, s in (("a", 0.9), ("b", 0.8), ("c", 0.7))],
    )
    _set(client, tokens["analyst"], subject_kind="account", subject_id="a",
         disposition="false_positive")  # fmt: skip
    _set(client, tokens["analyst"], subject_kind="account", subject_id="b",
         disposition="allowlisted", expires_at=SOON)  # fmt: skip

    def listed(**params: str) -> list[str]:
        response = client.get("/v1/accounts", params=params, headers=analyst)
        assert response.status_code == 200, response.text
        return [item["account_id"] for item in response.json()["items"]]

    assert listed() == ["a", "b", "c"]
    assert listed(disposition="false_positive") == ["a"]
    assert listed(disposition="allowlisted", label="suspicious") == ["b"]
    assert listed(disposition="allowlisted", label="extraction") == []
    assert listed(disposition="none") == ["c"]
    assert listed(disposition="confirmed_extraction") == []
    refused = client.get("/v1/accounts", params={"disposition": "maybe"}, headers=analyst)
    assert refused.status_code == 422 and "disposition" in refused.text


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"disposition": "allowlisted"}, "needs expires_at"),
        ({"disposition": "allowlisted", "expires_at": "2020-01-01T00:00:00Z"}, "in the past"),
        ({"disposition": "false_positive", "subject_kind": "org"}, "subject_kind"),
        ({"disposition": "maybe"}, "disposition"),
        ({"disposition": "none", "subject_id": ""}, "subject_id"),
    ],
)
def test_invalid_dispositions_are_clear_422s(api, body: dict, problem: str) -> None:
    client, tokens, store = api
    response = _set(
        client, tokens["analyst"], **{"subject_kind": "account", "subject_id": "a", **body}
    )
    assert response.status_code == 422
    assert problem in orjson.dumps(response.json()).decode()
    assert store.count("dispositions") == 0


def test_an_allowlist_in_force_raises_no_alerts(store: Store) -> None:
    receiver = Receiver(refuse=0)
    try:
        from services.webhooks import add_webhook

        add_webhook(store, receiver.url, allow_networks=LOOPBACK)
        _, analyst = create_token(store, "analyst", "analyst-1")
        soon = int((datetime.now(UTC) + timedelta(days=1)).timestamp() * 1000)
        for account in ("quiet", "linked"):
            set_disposition(store, "account", account, "allowlisted", analyst, expires_ms=soon)
        set_disposition(store, "cluster", "c-quiet", "allowlisted", analyst, expires_ms=soon)
        set_disposition(store, "account", "was-quiet", "allowlisted", analyst, expires_ms=soon)
        set_disposition(store, "account", "was-quiet", "none", analyst)  # cleared: alerts again

        def campaign(cluster_id: str, members: list[str]) -> ClusterVerdict:
            return ClusterVerdict(
                cluster_id=cluster_id,
                updated=datetime(2026, 11, 20, 12, tzinfo=UTC),
                score=0.9,
                label="extraction",
                members=members,
            )

        member = _verdict("in-quiet-campaign").model_copy(update={"cluster_id": "c-quiet"})
        _queue(
            store,
            [_verdict("quiet"), _verdict("loud"), _verdict("was-quiet"), member],
            [
                campaign("c-quiet", ["m1", "m2"]),
                campaign("c-all-quiet", ["quiet", "linked"]),
                campaign("c-mixed", ["linked", "m3"]),
            ],
        )
        _drain(_dispatcher(store), 3)
        alerts = [orjson.loads(body) for _, body in receiver.received]
        subjects = sorted(a.get("account_id") or a["cluster_id"] for a in alerts)
        assert subjects == ["c-mixed", "loud", "was-quiet"]
        (mixed,) = [a for a in alerts if a.get("cluster_id") == "c-mixed"]
        assert mixed["members"] == ["linked", "m3"] and mixed["allowlisted_members"] == ["linked"]
        assert queries.allowlisted(store, "account", ["quiet"], soon + 1) == set()  # it lapses
    finally:
        receiver.close()
