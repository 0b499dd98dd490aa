"""Alert payloads per format, checked against the receivers' published rules: Slack Block Kit's
limits (and Slack's own SDK parsing every block back unchanged), PagerDuty Events v2's required
fields and limits; hostile account ids and prompt-derived text stay inert."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from slack_sdk.models.blocks import Block

from core.verdicts import ClusterVerdict, Reason, Verdict
from services.alert_formats import (
    SLACK_LIMITS,
    group_key,
    pagerduty_event,
    slack_escape,
    slack_message,
)
from services.webhooks import campaign_payload, seal, unseal, verdict_payload

HOSTILE = "<!channel> & <https://evil.example|click> `x`\n*Score*\n1.0 \u202e"
DASHBOARD = "https://dg.example.com/"
ROUTING_KEY = "R0123456789abcdefghijABCDEFGHIJK"
T0 = datetime(2026, 11, 20, 12, tzinfo=UTC)


def _account(account_id: str = HOSTILE, **changes: Any) -> dict:
    explanation = (HOSTILE + " ") * 400  # prompt-derived text, far past every limit
    verdict = Verdict(
        account_id=account_id,
        cluster_id=None,
        timestamp=T0,
        requests_seen=41,
        score=0.8123,
        label="extraction",
        reasons=[
            Reason(
                signal=f"signal-{i}<&>",
                value=1.0,
                contribution=0.3,
                evidence={"explanation": explanation},
            )
            for i in range(5)
        ],
        detector_version="fusion-1",
    )
    payload = verdict_payload(verdict)
    return {
        "alert_id": "a" * 32,
        "group_key": group_key("extraction", account_id),
        **payload,
        **changes,
    }


def _campaign(members: int = 300, **changes: Any) -> dict:
    cluster = ClusterVerdict(
        cluster_id="cluster-" + HOSTILE,
        updated=T0,
        members=[f"{HOSTILE}-{i}" for i in range(members)],
        score=0.93,
        label="extraction",
        evidence={
            "requests": 12000,
            "evidence_share": {"template": 0.6, "timing": 0.3, "client": 0.1},
            "shared_prefixes": {HOSTILE * 50: 12, "Translate": 4},
        },
    )
    payload = campaign_payload(cluster)
    return {
        "alert_id": "c" * 32,
        "group_key": group_key("campaign", cluster.cluster_id),
        **payload,
        **changes,
    }


def _texts(value: Any) -> list[str]:
    """Every text object's text in a Block Kit structure."""
    if isinstance(value, dict):
        found = [value["text"]] if value.get("type") in ("plain_text", "mrkdwn") else []
        return found + [t for v in value.values() for t in _texts(v)]
    if isinstance(value, list):
        return [t for v in value for t in _texts(v)]
    return []


def assert_block_kit(message: dict) -> None:
    """Slack's published limits for what we send, and every block a known one that Slack's SDK
    parses back to the same JSON (a misspelt or misplaced key would be dropped)."""
    assert 0 < len(message["text"]) <= SLACK_LIMITS["text"]
    blocks = message["blocks"]
    assert 0 < len(blocks) <= SLACK_LIMITS["blocks"]
    for block in blocks:
        assert Block.parse(block).to_dict() == block
        Block.parse(block).validate_json()
        if block["type"] == "header":
            assert block["text"]["type"] == "plain_text"
            assert len(block["text"]["text"]) <= SLACK_LIMITS["header"]
        if block["type"] == "section":
            assert len(block.get("text", {}).get("text", "")) <= SLACK_LIMITS["section_text"]
            assert len(block.get("fields", [])) <= SLACK_LIMITS["fields"]
            for field in block.get("fields", []):
                assert len(field["text"]) <= SLACK_LIMITS["field_text"]
        if block["type"] == "context":
            assert len(block["elements"]) <= SLACK_LIMITS["context_elements"]
        if block["type"] == "actions":
            for button in block["elements"]:
                assert len(button["text"]["text"]) <= SLACK_LIMITS["button_text"]
                assert len(button["url"]) <= SLACK_LIMITS["button_url"]
    for text in [message["text"], *_texts(blocks)]:
        assert 1 <= len(text) <= SLACK_LIMITS["section_text"]
        # Slack's control characters only as the entities we wrote: no mention, no link
        assert "<" not in text and ">" not in text
        assert not re.search(r"&(?!amp;|lt;|gt;)", text), text
        assert "\u202e" not in text


def assert_pagerduty(event: dict, action: str = "trigger") -> None:
    """PagerDuty Events v2 (developer.pagerduty.com, "Send an Alert Event"): the required fields,
    the allowed values and the documented limits."""
    assert re.fullmatch(r"[A-Za-z0-9]{32}", event["routing_key"])
    assert event["event_action"] == action in ("trigger", "acknowledge", "resolve")
    assert 0 < len(event["dedup_key"]) <= 255
    assert len(orjson.dumps(event)) <= 512 * 1024
    if action != "trigger":
        return
    payload = event["payload"]
    assert 0 < len(payload["summary"]) <= 1024 and "\n" not in payload["summary"]
    assert payload["source"]
    assert payload["severity"] in ("critical", "error", "warning", "info")
    datetime.fromisoformat(payload["timestamp"])  # ISO 8601
    assert all(isinstance(payload[k], str) for k in ("component", "group", "class"))
    assert isinstance(payload["custom_details"], dict)
    for link in event.get("links", []):
        assert link["href"].startswith("https://") and link["text"]


@pytest.mark.parametrize("make", [_account, _campaign])
def test_slack_messages_keep_block_kit_limits_and_escape_hostile_text(make) -> None:
    for dashboard in (None, DASHBOARD):
        message = slack_message(make(), dashboard)
        assert_block_kit(message)
        assert "&lt;!channel&gt; &amp; &lt;https://evil.example|click&gt;" in message["text"]
    header, section, context, actions = message["blocks"]
    assert header["type"] == "header" and section["type"] == "section"
    names = [field["text"].split("\n")[0] for field in section["fields"]]
    assert names[:2] == ["*Score*", "*Label*"] and "*Requests*" in names
    assert names[-1] == "*Top reasons*"
    assert all(field["text"].count("\n") <= 6 for field in section["fields"])  # no forged lines
    assert actions["elements"][0]["url"].startswith("https://dg.example.com/#/")


def test_the_dashboard_link_opens_the_account_or_the_campaign() -> None:
    account = slack_message(_account("acct/1 &?#"), DASHBOARD)
    (button,) = account["blocks"][-1]["elements"]
    assert button["url"] == "https://dg.example.com/#/accounts/acct%2F1%20%26%3F%23"
    campaign = pagerduty_event(_campaign(), ROUTING_KEY, "https://dg.example.com")
    (link,) = campaign["links"]
    assert link["href"].startswith("https://dg.example.com/#/campaigns/cluster-%3C%21channel%3E")
    assert slack_message(_account(), None)["blocks"][-1]["type"] != "actions"  # no URL: no button
    long_id = "x" * 3000  # a button URL over Slack's limit is left out, not sent to fail
    assert slack_message(_account(long_id), DASHBOARD)["blocks"][-1]["type"] != "actions"


def test_pagerduty_events_have_the_documented_fields_and_limits() -> None:
    for payload in (_account(), _account("x" * 512), _campaign(members=2000)):
        event = pagerduty_event(payload, ROUTING_KEY, DASHBOARD)
        assert_pagerduty(event)
        assert event["dedup_key"] == payload["group_key"]
        assert "alert_id" not in event["payload"]["custom_details"]
    assert pagerduty_event(_account(), ROUTING_KEY)["payload"]["severity"] == "critical"
    warning = pagerduty_event(_account(label="suspicious"), ROUTING_KEY)
    assert warning["payload"]["severity"] == "warning"
    resolve = pagerduty_event(_account(), ROUTING_KEY, action="resolve")
    assert_pagerduty(resolve, "resolve")
    assert set(resolve) == {"routing_key", "event_action", "dedup_key"}


def test_an_update_says_what_changed_under_the_same_group() -> None:
    first = _campaign(members=3)
    update = _campaign(
        members=7,
        update=True,
        revision=1,
        previous={"label": "suspicious", "member_count": 3, "score": 0.6},
    )
    assert first["group_key"] == update["group_key"]
    text = slack_message(update)["text"]
    assert text.startswith("*DistillGuard* update: campaign")
    assert "grew from 3 to 7 accounts; escalated from suspicious to extraction" in text
    event = pagerduty_event(update, ROUTING_KEY)
    assert event["dedup_key"] == pagerduty_event(first, ROUTING_KEY)["dedup_key"]
    assert "grew from 3 to 7 accounts" in event["payload"]["summary"]


def test_escaping_never_cuts_an_entity_in_half() -> None:
    assert slack_escape("&&&&", 9) == "&amp;…"
    assert slack_escape("a<b", 5) == "a…"
    assert slack_escape("line\nbreak\u200b") == "line break "


def test_routing_keys_are_sealed_per_webhook() -> None:
    secret = b"deployment-secret"
    sealed = seal(secret, "hook-1", ROUTING_KEY)
    assert ROUTING_KEY not in sealed and sealed != seal(secret, "hook-1", ROUTING_KEY)
    assert unseal(secret, "hook-1", sealed) == ROUTING_KEY
    for wrong_secret, hook in ((b"another-secret", "hook-1"), (secret, "hook-2")):
        with pytest.raises(ValueError, match="unreadable"):
            unseal(wrong_secret, hook, sealed)
