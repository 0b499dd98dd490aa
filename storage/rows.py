"""Domain objects to table rows: one place decides what an event, dead letter, verdict, campaign,
account state or response fingerprint stores."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Literal

import orjson

from core.batch import AccountState, IngestedEvent, ResponseFingerprint
from core.events import DeadLetter, Event
from core.hashing import prompt_hash
from core.verdicts import ClusterVerdict, Verdict
from storage.schema import EVENTS

RedactPolicy = Literal["none", "hash", "truncate"]
# Events are append-only evidence: under FINAL the highest version wins, so an event's version
# falls as its ingest time rises and the first write of a request_id stays even when two writers
# race past the pipeline's look-up. Rows written before this rule carry their ingest time as
# version (about 1.8e12), below every row written since (about 9.2e18): were one of those ids
# written again, the new row would win, but the pipeline's look-up refuses such a write first
# (identical: skipped; different: a `conflict` dead letter).
FIRST_WRITE_WINS = 2**63 - 1


def redact(text: str, policy: RedactPolicy, truncate_chars: int = 200) -> str:
    """Prompt text as the redaction setting allows it to be stored."""
    if policy == "none":
        return text
    if policy == "truncate":
        return text[:truncate_chars]
    return "sha256:" + prompt_hash(text)


def redact_for_display(text: str, policy: RedactPolicy, truncate_chars: int = 200) -> str:
    """Stored prompt text under the redaction policy in force now (a policy may have tightened
    since ingest); text already hashed at ingest stays as it is."""
    return text if text.startswith("sha256:") else redact(text, policy, truncate_chars)


def _json(value: object) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def event_version(ingested_ms: int) -> int:
    """The `events` version of a row ingested at `ingested_ms`: earlier ingest, higher version."""
    return FIRST_WRITE_WINS - ingested_ms


def event_row(
    event: Event,
    source: str = "",
    offset: int | None = None,
    ingested_ms: int = 0,
    redact_policy: RedactPolicy = "none",
    truncate_chars: int = 200,
    embedding: list[float] | None = None,
) -> dict:
    """The `events` row for a parsed request; redaction applies to prompt and response text."""
    prompt = event.prompt_text
    params = event.params.model_dump(exclude_none=True)
    return {
        "request_id": event.request_id,
        "account_id": event.account_id,
        "event_time": event.timestamp_ms // 1000,
        "event_ms": event.timestamp_ms,
        "model": event.model or "",
        "endpoint": event.endpoint or "",
        "prompt_hash": event.prompt_hash,
        "prompt_text": redact(prompt, redact_policy, truncate_chars),
        "prompt_chars": len(prompt),
        "turn_count": min(event.turn_count, 65535),
        "response_text": redact(event.response or "", redact_policy, truncate_chars),
        "prompt_tokens": event.prompt_tokens,
        "completion_tokens": event.completion_tokens,
        "params_json": _json(params),
        "client_ip": event.client.ip or "",
        "user_agent": event.client.user_agent or "",
        "api_key_id": event.client.api_key_id or "",
        "org_id": event.client.org_id or "",
        "extra_json": _json(event.extra_fields),
        "embedding": embedding or [],
        "source": source,
        "source_offset": -1 if offset is None else offset,
        "ingested_ms": ingested_ms,
        "content_hash": event.content_hash,
        "version": event_version(ingested_ms),
    }


def stored_event(row: Mapping[str, Any]) -> Event | None:
    """The request an `events` row records, as far as the row keeps it: the prompt is the last
    user turn (earlier turns are stored only as a count, so they come back empty), and text
    hashed at ingest cannot come back at all (None). Benign evidence for calibration."""
    prompt = row["prompt_text"]
    if prompt.startswith("sha256:"):
        return None
    turns = max(int(row.get("turn_count") or 1), 1)
    earlier = [{"role": "user", "content": ""}] * (turns - 1)
    client = {
        "ip": row.get("client_ip") or None,
        "user_agent": row.get("user_agent") or None,
        "api_key_id": row.get("api_key_id") or None,
        "org_id": row.get("org_id") or None,
    }
    return Event.model_validate(
        {
            **orjson.loads(row.get("extra_json") or "{}"),
            "request_id": row["request_id"],
            "account_id": row["account_id"],
            "timestamp": row["event_ms"],
            **(
                {"messages": [*earlier, {"role": "user", "content": prompt}]}
                if earlier
                else {"prompt": prompt}
            ),
            "response": row.get("response_text") or None,
            "model": row.get("model") or None,
            "endpoint": row.get("endpoint") or None,
            "prompt_tokens": row.get("prompt_tokens"),
            "completion_tokens": row.get("completion_tokens"),
            "params": orjson.loads(row.get("params_json") or "{}"),
            "client": {k: v for k, v in client.items() if v is not None},
        }
    )


def storable_event_row(event: Event) -> dict:
    """The event's row (unredacted: redaction only shortens text), or a `ValueError` saying which
    value the `events` table cannot hold: the pipeline checks this before an event is taken in,
    so the rows a sink writes later are known to fit."""
    try:
        row = event_row(event)
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        raise ValueError(f"row: {exc}") from exc
    problem = EVENTS.row_problem(row)
    if problem is not None:
        raise ValueError(problem)
    return row


def dead_letter_row(letter: DeadLetter) -> dict:
    """The `dead_letters` row: reason plus the original bytes (base64 when not UTF-8)."""
    return {
        "dead_letter_id": letter.dead_letter_id,
        "request_id": letter.request_id or "",
        "reason": letter.reason,
        "raw": letter.raw,
        "raw_encoding": letter.raw_encoding,
        "source": letter.source,
        "source_offset": -1 if letter.offset is None else letter.offset,
        "received_time": letter.received_at,
        "received_ms": int(letter.received_at.timestamp() * 1000),
    }


def verdict_row(verdict: Verdict) -> dict:
    """The `verdicts` row; reasons are stored as JSON (18.16 has no JSON type)."""
    return {
        "verdict_id": verdict.verdict_id,
        "account_id": verdict.account_id,
        "cluster_id": verdict.cluster_id or "",
        "verdict_time": verdict.timestamp,
        "verdict_ms": int(verdict.timestamp.timestamp() * 1000),
        "requests_seen": verdict.requests_seen,
        "score": verdict.score,
        "label": verdict.label,
        "reasons_json": _json([r.model_dump(mode="json") for r in verdict.reasons]),
        "detector_version": verdict.detector_version,
    }


def ingested_event_row(
    item: IngestedEvent, redact_policy: RedactPolicy = "none", truncate_chars: int = 200
) -> dict:
    """The `events` row of an event the pipeline took in (source position, embedding)."""
    return event_row(
        item.event,
        item.record.stream,
        item.record.offset,
        item.ingested_ms,
        redact_policy,
        truncate_chars,
        item.embedding,
    )


def fingerprint_row(fingerprint: ResponseFingerprint) -> dict:
    """The `response_fingerprints` row: the MinHash signature as `Array(UInt64)`."""
    return {
        "request_id": fingerprint.request_id,
        "account_id": fingerprint.account_id,
        "event_time": fingerprint.timestamp_ms // 1000,
        "response_hash": fingerprint.response_hash,
        "minhash": list(fingerprint.minhash),
    }


def account_state_row(state: AccountState) -> dict:
    """The `account_state` row: a detector's checkpoint for one account (latest version wins)."""
    return {
        "account_id": state.account_id,
        "detector": state.detector,
        "requests_seen": state.requests_seen,
        "state_json": _json(state.state),
        "updated_ms": state.updated_ms,
        "version": state.updated_ms,
    }


def cluster_row(cluster: ClusterVerdict) -> dict:
    """The `clusters` row of a scored campaign, versioned so the latest write wins."""
    return {
        "cluster_id": cluster.cluster_id,
        "updated_time": cluster.updated,
        "members": cluster.members,
        "score": cluster.score,
        "label": cluster.label,
        "evidence_json": _json(cluster.evidence),
        "version": time.time_ns() // 1000,
    }
