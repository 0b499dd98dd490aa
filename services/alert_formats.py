"""What an alert looks like on the wire, per webhook format: the signed DistillGuard JSON, a Slack
Block Kit message, or a PagerDuty Events v2 event. Pure functions of the outbox payload.

Every value in an alert may come from an attacker (account ids, prompt-derived explanations and
shared prefixes), so Slack text is escaped (`slack_escape`: control characters out, `&`, `<` and
`>` as entities, so nothing can mention `@channel` or forge a link) and every field is cut to
Slack's and PagerDuty's published limits (`SLACK_LIMITS`, `PAGERDUTY_SUMMARY_CHARS`).

One campaign is one alert: a payload carries its `group_key` (the same for the first alert and
every update of one account or campaign), the PagerDuty `dedup_key`; an update says so
(`update`, `revision`, `previous`).
"""

from __future__ import annotations

import hashlib
import unicodedata
from typing import Any
from urllib.parse import quote

# Block Kit limits (docs.slack.dev/reference/block-kit): a message's blocks, a header's plain
# text, a section's text and fields, a context's elements, a button's text and URL.
SLACK_LIMITS = {
    "blocks": 50,
    "header": 150,
    "section_text": 3000,
    "fields": 10,
    "field_text": 2000,
    "context_elements": 10,
    "button_text": 75,
    "button_url": 3000,
    "text": 3000,  # the notification fallback (Slack advises a short one; 3000 as a section)
}
PAGERDUTY_SUMMARY_CHARS = 1024  # Events v2: payload.summary
PAGERDUTY_DEDUP_KEY_CHARS = 255
PAGERDUTY_SEVERITY = {"extraction": "critical", "suspicious": "warning"}
MAX_REASONS = 3


def group_key(kind: str, subject: str) -> str:
    """The key every alert about one account (`kind` "extraction") or campaign shares: the
    PagerDuty dedup key, and the JSON and Slack alerts' `group_key` (32 hex characters, so a
    hostile account id never reaches a header or a dedup key)."""
    return hashlib.sha256(f"{kind}\x1f{subject}".encode()).hexdigest()[:32]


def _plain(value: object) -> str:
    """The text with control and format characters (newlines, bidi overrides) as spaces, so a
    value cannot fake extra lines or reorder what is shown."""
    return "".join(" " if unicodedata.category(c).startswith("C") else c for c in str(value))


def clip(text: str, limit: int) -> str:
    """At most `limit` characters, cut with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def slack_escape(value: object, limit: int | None = None) -> str:
    """Text for a Slack text object: `&`, `<`, `>` as entities (Slack's control characters:
    mentions and links), control characters out, cut to `limit` without splitting an entity."""
    escaped = _plain(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    if limit is None or len(escaped) <= limit:
        return escaped
    cut = escaped[: limit - 1]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + "…"


def _code(value: object, limit: int) -> str:
    """An escaped id in a code span (a backtick inside would end the span early)."""
    return "`" + slack_escape(str(value).replace("`", "'"), limit) + "`"


def dashboard_link(dashboard_url: str | None, payload: dict) -> str | None:
    """The dashboard's page of the alert's campaign or account (None without a dashboard URL)."""
    if not dashboard_url:
        return None
    base = dashboard_url.rstrip("/")
    if payload["kind"] == "campaign":
        return f"{base}/#/campaigns/{quote(payload['cluster_id'], safe='')}"
    return f"{base}/#/accounts/{quote(payload['account_id'], safe='')}"


def _subject(payload: dict) -> tuple[str, str]:
    """("campaign", its id) or ("account", its id)."""
    if payload["kind"] == "campaign":
        return "campaign", payload["cluster_id"]
    return "account", payload["account_id"]


def _change(payload: dict) -> str:
    """What an update changed, in words ("" for a first alert)."""
    previous = payload.get("previous")
    if not payload.get("update") or not previous:
        return ""
    changes = []
    members, before = payload.get("member_count", 0), previous.get("member_count") or 0
    if members > before:
        changes.append(f"grew from {before} to {members} accounts")
    if payload["label"] != previous.get("label"):
        changes.append(f"escalated from {previous.get('label')} to {payload['label']}")
    return "; ".join(changes)


def _reason_lines(payload: dict) -> list[str]:
    """The top reasons as text: signal, contribution (or share), explanation."""
    lines = []
    for reason in payload.get("reasons", [])[:MAX_REASONS]:
        if "share" in reason:
            lines.append(f"{reason['signal']} ({reason['share']:.0%} of the link evidence)")
        else:
            explanation = reason.get("explanation") or ""
            line = f"{reason['signal']} (+{reason['contribution']:.2f})"
            lines.append(f"{line}: {explanation}" if explanation else line)
    for prefix in payload.get("shared_prefixes", [])[:MAX_REASONS]:
        lines.append(f"shared prompt prefix: {prefix}")
    return lines


def slack_text(payload: dict) -> str:
    """The plain mrkdwn line (notifications, clients without blocks); escaped like the blocks."""
    subject, ident = _subject(payload)
    update = "update: " if payload.get("update") else ""
    if subject == "campaign":
        line = (
            f"*DistillGuard* {update}campaign {_code(ident, 200)} flagged {payload['label']} "
            f"({payload['member_count']} accounts, score {payload['score']})"
        )
    else:
        reasons = ", ".join(slack_escape(r["signal"], 100) for r in payload["reasons"][:3])
        line = (
            f"*DistillGuard* {update}account {_code(ident, 200)} flagged as {payload['label']} "
            f"(score {payload['score']}, {payload['requests_seen']} requests; {reasons})"
        )
    change = _change(payload)
    return clip(f"{line}; {change}" if change else line, SLACK_LIMITS["text"])


def slack_message(payload: dict, dashboard_url: str | None = None) -> dict[str, Any]:
    """A Block Kit message: header, the facts as section fields, a context line, and a button to
    the dashboard page; `text` is the fallback."""
    subject, ident = _subject(payload)
    update = "update: " if payload.get("update") else ""
    title = f"DistillGuard {update}{payload['label']} {subject} {ident}"
    facts = [("Score", f"{payload['score']:.3f}"), ("Label", payload["label"])]
    if subject == "campaign":
        facts.append(("Accounts", payload["member_count"]))
        requests = payload.get("requests")
    else:
        requests = payload.get("requests_seen")
        if payload.get("cluster_id"):
            facts.append(("Campaign", payload["cluster_id"]))
    facts.append(("Requests", requests if requests is not None else "-"))
    fields = [
        {"type": "mrkdwn", "text": f"*{name}*\n{slack_escape(value, 500)}"} for name, value in facts
    ]
    reasons = _reason_lines(payload)  # at most 2 x MAX_REASONS lines of 300: within a field
    if reasons:
        lines = "\n".join(f"• {slack_escape(line, 300)}" for line in reasons)
        fields.append({"type": "mrkdwn", "text": f"*Top reasons*\n{lines}"})
    when = payload.get("detected_at") or payload.get("updated_at") or ""
    context = [f"DistillGuard {slack_escape(when, 40)}", f"alert group {payload['group_key']}"]
    change = _change(payload)
    if change:
        context.insert(0, f"*Update {payload.get('revision', 1)}*: {slack_escape(change, 300)}")
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": slack_escape(title, SLACK_LIMITS["header"])},
        },
        {"type": "section", "fields": fields[: SLACK_LIMITS["fields"]]},
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": " · ".join(context)}],
        },
    ]
    link = dashboard_link(dashboard_url, payload)
    if link and len(link) <= SLACK_LIMITS["button_url"]:
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": f"Open {subject} in DistillGuard"},
                        "url": link,
                        "action_id": "distillguard-open",
                    }
                ],
            }
        )
    return {"text": slack_text(payload), "blocks": blocks}


def pagerduty_event(
    payload: dict,
    routing_key: str,
    dashboard_url: str | None = None,
    action: str = "trigger",
) -> dict[str, Any]:
    """A PagerDuty Events v2 event; every alert of one account or campaign has the same
    `dedup_key`, so an update appends to the open PagerDuty alert instead of paging again."""
    event: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": action,
        "dedup_key": payload["group_key"][:PAGERDUTY_DEDUP_KEY_CHARS],
    }
    if action != "trigger":
        return event
    subject, ident = _subject(payload)
    summary = f"DistillGuard: {payload['label']} {subject} {ident} (score {payload['score']}"
    summary += f", {payload['member_count']} accounts)" if subject == "campaign" else ")"
    change = _change(payload)
    summary = clip(_plain(f"{summary}: {change}" if change else summary), PAGERDUTY_SUMMARY_CHARS)
    details = {k: v for k, v in payload.items() if k != "alert_id"}
    event["payload"] = {
        "summary": summary,
        "source": "distillguard",
        "severity": PAGERDUTY_SEVERITY.get(payload["label"], "warning"),
        "timestamp": payload.get("detected_at") or payload.get("updated_at"),
        "component": clip(_plain(f"{subject} {ident}"), 255),
        "group": clip(_plain(payload.get("cluster_id") or subject), 255),
        "class": "extraction campaign" if subject == "campaign" else "model extraction",
        "custom_details": details,
    }
    event["client"] = "DistillGuard"
    link = dashboard_link(dashboard_url, payload)
    if link:
        event["client_url"] = dashboard_url
        event["links"] = [{"href": link, "text": f"{subject.capitalize()} in DistillGuard"}]
    return event
