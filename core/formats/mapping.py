"""A declarative field mapping (TOML) for any other JSON request log:
`--format mapping:PATH`. Each key of `[fields]` is a schema-v1 field (dotted for nested ones:
`params.temperature`, `client.ip`; any other name is kept as an extra field), each value where
to read it:

    [fields]
    request_id = "req.id"                                 # a dotted path; numbers index lists
    account_id = { path = "auth.customer", transform = "string" }
    timestamp = { path = "ts", transform = "unix-seconds" }
    messages = { path = "input", transform = "json" }     # a JSON string holding the value
    endpoint = { const = "/v1/chat/completions" }         # the same for every line
    "client.ip" = { path = ["headers", "x.forwarded.for"] }  # a list: keys with dots

Transforms: `unix-seconds`, `unix-ms`, `unix-ns` (epoch numbers), `iso` (an RFC3339 string),
`string` (a string or number as text), `json` (parse a JSON string). A path that is absent
leaves the field out (`default = ...` fills it instead); the schema then says whether it was
required, and the dead letter names the field and its path.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, StrictStr, ValidationError, model_validator

from core.events import Unmappable, describe_validation_error
from core.formats.common import epoch_ms

Transform = Literal["unix-seconds", "unix-ms", "unix-ns", "iso", "string", "json"]
UNITS = {"unix-seconds": "s", "unix-ms": "ms", "unix-ns": "ns"}
_ABSENT = object()


class Rule(BaseModel):
    """Where one schema field comes from: a `path` (with a `transform`) or a `const`."""

    model_config = ConfigDict(extra="forbid")

    path: StrictStr | list[StrictStr] | None = None
    const: Any = None
    transform: Transform | None = None
    default: Any = None

    @model_validator(mode="after")
    def _one_source(self) -> Rule:
        if (self.path is None) == (self.const is None):
            raise ValueError("give exactly one of `path` or `const`")
        return self

    @property
    def keys(self) -> list[str]:
        if self.path is None:
            return []
        return self.path.split(".") if isinstance(self.path, str) else self.path

    @property
    def where(self) -> str:
        return "const" if self.path is None else ".".join(self.keys)


class MappingFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    fields: dict[str, Rule | StrictStr]

    @model_validator(mode="after")
    def _needs_fields(self) -> MappingFile:
        if not self.fields:
            raise ValueError("[fields] maps no field")
        return self


def _read(document: Any, keys: list[str]) -> Any:
    """The value at `keys` (a number indexes a list), or `_ABSENT`."""
    value = document
    for key in keys:
        if isinstance(value, dict) and key in value:
            value = value[key]
        elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            return _ABSENT
    return value


def _transformed(value: Any, transform: Transform | None, where: str) -> Any:
    if transform in UNITS:
        return epoch_ms(value, UNITS[transform], where)
    if transform == "iso" and not isinstance(value, str):
        raise Unmappable(f"{where}: expected an RFC3339 string, got {type(value).__name__}")
    if transform == "string":
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise Unmappable(f"{where}: expected a string or a number, got {type(value).__name__}")
        return str(value)
    if transform == "json":
        if not isinstance(value, str):
            raise Unmappable(f"{where}: expected a JSON string, got {type(value).__name__}")
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise Unmappable(f"{where}: not JSON: {exc}") from None
    return value


class FieldMapping:
    """`--format mapping:PATH`: the rules of a mapping file."""

    def __init__(self, path: Path) -> None:
        try:
            parsed = MappingFile.model_validate(tomllib.loads(path.read_text("utf-8")))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ValueError(f"mapping file {path}: {exc}") from exc
        except ValidationError as exc:
            raise ValueError(f"mapping file {path}: {describe_validation_error(exc)}") from exc
        self.name = f"mapping:{path.name}"
        self.rules = {
            target: Rule(path=rule) if isinstance(rule, str) else rule
            for target, rule in parsed.fields.items()
        }
        self.origin = {target: rule.where for target, rule in self.rules.items()}

    def map(self, document: dict[str, Any]) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        for target, rule in self.rules.items():
            if rule.path is None:
                value = rule.const
            else:
                value = _read(document, rule.keys)
                if value is _ABSENT or value is None:
                    if rule.default is None:
                        continue
                    value = rule.default
                else:
                    value = _transformed(value, rule.transform, f"{target} ({rule.where})")
            *parents, leaf = target.split(".")
            place = fields
            for parent in parents:
                place = place.setdefault(parent, {})
            place[leaf] = value
        return fields
