"""MiniLM prompt vectors cached on disk, shared by the detection benchmark (`bench.detection`)
and `distillguard validate`, which read the same scenario's prompts: a run after the other
embeds nothing."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import numpy as np

from core.files import write_atomically
from core.hashing import prompt_key
from core.settings import Settings

T = TypeVar("T")


class CachedEmbedder:
    """MiniLM (`PromptEmbedder`, truncated at `max_seq_length` tokens) behind a disk cache keyed
    by prompt hash, so vectors survive between benchmark runs (MiniLM embeds ~70 prompts/s on
    this CPU). The model is loaded only when a prompt is missing; `misses` counts the prompts it
    had to embed. The vectors are the model's own, so a detector reading them decides exactly
    as with the model; only its events/s would be wrong, which is why the timed runs use the
    model itself (`make_detector(..., timed=True)`)."""

    identity = "minilm"  # the model's own vectors (`PromptEmbedder.identity`)

    def __init__(self, path: Path, max_seq_length: int = 256) -> None:
        self.path = path
        self.max_seq_length = max_seq_length
        self.misses = 0
        self._model = None
        # Read from disk on first use: a run whose detector embeds with the static table holds
        # a cache it never reads (`with_cached_vectors`), and the file is ~90 MB.
        self._vectors: dict[str, np.ndarray] | None = None
        self._saved = 0

    def _stored(self) -> dict[str, np.ndarray]:
        if self._vectors is None:
            self._vectors = {}
            if self.path.exists():
                with np.load(self.path) as stored:
                    keys = stored["keys"].tolist()
                    self._vectors = dict(zip(keys, stored["vectors"], strict=True))
            self._saved = len(self._vectors)
        return self._vectors

    def __call__(self, prompts: list[str]) -> list[np.ndarray]:
        stored = self._stored()
        keys = [prompt_key(p) for p in prompts]
        missing = {k: p for k, p in zip(keys, prompts, strict=True) if k not in stored}
        if missing:
            if self._model is None:
                from detectors.embedding import PromptEmbedder

                self._model = PromptEmbedder(max_seq_length=self.max_seq_length)
            vectors = np.asarray(self._model(list(missing.values())), dtype=np.float32)
            stored.update(zip(missing, vectors, strict=True))
            self.misses += len(missing)
        return [stored[k] for k in keys]

    def save(self) -> None:
        if self._vectors is None or len(self._vectors) == self._saved:
            return  # never read, or nothing new
        keys, vectors = np.array(list(self._vectors)), np.stack([*self._vectors.values()])
        write_atomically(self.path, lambda partial: np.savez(partial, keys=keys, vectors=vectors))
        self._saved = len(self._vectors)


def cached_embedder(cache: Path, settings: Settings | None = None) -> CachedEmbedder:
    """The benchmark's MiniLM vectors, at the truncation a deployment uses
    (`Settings.embedding_max_tokens`), for ours and the baselines alike."""
    tokens = (settings or Settings()).embedding_max_tokens
    return CachedEmbedder(cache / f"embeddings-minilm-{tokens}.npz", max_seq_length=tokens)


def with_cached_vectors(detector: T, embedder: CachedEmbedder) -> T:
    """The detector reading `embedder`'s cached MiniLM vectors (the model's own) when it embeds
    with MiniLM; a detector with another embedder (the static table, which needs no cache) or
    none keeps its own."""
    own = getattr(detector, "embedder", None)
    if getattr(own, "identity", None) == embedder.identity:
        detector.embedder = embedder  # type: ignore[attr-defined]
    return detector
