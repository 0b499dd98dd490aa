"""The real teacher behind the OpenAI-compatible gateway; every exchange becomes a valid event."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient

from core.events import Event, parse_event
from students.gateway import JsonlEventLog, create_gateway
from students.teacher import GenerationSettings, Teacher
from tests.conftest import TEACHER_DIR

pytestmark = pytest.mark.models


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> Teacher:
    cache = TEACHER_DIR  # the dequantised copy is reused across runs
    model_cache = tmp_path_factory.mktemp("responses")
    instance = Teacher(cache)
    instance.cache = type(instance.cache)(model_cache / "responses.sqlite")  # fresh response cache
    return instance


def test_greedy_answers_are_coherent_deterministic_and_cached(teacher: Teacher) -> None:
    settings = GenerationSettings(temperature=0.0, max_tokens=24)
    conversation = [{"role": "user", "content": "What is the capital of France?"}]
    (first,) = teacher.complete([conversation], settings)
    assert "Paris" in first[0].text
    assert 0 < first[0].completion_tokens <= 24 and first[0].prompt_tokens > 5
    (again,) = teacher.complete([conversation], settings)
    assert again[0].text == first[0].text


def test_logprobs_and_n(teacher: Teacher) -> None:
    settings = GenerationSettings(
        temperature=0.9, max_tokens=12, n=2, logprobs=True, top_logprobs=3, seed=3
    )
    (choices,) = teacher.complete([[{"role": "user", "content": "Name a colour."}]], settings)
    assert len(choices) == 2
    for choice in choices:
        assert choice.logprobs is not None and len(choice.logprobs) == choice.completion_tokens
        first = choice.logprobs[0]
        assert first["logprob"] <= 0 and len(first["top_logprobs"]) == 3
        assert first["top_logprobs"][0]["logprob"] >= first["logprob"]


def test_gateway_answers_and_logs_a_schema_v1_event(teacher: Teacher, tmp_path: Path) -> None:
    log_path = tmp_path / "gateway.jsonl"
    with TestClient(create_gateway(teacher, JsonlEventLog(log_path))) as client:
        hello = {"messages": [{"role": "user", "content": "Say hello."}]}
        assert client.post("/v1/chat/completions", json=hello).status_code == 401
        assert (
            client.post(
                "/v1/chat/completions",
                json={"messages": []},
                headers={"Authorization": "Bearer sk-a"},
            ).status_code
            == 422
        )
        reply = client.post(
            "/v1/chat/completions",
            headers={
                "Authorization": "Bearer sk-acct-42",
                "X-DG-Simulated-Time": "1795773600000",
                "X-Forwarded-For": "203.0.113.9",
                "User-Agent": "harvester/1.0",
            },
            json={
                "messages": [{"role": "user", "content": "Say hello."}],
                "temperature": 0,
                "max_tokens": 16,
                "logprobs": True,
                "top_logprobs": 2,
            },
        )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["object"] == "chat.completion" and body["choices"][0]["message"]["content"]
    assert body["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
    (line,) = log_path.read_bytes().splitlines()
    event = parse_event(line, "file:gateway.jsonl")
    assert isinstance(event, Event)
    assert event.account_id == "acct-42" and event.request_id == body["id"]
    assert event.timestamp_ms == 1795773600000
    assert event.response == body["choices"][0]["message"]["content"]
    assert event.params.temperature == 0 and event.params.logprobs is True
    assert event.client.ip == "203.0.113.9" and event.client.user_agent == "harvester/1.0"
    assert orjson.loads(line)["completion_tokens"] == body["usage"]["completion_tokens"]
