"""The teacher behind an OpenAI-compatible API, logging every exchange like a provider's gateway.

`POST /v1/chat/completions` takes the usual body (model, messages, temperature, max_tokens, n,
logprobs, top_logprobs, seed). The bearer key names the account (`sk-<account_id>`), as a
provider's key registry would. Each request becomes an event (schema v1), with the response, to
Kafka or a JSONL file. Simulated traffic may set `X-DG-Simulated-Time` (epoch ms) so weeks of
activity run in minutes; `X-Forwarded-For` and `User-Agent` become the event's client fields.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import orjson
from fastapi import FastAPI, Header, HTTPException, Request
from pydantic import BaseModel, Field

from students.teacher import MODEL_NAME, GenerationSettings, Teacher

if TYPE_CHECKING:
    from streaming.kafka import Kafka


class ChatMessage(BaseModel):
    role: str
    content: str


class ChatRequest(BaseModel):
    """The subset of OpenAI's chat-completions body the teacher honours."""

    model: str = MODEL_NAME
    messages: list[ChatMessage] = Field(min_length=1)
    temperature: float = Field(default=0.7, ge=0.0, le=2.0)
    max_tokens: int = Field(default=128, ge=1, le=1024)
    n: int = Field(default=1, ge=1, le=8)
    logprobs: bool = False
    top_logprobs: int = Field(default=0, ge=0, le=20)
    seed: int = 0


class EventLog(Protocol):
    """Where the gateway writes request events (a Kafka topic or a JSONL file)."""

    def write(self, event: dict[str, Any]) -> None: ...
    def close(self) -> None: ...


class JsonlEventLog:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = path.open("ab")
        self._lock = threading.Lock()

    def write(self, event: dict[str, Any]) -> None:
        with self._lock:
            self._handle.write(orjson.dumps(event) + b"\n")
            self._handle.flush()

    def close(self) -> None:
        self._handle.close()


class KafkaEventLog:
    def __init__(self, kafka: Kafka, topic: str) -> None:
        from streaming.kafka import make_producer

        self._producer = make_producer(kafka)
        self.topic = topic

    def write(self, event: dict[str, Any]) -> None:
        self._producer.send(self.topic, key=event["account_id"].encode(), value=orjson.dumps(event))

    def close(self) -> None:
        self._producer.flush()
        self._producer.close()


def account_for_key(authorization: str | None) -> str:
    """The account behind an API key: `Bearer sk-<account_id>`."""
    if not authorization or not authorization.startswith("Bearer sk-"):
        raise HTTPException(401, detail={"error": "missing or malformed API key"})
    account = authorization.removeprefix("Bearer sk-").strip()
    if not account:
        raise HTTPException(401, detail={"error": "missing or malformed API key"})
    return account


class Gateway:
    """The provider's side of one request: generate with the teacher, log the event, answer.

    The HTTP route and the companion's traffic driver both call `handle`, so simulated users and
    attackers go through exactly the path a real client would.
    """

    def __init__(self, teacher: Teacher, log: EventLog) -> None:
        self.teacher = teacher
        self.log = log

    def handle(
        self,
        account: str,
        body: ChatRequest,
        client_ip: str = "",
        user_agent: str = "",
        simulated_ms: int | None = None,
    ) -> dict[str, Any]:
        messages = [m.model_dump() for m in body.messages]
        settings = GenerationSettings(
            body.temperature, body.max_tokens, body.n, body.logprobs, body.top_logprobs, body.seed
        )
        (choices,) = self.teacher.complete([messages], settings)
        created_ms = simulated_ms or int(time.time() * 1000)
        request_id = f"chatcmpl-{uuid.uuid4().hex}"
        completion_tokens = sum(c.completion_tokens for c in choices)
        self.log.write(
            {
                "request_id": request_id,
                "account_id": account,
                "timestamp": created_ms,
                "messages": messages,
                "response": choices[0].text,
                "model": body.model,
                "endpoint": "/v1/chat/completions",
                "prompt_tokens": choices[0].prompt_tokens,
                "completion_tokens": completion_tokens,
                "params": {
                    "temperature": body.temperature,
                    "max_tokens": body.max_tokens,
                    "n": body.n,
                    "logprobs": body.logprobs,
                    "top_logprobs": body.top_logprobs,
                    "seed": body.seed,
                },
                "client": {
                    "ip": client_ip,
                    "user_agent": user_agent,
                    "api_key_id": f"key-{account}",
                },
            }
        )
        return {
            "id": request_id,
            "object": "chat.completion",
            "created": created_ms // 1000,
            "model": body.model,
            "choices": [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": c.text},
                    "finish_reason": c.finish_reason,
                    "logprobs": {"content": c.logprobs} if c.logprobs is not None else None,
                }
                for i, c in enumerate(choices)
            ],
            "usage": {
                "prompt_tokens": choices[0].prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": choices[0].prompt_tokens + completion_tokens,
            },
        }


def create_gateway(teacher: Teacher, log: EventLog) -> FastAPI:
    gateway = Gateway(teacher, log)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        log.close()

    app = FastAPI(title="DistillGuard companion teacher (OpenAI-compatible)", lifespan=lifespan)

    @app.get("/healthz")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/chat/completions")
    def chat(
        body: ChatRequest,
        request: Request,
        authorization: str | None = Header(default=None),
        x_dg_simulated_time: int | None = Header(default=None),
        x_forwarded_for: str | None = Header(default=None),
        user_agent: str | None = Header(default=None),
    ) -> dict[str, Any]:
        client_ip = (x_forwarded_for or "").split(",")[0].strip() or (
            request.client.host if request.client else ""
        )
        return gateway.handle(
            account_for_key(authorization), body, client_ip, user_agent or "", x_dg_simulated_time
        )

    return app
