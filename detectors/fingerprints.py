"""Response fingerprints: a MinHash of each logged response, so a suspect model's outputs can be
traced back to the accounts that received the text it learned from (`provenance.attribution`).

A fingerprint is the MinHash of the response's lowercase word 3-grams: edits, truncation and
reformatting keep most 3-grams, so the estimated Jaccard similarity of an edited copy stays high,
while unrelated texts share almost none. Signatures are computed with datasketch's `MinHash`
with a fixed seed and an explicitly named permutation scheme, so the same text gives the same
signature in every process and on every machine (stored signatures stay comparable).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

import numpy as np
from datasketch import MinHash

from core.batch import ResponseFingerprint
from core.events import Event

NUM_PERM = 64
SHINGLE_WORDS = 3
SEED = 1
# datasketch >= 2.0 has several permutation schemes and refuses to rebuild a MinHash from stored
# values without being told which one made them; naming it keeps stored signatures comparable
# if the library's default ever changes. affine64 values fill the `Array(UInt64)` column.
SCHEME = "affine64"
_WORD = re.compile(r"\w+")
_TEMPLATE = MinHash(num_perm=NUM_PERM, seed=SEED, scheme=SCHEME)
# The permutations depend only on (seed, num_perm, scheme): share one copy instead of drawing
# them again for every signature (a third of the cost of a fresh MinHash).
PERMUTATIONS = _TEMPLATE.permutations


def shingles(text: str) -> set[bytes]:
    """Lowercase word 3-grams of `text` (a shorter text is one shingle; empty text none)."""
    words = _WORD.findall(text.lower())
    if len(words) < SHINGLE_WORDS:
        return {" ".join(words).encode("utf-8", "surrogatepass")} if words else set()
    return {
        " ".join(words[i : i + SHINGLE_WORDS]).encode("utf-8", "surrogatepass")
        for i in range(len(words) - SHINGLE_WORDS + 1)
    }


def minhash(hashvalues: Iterable[int] | np.ndarray | None = None) -> MinHash:
    """A MinHash of our parameters: empty, or rebuilt from a stored signature."""
    values = None
    if hashvalues is not None:
        values = np.asarray(
            hashvalues if isinstance(hashvalues, np.ndarray) else list(hashvalues), np.uint64
        )
    return MinHash(
        num_perm=NUM_PERM,
        seed=SEED,
        scheme=SCHEME,
        hashvalues=values,
        permutations=PERMUTATIONS,
    )


def signature(text: str) -> np.ndarray:
    """The `NUM_PERM` uint64 MinHash values of `text`'s shingles (all max values when empty)."""
    sketch = minhash()
    sketch.update_batch(shingles(text))
    return sketch.hashvalues.astype(np.uint64, copy=True)


def response_fingerprints(events: Iterable[Event]) -> list[ResponseFingerprint]:
    """One fingerprint per event with a non-blank response.

    Computed from the raw response at ingest, before the `events` row redacts prompt and response
    text: attribution keeps working when the store only holds hashed or truncated text.
    """
    fingerprints = []
    for event in events:
        response = event.response
        if response is None or not response.strip():
            continue
        fingerprints.append(
            ResponseFingerprint(
                request_id=event.request_id,
                account_id=event.account_id,
                timestamp_ms=event.timestamp_ms,
                response_hash=hashlib.sha256(response.encode("utf-8", "surrogatepass")).hexdigest(),
                minhash=tuple(int(v) for v in signature(response)),
            )
        )
    return fingerprints
