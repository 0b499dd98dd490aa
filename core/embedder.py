"""The shape every prompt embedder has, so detectors can take one without loading a model."""

from __future__ import annotations

from collections.abc import Callable

# prompts → unit vectors (one per prompt, same order); `detectors.embedding.PromptEmbedder` is one.
Embedder = Callable[[list[str]], list[list[float]]]
