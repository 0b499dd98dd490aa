"""Keyed green-list watermark for the provider's outputs (Kirchenbauer et al., 2023).

At each generation step the previous `context_width` tokens and the provider's secret key seed a
pseudo-random split of the vocabulary: a `gamma` share is "green" and gets `delta` added to its
logits. Text from the watermarked model holds more green tokens than chance; anyone without the
key sees ordinary text. Detection counts green tokens over (context, token) windows, each window
scored once (repeated n-grams would otherwise inflate the evidence), and gives a z-score and an
exact binomial p-value under the null hypothesis "this text ignores the key".

A provider's serving stack applies it as a logits processor: `WatermarkLogitsProcessor` is a
Hugging Face `LogitsProcessor` (pass it in `logits_processor=` to `generate`, as the companion
teacher does with `Teacher(logits_processor=...)`); any stack that exposes next-token logits can
do the same with `GreenList.green_ids(context)`.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class WatermarkKey:
    secret: bytes
    gamma: float = 0.25  # green share of the vocabulary
    delta: float = 2.0  # logit bonus of green tokens
    context_width: int = 1  # previous tokens that seed each split

    @property
    def key_id(self) -> str:
        """A public name for the key (reports, cache tags); reveals nothing about the secret."""
        digest = hmac.new(self.secret, b"distillguard key id", hashlib.sha256).hexdigest()
        return f"wm-{digest[:12]}-g{self.gamma:g}-d{self.delta:g}-h{self.context_width}"

    @classmethod
    def from_settings(cls, settings) -> WatermarkKey:
        """The serving key from `DG_WATERMARK_KEY` (and its gamma/delta/context settings)."""
        if settings.watermark_key is None:
            raise ValueError("no watermark key: set DG_WATERMARK_KEY (or watermark_key in TOML)")
        return cls(
            settings.watermark_key.get_secret_value().encode(),
            settings.watermark_gamma,
            settings.watermark_delta,
            settings.watermark_context,
        )


@dataclass(frozen=True)
class WatermarkScore:
    scored: int  # distinct (context, token) windows scored
    green: int
    z: float
    p_value: float


class GreenList:
    """The key's green tokens after each context. A split costs one permutation of the
    vocabulary (~0.7 ms for 49k tokens), so splits are cached, each as a bit mask (6 KB for
    49k tokens): 65,536 of them fit in ~400 MB and cover every context of width 1, where a
    suspect's tests meet a few thousand contexts again and again."""

    def __init__(self, key: WatermarkKey, vocab_size: int, cache_size: int = 65_536) -> None:
        self.key = key
        self.vocab_size = vocab_size
        self.green_count = int(key.gamma * vocab_size)
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple[int, ...], np.ndarray] = OrderedDict()

    def _seed(self, context: tuple[int, ...]) -> int:
        message = b"".join(int(t).to_bytes(4, "little", signed=False) for t in context)
        digest = hmac.new(self.key.secret, message, hashlib.sha256).digest()
        return int.from_bytes(digest[:8], "little")

    def _mask(self, context: Sequence[int]) -> np.ndarray:
        """The split after `context`: a packed bit per token, set for green ones (the first
        `green_count` tokens of a permutation seeded by the key and the context)."""
        window = tuple(int(t) for t in context[-self.key.context_width :])
        cached = self._cache.get(window)
        if cached is None:
            rng = np.random.default_rng(self._seed(window))
            green = np.zeros(self.vocab_size, dtype=bool)
            green[rng.permutation(self.vocab_size)[: self.green_count]] = True
            cached = self._cache[window] = np.packbits(green)
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(window)
        return cached

    def green_ids(self, context: Sequence[int]) -> np.ndarray:
        """The green token ids after `context`, sorted."""
        return np.flatnonzero(np.unpackbits(self._mask(context), count=self.vocab_size))

    def green(self, context: Sequence[int], tokens: Sequence[int] | np.ndarray) -> np.ndarray:
        """Whether each of `tokens` is green after `context` (ids outside the vocabulary:
        never)."""
        ids = np.asarray(tokens, dtype=np.int64)
        inside = (ids >= 0) & (ids < self.vocab_size)
        safe = np.where(inside, ids, 0)
        bits = (self._mask(context)[safe >> 3] >> (7 - (safe & 7))) & 1
        return inside & (bits == 1)

    def is_green(self, context: Sequence[int], token: int) -> bool:
        return bool(self.green(context, [token])[0])


class WatermarkLogitsProcessor:
    """Adds `delta` to the green tokens' logits at every step (a Hugging Face LogitsProcessor)."""

    def __init__(self, key: WatermarkKey, vocab_size: int) -> None:
        self.greens = GreenList(key, vocab_size)

    def __call__(self, input_ids, scores):
        import torch

        width = self.greens.key.context_width
        for row in range(scores.shape[0]):
            context = input_ids[row, -width:].tolist()
            ids = torch.from_numpy(self.greens.green_ids(context)).to(scores.device)
            ids = ids[ids < scores.shape[1]]
            scores[row, ids] += self.greens.key.delta
        return scores


def windows(tokens: Sequence[int], width: int) -> Iterable[tuple[tuple[int, ...], int]]:
    """(context, token) for every scoreable position."""
    for index in range(width, len(tokens)):
        yield tuple(int(t) for t in tokens[index - width : index]), int(tokens[index])


def binomial_p_value(green: int, scored: int, gamma: float) -> float:
    """P(X ≥ green) for X ~ Binomial(scored, gamma): exact, no normal approximation."""
    if scored == 0:
        return 1.0
    from scipy.stats import binom

    return float(binom.sf(green - 1, scored, gamma))


def score_windows(
    greens: GreenList,
    pairs: Iterable[tuple[tuple[int, ...], int]],
    seen: set[tuple[int, ...]] | None = None,
) -> WatermarkScore:
    """Green count over (context, token) windows, each distinct window once (across calls too
    when `seen` is shared). Windows are grouped by context, so each context's split is looked
    up once per call, however the windows are ordered."""
    return _score_groups(greens, [_by_context(pairs, set() if seen is None else seen)])[0]


def score_window_sets(
    greens: GreenList, sets: Sequence[Iterable[tuple[tuple[int, ...], int]]]
) -> list[WatermarkScore]:
    """Each set scored as `score_windows` scores it alone, drawing each context's green list
    once for all of them (sets from one suspect share contexts: a clean student's three
    window sets under another key, 26 s drawn set by set, 22 s shared, before splits were
    cached as bit masks)."""
    return _score_groups(greens, [_by_context(pairs, set()) for pairs in sets])


def _by_context(
    pairs: Iterable[tuple[tuple[int, ...], int]], seen: set[tuple[int, ...]]
) -> dict[tuple[int, ...], list[int]]:
    """The tokens after each context, each window not in `seen` once (and added to it)."""
    tokens_after: dict[tuple[int, ...], list[int]] = {}
    for context, token in pairs:
        window = (*context, token)
        if window in seen:
            continue
        seen.add(window)
        tokens_after.setdefault(tuple(context), []).append(token)
    return tokens_after


def _score_groups(
    greens: GreenList, groups: Sequence[dict[tuple[int, ...], list[int]]]
) -> list[WatermarkScore]:
    counts = np.zeros((len(groups), 2), dtype=np.int64)  # scored, green
    for context in set().union(*groups):
        for index, group in enumerate(groups):
            tokens = group.get(context)
            if tokens:
                counts[index] += (len(tokens), int(greens.green(context, tokens).sum()))
    gamma = greens.key.gamma
    scores = []
    for scored, green in counts.tolist():
        z = (green - gamma * scored) / math.sqrt(scored * gamma * (1 - gamma)) if scored else 0.0
        scores.append(WatermarkScore(scored, green, z, binomial_p_value(green, scored, gamma)))
    return scores


def text_windows(tokenizer, texts: Iterable[str], width: int) -> list[tuple[tuple[int, ...], int]]:
    """Every (context, token) window of `texts` under the key's tokenizer, repeats included."""
    return [
        pair
        for text in texts
        for pair in windows(tokenizer(text, add_special_tokens=False)["input_ids"], width)
    ]


def score_text(greens: GreenList, tokenizer, texts: Iterable[str]) -> WatermarkScore:
    """One test over all `texts` (a suspect's outputs, a document), windows de-duplicated."""
    return score_windows(greens, text_windows(tokenizer, texts, greens.key.context_width))
