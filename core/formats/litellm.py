"""LiteLLM's `StandardLoggingPayload` (what the proxy hands every logging callback, one per
request; `litellm/types/utils.py`, class StandardLoggingPayload) as schema v1.

The account is the LiteLLM user the virtual key belongs to (`metadata.user_api_key_user_id`),
else the key's team, else the key itself (`metadata.user_api_key_hash`): the proxy's own units
of spend. `end_user` (the caller's own customer, set by the client) is kept as an extra field.
Only the fields mapped here are checked; the rest of the payload is not needed and not kept.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr

from core.events import Unmappable
from core.formats.common import endpoint_of, epoch_ms, present, prompt_text

ACCOUNT_KEYS = ("user_api_key_user_id", "user_api_key_team_id", "user_api_key_hash")
Tolerant = ConfigDict(extra="ignore")


class LiteLLMMetadata(BaseModel):
    """`StandardLoggingMetadata` (it extends `StandardLoggingUserAPIKeyMetadata`)."""

    model_config = Tolerant

    user_api_key_hash: StrictStr | None = None
    user_api_key_user_id: StrictStr | None = None
    user_api_key_team_id: StrictStr | None = None
    user_api_key_org_id: StrictStr | None = None
    user_api_key_request_route: StrictStr | None = None
    requester_ip_address: StrictStr | None = None
    user_agent: StrictStr | None = None


class StandardLoggingPayload(BaseModel):
    """The fields of LiteLLM's payload that DistillGuard reads (names as LiteLLM spells them)."""

    model_config = Tolerant

    id: StrictStr = Field(min_length=1)
    call_type: StrictStr = ""
    status: StrictStr | None = None
    startTime: StrictFloat | StrictInt  # unix seconds  # noqa: N815 - LiteLLM's name
    model: StrictStr | None = None
    metadata: LiteLLMMetadata
    messages: StrictStr | list[Any] | dict[str, Any] | None = None
    response: StrictStr | list[Any] | dict[str, Any] | None = None
    prompt_tokens: StrictInt | None = None
    completion_tokens: StrictInt | None = None
    model_parameters: dict[str, Any] = Field(default_factory=dict)
    end_user: StrictStr | None = None
    requester_ip_address: StrictStr | None = None
    user_agent: StrictStr | None = None


def _request(messages: Any) -> dict[str, Any]:
    """`messages` (chat turns) or `prompt` (a text completion's or an embedding's input)."""
    if isinstance(messages, dict) and isinstance(messages.get("messages"), list):
        messages = messages["messages"]
    if isinstance(messages, list) and messages and all(isinstance(m, dict) for m in messages):
        return {"messages": messages}
    return {"prompt": prompt_text(messages, "messages")}


def _answer(response: Any) -> str | None:
    """The first choice's text of an OpenAI-style response object (chat or text completion)."""
    if isinstance(response, str):
        return response
    if not isinstance(response, dict):
        return None
    choices = response.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return None
    message = choices[0].get("message")
    content = message.get("content") if isinstance(message, dict) else choices[0].get("text")
    return content if isinstance(content, str) else None


class LiteLLM:
    """`--format litellm`: one `StandardLoggingPayload` per line."""

    name = "litellm"
    origin = {
        "request_id": "id",
        "account_id": "metadata." + " | metadata.".join(ACCOUNT_KEYS),
        "timestamp": "startTime",
        "messages": "messages",
        "prompt": "messages",
        "response": "response",
        "model": "model",
        "endpoint": "call_type",
        "prompt_tokens": "prompt_tokens",
        "completion_tokens": "completion_tokens",
        "params": "model_parameters",
        "client": "requester_ip_address, user_agent, metadata",
    }

    def map(self, document: dict[str, Any]) -> dict[str, Any]:
        payload = StandardLoggingPayload.model_validate(document)
        meta = payload.metadata
        if payload.messages is None:
            raise Unmappable("messages: the request is not logged (turn_off_message_logging?)")
        return {
            "request_id": payload.id,
            "account_id": next((getattr(meta, k) for k in ACCOUNT_KEYS if getattr(meta, k)), None),
            "timestamp": epoch_ms(payload.startTime, "s", "startTime"),
            **_request(payload.messages),
            "response": _answer(payload.response),
            "model": payload.model,
            "endpoint": meta.user_api_key_request_route or endpoint_of(payload.call_type),
            "prompt_tokens": payload.prompt_tokens,
            "completion_tokens": payload.completion_tokens,
            "params": payload.model_parameters,
            "client": present(
                {
                    "ip": payload.requester_ip_address or meta.requester_ip_address,
                    "user_agent": payload.user_agent or meta.user_agent,
                    "api_key_id": meta.user_api_key_hash,
                    "org_id": meta.user_api_key_org_id or meta.user_api_key_team_id,
                }
            ),
            "end_user": payload.end_user,
            "status": payload.status,
        }
