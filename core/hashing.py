"""The one prompt hash: stored as `prompt_hash`, shortened for in-memory keys; and the content
hash that tells an identical resend of an event from a conflicting one.

Reports quote the full SHA-256 so an analyst can re-hash a prompt and match it; detectors and
the embedding cache use its first 16 hex characters, which are enough to tell repeats apart.

>>> prompt_hash("hello")[:12]
'2cf24dba5fb0'
>>> prompt_key("hello")
'2cf24dba5fb0a30e'
"""

from __future__ import annotations

import hashlib

import orjson

PROMPT_KEY_CHARS = 16


def prompt_hash(text: str) -> str:
    """SHA-256 of the prompt text (hex); lone surrogates are hashed, not rejected."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def prompt_key(text: str) -> str:
    """Short form of `prompt_hash`: exact-repeat detection and cache keys."""
    return prompt_hash(text)[:PROMPT_KEY_CHARS]


def content_hash(document: object) -> str:
    """SHA-256 (hex) of the canonical JSON of a JSON-ready value: keys sorted at every level, so
    the same content hashes the same however its sender ordered or spaced it.

    >>> content_hash({"b": 1, "a": [2]}) == content_hash({"a": [2], "b": 1})
    True
    """
    return hashlib.sha256(orjson.dumps(document, option=orjson.OPT_SORT_KEYS)).hexdigest()
