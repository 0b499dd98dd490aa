"""The shape every prompt embedder has, so detectors can take one without loading a model."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

# prompts → unit vectors (one per prompt, same order, as lists or the rows of an array);
# `detectors.embedding.PromptEmbedder` and `StaticEmbedder` are two.
Embedder = Callable[[list[str]], "list[list[float]] | np.ndarray"]
