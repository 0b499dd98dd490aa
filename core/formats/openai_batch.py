"""The OpenAI Batch API's input file (one request per line: `custom_id`, `method`, `url`,
`body`; https://platform.openai.com/docs/api-reference/batch/request-input) as schema v1.

A batch line names neither the account nor a time, so both come from whoever submits the file:
- the account is given (`--account`, `account=`): a batch file is one customer's upload;
- every line's timestamp is the batch's start: `--start` (`start=`) when given, else the file's
  modification time (`replay`, `score`, `produce`) or the moment the API received the body
  (`POST /v1/events`). A batch is submitted at once, so its requests share that instant.
- `request_id` is `ACCOUNT:START_MS:CUSTOM_ID`: `custom_id` is unique only inside one batch
  (files reuse "request-1"), and the same file read again with the same start gives the same ids
  (idempotent), while another batch of the same account (another start) gets new ones.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr

from core.events import Unmappable
from core.formats.common import prompt_text

# Fields of a request body that are the request itself, not a generation setting.
CONTENT = frozenset({"messages", "prompt", "input", "model"})


class BatchRequest(BaseModel):
    """One line of a batch input file."""

    model_config = ConfigDict(extra="ignore")

    custom_id: StrictStr = Field(min_length=1)
    method: Literal["POST"] = "POST"
    url: Literal["/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses"]
    body: dict[str, Any]


def _request(url: str, body: dict[str, Any]) -> dict[str, Any]:
    """The prompt side of a body, by endpoint."""
    if url == "/v1/chat/completions":
        if not isinstance(body.get("messages"), list):
            raise Unmappable("body.messages: a chat completion needs a list of messages")
        return {"messages": body["messages"]}
    if url == "/v1/responses" and isinstance(body.get("input"), list):
        return {"messages": body["input"]}
    key = "prompt" if url == "/v1/completions" else "input"
    return {"prompt": prompt_text(body.get(key), f"body.{key}")}


class OpenAIBatch:
    """`--format openai-batch --account ID [--start T]`."""

    name = "openai-batch"
    origin = {
        "request_id": "custom_id",
        "messages": "body.messages | body.input",
        "prompt": "body.prompt | body.input",
        "model": "body.model",
        "endpoint": "url",
        "params": "body",
    }

    def __init__(self, account: str, start: datetime) -> None:
        self.account = account
        self.start_ms = int(start.timestamp() * 1000)

    def map(self, document: dict[str, Any]) -> dict[str, Any]:
        line = BatchRequest.model_validate(document)
        return {
            "request_id": f"{self.account}:{self.start_ms}:{line.custom_id}",
            "account_id": self.account,
            "timestamp": self.start_ms,
            **_request(line.url, line.body),
            "model": line.body.get("model"),
            "endpoint": line.url,
            "params": {k: v for k, v in line.body.items() if k not in CONTENT},
            "custom_id": line.custom_id,
        }
