"""What the gateway adapters share: the adapter shape, and the small conversions every foreign
log needs (epoch units, OpenAI-style endpoints, text out of content parts)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from core.events import Unmappable

# An operation or call type as the schema's `endpoint`: the OpenAI-style route it stands for.
ENDPOINTS = {
    "chat": "/v1/chat/completions",
    "completion": "/v1/chat/completions",
    "acompletion": "/v1/chat/completions",
    "text_completion": "/v1/completions",
    "atext_completion": "/v1/completions",
    "embeddings": "/v1/embeddings",
    "embedding": "/v1/embeddings",
    "aembedding": "/v1/embeddings",
    "responses": "/v1/responses",
    "aresponses": "/v1/responses",
}


def endpoint_of(operation: str | None) -> str | None:
    """The route an operation name stands for, or the name itself when it has none."""
    if not operation:
        return None
    return ENDPOINTS.get(operation, operation)


def epoch_ms(value: Any, unit: str, field: str) -> int:
    """A number of `unit`s since the epoch ("s", "ms", "ns"; a numeric string too, as OTLP JSON
    writes 64-bit integers) as epoch milliseconds, which the schema's `timestamp` takes."""
    if isinstance(value, str):
        try:
            value = float(value) if unit == "s" else int(value)
        except ValueError:
            raise Unmappable(f"{field}: expected a number of {unit} since the epoch") from None
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise Unmappable(f"{field}: expected a number of {unit} since the epoch")
    if unit == "s":
        return round(value * 1000)
    if unit == "ns":
        return int(value) // 1_000_000
    return int(value)


def present(fields: dict[str, Any]) -> dict[str, Any]:
    """`fields` without the absent (None) ones: a payload that omits a setting sets nothing."""
    return {key: value for key, value in fields.items() if value is not None}


def prompt_text(value: Any, field: str) -> str:
    """A bare prompt: a string, or a list of strings (embedding inputs) one per line."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(item, str) for item in value):
        return "\n".join(value)
    raise Unmappable(f"{field}: expected a prompt string or a list of strings")


class Adapter(Protocol):
    """One foreign log shape: `map` returns the schema-v1 fields of one of its documents (None
    for absent ones) or raises `Unmappable` / a pydantic `ValidationError` naming the field."""

    @property
    def name(self) -> str: ...

    @property
    def origin(self) -> Mapping[str, str]:
        """Schema-v1 field -> where `map` reads it (for dead letters)."""
        ...

    def map(self, document: dict[str, Any]) -> dict[str, Any]: ...
