"""What the fused detector remembers about one account, and its checkpoint form.

>>> window = AccountWindow(deque(maxlen=256), seen=3, deep=True)
>>> restored = AccountWindow.from_state("a", window.to_state(), maxlen=256)
>>> restored.seen, restored.deep, restored.label
(3, True, 'benign')
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.verdicts import Label
from detectors.features import EventFeatures
from detectors.sketches import Lifetime

OPEN_CONVERSATIONS = 64  # recent histories per account that a tool loop may continue


@dataclass
class AccountWindow:
    """An account's recent requests, how many it sent, and where it stands."""

    features: deque[EventFeatures]
    seen: int = 0
    label: Label = "benign"
    embedding_values: dict[str, float] = field(default_factory=dict)
    embeddings_stale: bool = True
    deep: bool = False  # under suspicion: every request embedded, embedding signals computed
    lifetime: Lifetime = field(default_factory=Lifetime)  # the whole history, beyond the window
    # recent requests' message histories that a tool loop may continue (`fold`), oldest first
    conversations: dict[str, None] = field(default_factory=dict)

    def fold(self, request: EventFeatures) -> bool:
        """Whether the request is the next step of a tool loop the account already sent: it
        continues (`EventFeatures.continues`) one of its recent histories, so it is the same
        prompt with the tools' results, not a new one. An honest agent sends several per task
        (on `agent-platform` 36 % of requests), which read as one prompt repeated (honest
        accounts' near-duplicate rate 0.52) and as volume. A history is continued once: a
        harvester that feeds invented tool results to one prompt sends every such request
        after the first as a request of its own."""
        folded = bool(request.continues) and request.continues in self.conversations
        if folded:
            del self.conversations[request.continues]
        if request.conversation:
            self.conversations.pop(request.conversation, None)
            self.conversations[request.conversation] = None
            while len(self.conversations) > OPEN_CONVERSATIONS:
                del self.conversations[next(iter(self.conversations))]
        return folded

    def extend(self, items: list[EventFeatures], centroids: np.ndarray | None) -> None:
        """Append requests; the lifetime sketch absorbs them, and the topics (nearest benign
        centroid) of embedded requests the window is about to drop."""
        overflow = len(self.features) + len(items) - (self.features.maxlen or 10**9)
        leaving = [self.features[i] for i in range(max(0, min(overflow, len(self.features))))]
        embedded = [f.embedding for f in leaving if f.embedding is not None]
        topics = (
            np.argmax(np.stack(embedded) @ centroids.T, axis=1).tolist()
            if embedded and centroids is not None and len(centroids)
            else []
        )
        self.lifetime.add((f.prompt_key for f in items), (f.timestamp_ms for f in items), topics)
        self.features.extend(items)
        self.seen += len(items)

    def embedded_count(self) -> int:
        return sum(1 for f in self.features if f.embedding is not None)

    def to_state(self) -> dict[str, Any]:
        """JSON for `account_state` (the embedding signals are recomputed after a restore)."""
        return {
            "seen": self.seen,
            "label": self.label,
            "deep": self.deep,
            "lifetime": self.lifetime.to_state(),
            "window": [f.to_state() for f in self.features],
            "conversations": list(self.conversations),
        }

    @classmethod
    def from_state(cls, account_id: str, state: dict[str, Any], maxlen: int) -> AccountWindow:
        return cls(
            deque(
                (EventFeatures.from_state(account_id, s) for s in state.get("window", [])),
                maxlen=maxlen,
            ),
            seen=int(state.get("seen", 0)),
            label=state.get("label", "benign"),
            deep=bool(state.get("deep", False)),
            lifetime=Lifetime.from_state(state.get("lifetime")),
            conversations=dict.fromkeys(state.get("conversations", [])),  # older states: none
        )
