"""What the detectors know about one request: cheap features for every event.

`featurize` turns a batch of events into `EventFeatures` in one vectorised pass (SimHash of word
shingles through scikit-learn's hashing vectoriser and one sparse matrix product), so the cheap
tier keeps up with the stream; the neural embedding is filled in later, only for the events the
tiered policy chooses (`detectors/embedding.py`).
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Generic, TypeVar

import numpy as np

from core.events import Event
from core.hashing import prompt_key

SIMHASH_BITS = 64
_HASH_FEATURES = 2**16
_PROJECTION_SEED = 20261128
PROMPT_CHARS = 2000  # longer prompts are cut for hashing and embedding
EVIDENCE_CHARS = 240  # prompt snippet kept in checkpoints as evidence
MEMO_PROMPTS = 32_768  # distinct recent prompts whose per-prompt features are remembered

T = TypeVar("T")


@dataclass(slots=True)
class EventFeatures:
    """One request, reduced to what the signals read. JSON-friendly except `embedding`."""

    request_id: str
    account_id: str
    timestamp_ms: int
    prompt: str
    prompt_key: str  # 16 hex chars of the prompt's hash: exact repeats, embedding cache
    simhash: int  # 64-bit SimHash of word 1-2-grams: near-duplicates and templates
    temperature: float | None
    max_tokens: int | None
    n: int
    logprobs: bool
    followup: bool  # carries earlier turns of a conversation
    ip_prefix: str  # /24 (IPv4) or /48 (IPv6); "" when absent
    user_agent: str
    reasoning: float = 0.0  # P(the prompt asks for the model's reasoning)
    language: str = "und"
    opening: str = ""  # skeleton key of how the prompt opens ("" when it says nothing)
    embedding: np.ndarray | None = None  # 384-d unit vector, neural tier only
    conversation: str = ""  # key of the request's whole message history (`conversation_keys`)
    continues: str = ""  # key of the history whose tool calls it answers ("" when none)
    folded: bool = False  # a tool loop's next step (`AccountWindow.fold`): not a new prompt

    def to_state(self) -> dict:
        """Compact JSON form for `account_state` (prompt cut to an evidence snippet)."""
        state = {
            "r": self.request_id,
            "t": self.timestamp_ms,
            "p": self.prompt[:EVIDENCE_CHARS],
            "k": self.prompt_key,
            "h": str(self.simhash),
            "T": self.temperature,
            "M": self.max_tokens,
            "n": self.n,
            "l": self.logprobs,
            "f": self.followup,
            "i": self.ip_prefix,
            "u": self.user_agent,
            "q": round(self.reasoning, 3),
            "g": self.language,
            "o": self.opening,
        }
        if self.embedding is not None:
            quantised = np.clip(np.round(self.embedding * 127), -127, 127).astype(np.int8)
            state["e"] = base64.b64encode(quantised.tobytes()).decode()
        return state

    @classmethod
    def from_state(cls, account_id: str, state: dict) -> EventFeatures:
        embedding = None
        if "e" in state:
            raw = np.frombuffer(base64.b64decode(state["e"]), np.int8).astype(np.float32)
            embedding = raw / max(float(np.linalg.norm(raw)), 1e-9)
        return cls(
            request_id=state["r"],
            account_id=account_id,
            timestamp_ms=state["t"],
            prompt=state["p"],
            prompt_key=state["k"],
            simhash=int(state["h"]),
            temperature=state["T"],
            max_tokens=state["M"],
            n=state["n"],
            logprobs=state["l"],
            followup=state["f"],
            ip_prefix=state["i"],
            user_agent=state["u"],
            reasoning=state["q"],
            language=state["g"],
            opening=state.get("o", ""),  # absent from states saved before the signal
            embedding=embedding,
        )


TOOL_ROLES = frozenset({"tool", "function"})  # messages that carry a tool's result back


def conversation_keys(event: Event) -> tuple[str, str]:
    """Keys of the request's message history and of the history it continues: an agent that
    runs the tools a response called sends the same history again with the assistant's call and
    the tools' results appended, so a request that ends in tool results continues the history
    before its last assistant turn. ("", "") for a bare prompt; no continued history otherwise.

    >>> def request(*messages):
    ...     return Event.model_validate({"request_id": "1", "account_id": "a", "timestamp": 1.8e12,
    ...         "messages": [{"role": role, "content": text} for role, text in messages]})
    >>> first = request(("user", "Weather in Oslo?"))
    >>> step = request(("user", "Weather in Oslo?"), ("assistant", None), ("tool", "4 C"))
    >>> conversation_keys(step)[1] == conversation_keys(first)[0] != ""
    True
    >>> conversation_keys(first)[1], conversation_keys(request(*[("user", "Hi")] * 2))[1]
    ('', '')
    """
    messages = event.messages
    if not messages:
        return "", ""
    last_assistant = max((i for i, m in enumerate(messages) if m.role == "assistant"), default=None)
    history, continued = hashlib.blake2b(digest_size=8), ""
    for index, message in enumerate(messages):
        if index == last_assistant and messages[-1].role in TOOL_ROLES:
            continued = history.hexdigest()
        history.update(f"{message.role}\x1f{message.text}\x1e".encode())
    return history.hexdigest(), continued


@lru_cache(maxsize=65_536)
def ip_prefix(ip: str | None) -> str:
    """The network a client address belongs to: campaigns rotate hosts inside one prefix."""
    if not ip:
        return ""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ""
    length = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{length}", strict=False))


class SimHasher:
    """Charikar SimHash: signs of a fixed random projection of hashed word 1-2-gram counts.

    Prompts that share most of their words (one template, different fillers) land a few bits
    apart; unrelated prompts differ in about half of the bits.

    >>> hasher = SimHasher()
    >>> a, b, c = hasher(["Explain photosynthesis in detail please.",
    ...                   "Explain mitochondria in detail please.",
    ...                   "Write a haiku about the sea"])
    >>> hamming(a, b) < hamming(a, c)
    True
    """

    def __init__(self, bits: int = SIMHASH_BITS) -> None:
        from sklearn.feature_extraction.text import HashingVectorizer

        self.bits = bits
        self._vectoriser = HashingVectorizer(
            n_features=_HASH_FEATURES,
            ngram_range=(1, 2),
            alternate_sign=False,
            norm=None,
            lowercase=True,
            dtype=np.float32,
        )
        rng = np.random.default_rng(_PROJECTION_SEED)
        self._projection = rng.standard_normal((_HASH_FEATURES, bits), dtype=np.float32)
        self._weights = (1 << np.arange(bits, dtype=np.uint64)).astype(np.uint64)

    def __call__(self, texts: list[str]) -> list[int]:
        if not texts:
            return []
        counts = self._vectoriser.transform([t[:PROMPT_CHARS] for t in texts])
        counts.data = np.log1p(counts.data)  # a repeated word should not dominate
        signs = np.asarray(counts @ self._projection) > 0
        packed = (signs.astype(np.uint64) * self._weights).sum(axis=1, dtype=np.uint64)
        return [int(v) for v in packed]


class PromptMemo(Generic[T]):
    """A pure batch function of prompts (one result per prompt, in order) that computes each
    distinct prompt once and remembers the results of the last `size` distinct prompts.

    Four in ten requests of a stream repeat an earlier prompt (retries, templates, scripted
    clients), and SimHash, the reasoning classifier, language detection and skeleton keys each
    cost far more than a lookup. Keyed by the prompt itself, so a result is always exactly what
    `compute` gives that prompt.

    >>> calls = []
    >>> upper = PromptMemo(lambda ps: calls.append(ps) or [p.upper() for p in ps], size=2)
    >>> upper(["a", "b", "a"]), upper(["b", "c"]), calls
    (['A', 'B', 'A'], ['B', 'C'], [['a', 'b'], ['c']])
    """

    def __init__(
        self, compute: Callable[[list[str]], Iterable[T]], size: int = MEMO_PROMPTS
    ) -> None:
        self.compute = compute
        self.size = size
        self._results: OrderedDict[str, T] = OrderedDict()

    def __call__(self, prompts: Sequence[str]) -> list[T]:
        results = self._results
        missing = list(dict.fromkeys(p for p in prompts if p not in results))
        if missing:
            results.update(zip(missing, self.compute(missing), strict=True))
        found = []
        for prompt in prompts:
            results.move_to_end(prompt)
            found.append(results[prompt])
        while len(results) > self.size:
            results.popitem(last=False)
        return found


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def featurize(
    events: list[Event], hasher: Callable[[list[str]], Sequence[int]]
) -> list[EventFeatures]:
    """Cheap features of a batch of events (no neural embedding yet); `hasher`: a `SimHasher`,
    or one behind a `PromptMemo`."""
    prompts = [e.prompt_text[:PROMPT_CHARS] for e in events]
    hashes = hasher(prompts)
    features = []
    for event, prompt, simhash in zip(events, prompts, hashes, strict=True):
        params = event.params
        conversation, continues = conversation_keys(event)
        features.append(
            EventFeatures(
                request_id=event.request_id,
                account_id=event.account_id,
                timestamp_ms=event.timestamp_ms,
                prompt=prompt,
                prompt_key=prompt_key(prompt),
                simhash=simhash,
                temperature=params.temperature,
                max_tokens=params.max_tokens,
                n=params.n or 1,
                logprobs=bool(params.logprobs) or bool(params.top_logprobs),
                followup=event.turn_count > 1,
                ip_prefix=ip_prefix(event.client.ip),
                user_agent=event.client.user_agent or "",
                conversation=conversation,
                continues=continues,
            )
        )
    return features


def unfolded(features: Iterable[EventFeatures]) -> list[EventFeatures]:
    """The requests that are prompts of their own: not a tool loop's folded steps."""
    return [f for f in features if not f.folded]
