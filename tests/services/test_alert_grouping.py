"""One campaign, one alert: a campaign that grows over several pipeline batches reaches a real
local receiver (JSON, Slack and PagerDuty webhooks) as one alert and then updates under the same
group key, never as one alert per member; an escalation updates an account's alert; PagerDuty
routing keys are registered through the API, sealed, and never shown."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from fastapi.testclient import TestClient

from core.batch import Batch
from core.settings import Settings
from core.verdicts import ClusterVerdict, Verdict
from services.api import create_app
from services.auth import create_token
from services.webhooks import (
    GROUP_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    AlertSink,
    add_webhook,
    verify,
)
from storage import Store
from tests.services.test_alert_formats import ROUTING_KEY, assert_block_kit, assert_pagerduty
from tests.services.test_webhooks import LOOPBACK, SECRET, Receiver, _dispatcher, _drain, _verdict

T0 = datetime(2026, 11, 20, 12, tzinfo=UTC)
DASHBOARD = "https://dg.example.com"


@pytest.fixture
def receivers() -> Iterator[dict[str, Receiver]]:
    servers = {fmt: Receiver(refuse=0) for fmt in ("json", "slack", "pagerduty")}
    yield servers
    for server in servers.values():
        server.close()


def _campaign(size: int, step: int, label: str = "extraction") -> ClusterVerdict:
    return ClusterVerdict(
        cluster_id="cluster-1",
        updated=T0 + timedelta(minutes=step),
        members=[f"m{i}" for i in range(size)],
        score=0.9,
        label=label,
    )


def _member(account: str, step: int, label: str = "extraction") -> Verdict:
    verdict = _verdict(account, label)
    return verdict.model_copy(
        update={"cluster_id": "cluster-1", "requests_seen": 40 + step, "score": 0.8 + step / 100}
    )


def _batch(
    store: Store, min_label: str, verdicts: list[Verdict], clusters: list[ClusterVerdict]
) -> None:
    """One pipeline batch through the alert sink, as the pipeline writes it."""
    sink = AlertSink(store, min_label)
    sink.write(Batch(verdicts=verdicts, clusters=clusters))
    sink.flush()


def test_a_growing_campaign_is_one_alert_then_updates(
    store: Store, receivers: dict[str, Receiver]
) -> None:
    for fmt, server in receivers.items():
        key = ROUTING_KEY if fmt == "pagerduty" else None
        add_webhook(store, server.url, fmt, LOOPBACK, routing_key=key, secret=SECRET)  # type: ignore[arg-type]
    dispatcher = _dispatcher(store, dashboard_url=DASHBOARD)
    # (campaign size or None, member verdicts) per batch: 10 members over five batches
    batches = [
        (3, ["m0", "m1", "m2"]),  # the campaign is found: one alert
        (6, ["m0", "m3", "m4", "m5"]),  # it grows: one update
        (6, ["m2", "m5"]),  # members rescored, no growth: nothing
        (None, ["m6"]),  # a new member's own verdict before the campaign is rescored: nothing
        (10, [f"m{i}" for i in range(6, 10)]),  # grows again: one update
        (6, ["m1"]),  # an older state replayed (a restart): nothing
    ]
    for step, (size, members) in enumerate(batches):
        clusters = [_campaign(size, step)] if size else []
        _batch(store, "extraction", [_member(m, step) for m in members], clusters)
        _drain(dispatcher, 2)

    for fmt, server in receivers.items():
        assert len(server.received) == 3, fmt  # not 10: one alert, two updates
        groups = {headers[GROUP_HEADER] for headers, _ in server.received}
        keys = [headers["Idempotency-Key"] for headers, _ in server.received]
        assert len(groups) == 1 and len(set(keys)) == 3
        bodies = [orjson.loads(body) for _, body in server.received]
        for headers, body in server.received:
            assert verify(SECRET, body, headers[SIGNATURE_HEADER], headers[TIMESTAMP_HEADER])
        if fmt == "json":
            assert [b.get("update", False) for b in bodies] == [False, True, True]
            assert [b["member_count"] for b in bodies] == [3, 6, 10]
            assert [b.get("previous", {}).get("member_count") for b in bodies] == [None, 3, 6]
            assert {b["group_key"] for b in bodies} == groups
            assert bodies[0]["dashboard_link"] == f"{DASHBOARD}/#/campaigns/cluster-1"
        if fmt == "slack":
            for body in bodies:
                assert_block_kit(body)
            assert [b["text"].startswith("*DistillGuard* update:") for b in bodies] == [
                False,
                True,
                True,
            ]
            assert "grew from 6 to 10 accounts" in bodies[2]["text"]
        if fmt == "pagerduty":
            for body in bodies:
                assert_pagerduty(body)
            assert {b["dedup_key"] for b in bodies} == groups
            assert {b["routing_key"] for b in bodies} == {ROUTING_KEY}
            assert bodies[0]["links"][0]["href"] == f"{DASHBOARD}/#/campaigns/cluster-1"
    rows = store.query("SELECT kind, status FROM {db}.alerts FINAL")
    assert {(r["kind"], r["status"]) for r in rows} == {("campaign", "delivered")}
    stored = store.query(
        "SELECT routing_key_sealed FROM {db}.webhooks FINAL WHERE format = 'pagerduty'"
    )
    assert stored[0]["routing_key_sealed"] and ROUTING_KEY not in stored[0]["routing_key_sealed"]


def test_an_escalation_updates_the_alert_and_strangers_still_alert(store: Store) -> None:
    add_webhook(store, "http://127.0.0.1:9/hook", allow_networks=LOOPBACK)

    def outbox() -> list[dict]:
        rows = store.query("SELECT payload_json FROM {db}.alerts FINAL ORDER BY created_time")
        return sorted(
            (orjson.loads(r["payload_json"]) for r in rows), key=lambda p: p.get("revision", 0)
        )

    _batch(store, "suspicious", [_verdict("acct-1", "suspicious")], [])
    _batch(store, "suspicious", [_verdict("acct-1", "suspicious")], [])  # no change: nothing
    _batch(store, "extraction", [_verdict("acct-2", "suspicious")], [])  # below the threshold
    _batch(store, "suspicious", [_verdict("acct-1", "extraction")], [])  # escalates: an update
    _batch(store, "suspicious", [_verdict("acct-1", "suspicious")], [])  # de-escalates: nothing
    first, update = outbox()
    assert first["group_key"] == update["group_key"] and first["label"] == "suspicious"
    assert update["update"] and update["label"] == "extraction"
    assert update["previous"]["label"] == "suspicious"
    # a campaign found at `suspicious` escalates too; a suspicious campaign's members alert alone
    # at `extraction` while the campaign stays under the threshold
    _batch(store, "extraction", [_member("m0", 0)], [_campaign(2, 0, "suspicious")])
    assert {p.get("account_id") for p in outbox()} == {"acct-1", "m0"}


def test_pagerduty_webhooks_take_a_sealed_routing_key_and_hear_acknowledgements(
    store: Store,
) -> None:
    tokens = {role: create_token(store, role, f"test-{role}")[0] for role in ("admin", "analyst")}
    admin, analyst = ({"Authorization": f"Bearer {tokens[r]}"} for r in ("admin", "analyst"))
    pagerduty = Receiver(refuse=0)
    unsealable = Settings(webhook_allow_networks=LOOPBACK)
    sealable = Settings(webhook_allow_networks=LOOPBACK, webhook_secret=SECRET.decode())  # type: ignore[arg-type]
    hook = {"url": pagerduty.url, "format": "pagerduty", "routing_key": ROUTING_KEY}
    try:
        with TestClient(create_app(unsealable, store)) as client:
            assert client.post("/v1/webhooks", json=hook, headers=admin).status_code == 422
        with TestClient(create_app(sealable, store)) as client:
            for bad in (
                {"url": pagerduty.url, "format": "pagerduty"},
                {**hook, "routing_key": "short"},
                {**hook, "format": "json"},
            ):
                refused = client.post("/v1/webhooks", json=bad, headers=admin)
                assert refused.status_code == 422 and ROUTING_KEY not in refused.text
            created = client.post("/v1/webhooks", json=hook, headers=admin)
            assert created.status_code == 201 and created.json()["format"] == "pagerduty"
            listed = client.get("/v1/webhooks", headers=admin)
            assert [h["format"] for h in listed.json()["items"]] == ["pagerduty"]
            assert ROUTING_KEY not in created.text + listed.text
            (row,) = store.query("SELECT * FROM {db}.webhooks FINAL")
            assert ROUTING_KEY not in orjson.dumps(row).decode()

            _batch(store, "extraction", [_verdict("acct-1")], [])
            (alert,) = client.get("/v1/alerts", headers=analyst).json()["items"]
            for _ in range(2):  # acknowledged twice: PagerDuty hears it once
                ack = client.post(f"/v1/alerts/{alert['alert_id']}/ack", headers=analyst)
                assert ack.status_code == 200
        _drain(_dispatcher(store), 2)
    finally:
        pagerduty.close()
    events = [orjson.loads(body) for _, body in pagerduty.received]
    assert [e["event_action"] for e in events] == ["trigger", "acknowledge"]
    assert_pagerduty(events[1], "acknowledge")
    assert events[0]["dedup_key"] == events[1]["dedup_key"] == alert["payload"]["group_key"]


def test_the_cli_registers_a_pagerduty_webhook_without_the_key_on_the_command_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from typer.testing import CliRunner

    from core.settings import get_settings
    from distillguard.cli import app

    runner = CliRunner()
    monkeypatch.setenv("DG_WEBHOOK_SECRET", "s3cret")
    monkeypatch.setenv("DG_WEBHOOK_ALLOW_NETWORKS", '["127.0.0.0/8"]')
    get_settings.cache_clear()
    add = ["webhook", "add", "http://127.0.0.1:9/v2/enqueue", "--format", "pagerduty", "--json"]
    refused = runner.invoke(app, add, input="not-a-key\n")  # the hidden prompt
    assert refused.exit_code == 2 and "32 letters" in refused.output
    monkeypatch.setenv("DG_PAGERDUTY_ROUTING_KEY", ROUTING_KEY)
    added = runner.invoke(app, add)
    assert added.exit_code == 0, added.output
    webhook_id = orjson.loads(added.stdout)["webhook_id"]
    listed = runner.invoke(app, ["webhook", "list", "--json"])
    assert orjson.loads(listed.stdout) == [
        {"webhook_id": webhook_id, "url": "http://127.0.0.1:9/v2/enqueue", "format": "pagerduty"}
    ]
    assert ROUTING_KEY not in added.output + listed.output
    assert runner.invoke(app, ["webhook", "remove", webhook_id]).stdout == f"removed {webhook_id}\n"
    assert orjson.loads(runner.invoke(app, ["webhook", "list", "--json"]).stdout) == []
