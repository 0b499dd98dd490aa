"""Reasoning-trace elicitation: how likely a prompt asks the model to show its reasoning.

Distillers harvest chains of thought ("Let's think step by step", "show your work") because a
student learns more from traces than from answers. Benign users ask for reasoning too, so this
is a per-prompt probability that the account-level signal aggregates, not a verdict.

Training data is public and real: the sentences of ShareGPT user prompts (benign side only).
They are weakly labelled by `LEXICON`, families of reasoning-request phrasings from the
chain-of-thought literature and from exam instructions. A lexicon alone only finds its own
wordings, so the classifier reads static MiniLM word vectors instead of the words: each token
the training vocabulary uses is passed once through the pip-packaged MiniLM (Model2Vec-style
distillation), a sentence is the TF-IDF-weighted mean of its words' vectors, and a logistic
regression over that 384-d vector scores "justify your answer" like "explain your reasoning" even
when the lexicon lacks one of them. A prompt scores as its most reasoning-seeking sentence.
Inference is a TF-IDF transform, one sparse-dense product and a dot product, no neural network:
~14,000 prompts/s on 2 busy cores, so it runs on every event.

The threshold comes from benign prompts the lexicon does not match, at `target_fpr`.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Self

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.utils.validation import check_is_fitted

from core.files import write_atomically
from detectors.embedding import distil_token_vectors, minilm

VERSION = "reasoning-1"
DEFAULT_CACHE_DIR = Path(".distillguard/models")

_ASK = (
    r"(?:explain|describe|share|give|provide|outline|detail|tell me|show|include|write out|"
    r"present|state|lay out|spell out)"
)
# Families of reasoning-request wordings, labelled by what they ask for. Sources: zero-shot CoT
# ("Let's think step by step", Kojima et al. 2022), chain of thought (Wei et al. 2022),
# scratchpads (Nye et al. 2021), and exam/homework instructions ("show your work", "justify
# your answer"). Each is written to match requests, not the topic ("justify-content" is CSS).
LEXICON: dict[str, str] = {
    "step_by_step": r"\bstep[\s-]*by[\s-]*step\b|\bstepwise\b",
    "show_work": (
        r"\bshow (?:me )?(?:your |all |the |all the |all of your |every |each )?"
        r"(?:work|working|workings|steps|calculations?|math)\b"
        r"(?! (?:breakdown|structure|flow|items?|schedule))"
    ),
    "reasoning_request": (
        _ASK + r"\b[^.?!\n]{0,40}\b(?:reasoning|rationale|thought process|thinking process|"
        r"line of thought|logic behind)\b"
    ),
    "walk_through": r"\bwalk (?:me|us) through\b",
    "think_through": r"\b(?:think|reason) (?:it |this |that )?(?:through|carefully|aloud|"
    r"out loud|hard|logically)\b",
    "justify": (
        r"\bjustify (?:your|each|every|all|the) (?:answers?|choices?|responses?|reasoning|"
        r"decisions?|claims?|selections?|recommendations?|positions?|thinking|reasons?|"
        r"solutions?)\b|\b(?:with|provide|give|include)\w* (?:a |your |the |brief |clear )?"
        r"justifications?\b"
    ),
    "derivation": (
        r"\b(?:show|give|provide|write|explain)\w* (?:me )?(?:the |a |your )?derivation\b|"
        r"\bderive (?:the|an?|this|that) (?:formula|equation|expression|result|identity|bound|"
        r"relation|solution|proof|value)s?\b"
    ),
    "chain_of_thought": r"\bchain[\s-]of[\s-]thoughts?\b|\bscratch ?pad\b",
    "how_arrived": (
        r"\bhow (?:did )?(?:you|you've|we) (?:got|get|arrive|arrived|came|come|reach|reached) "
        r"(?:to|at)\b"
    ),
    "each_step": (
        r"\b(?:explain|show|write out|go through|detail|justify)\w* (?:each|every) steps?\b|"
        r"\bintermediate steps?\b"
    ),
    "lets_think": (
        r"\blet'?s (?:think|reason) (?:step|carefully|logically|it through|this through|"
        r"through)\b|\blet'?s work (?:it|this) out\b"
    ),
    "explain_answer": (
        r"\bexplain (?:your|the|each|every) (?:answers?|choices?|solutions?|decisions?|"
        r"calculations?)\b"
    ),
    "with_reasoning": (
        r"\b(?:with|including|along with|and) (?:your |the |detailed |full |clear |brief )*"
        r"(?:reasoning|rationale)\b"
    ),
    "work_out": r"\bwork (?:it|this|that) out\b|\breason (?:it|this) out\b",
    "break_down": (
        r"\bbreak down (?:your|the) (?:reasoning|solution|calculation|logic|steps|thinking)\b"
    ),
    "explain_why": (
        r"\bexplain why (?:you|your|this is|that is|it is)\b|\b(?:and|then) explain why\b"
    ),
    "worked_solution": (
        r"\b(?:detailed|worked|full|complete|step) (?:solutions?|working|workings)\b"
    ),
    "show_how": r"\bshow (?:me )?how (?:you|to) (?:solve|calculate|compute|derive|got|get|arrive)",
}
# Families the generalisation check keeps out of training entirely (tests, reports).
HELD_OUT_FAMILIES = ("justify", "walk_through", "how_arrived", "explain_answer")

_PATTERNS = {name: re.compile(pattern, re.IGNORECASE) for name, pattern in LEXICON.items()}
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+|\n+")
EDGE_CHARS = 1000  # of a long prompt, read the start and the end: where instructions sit


def split_sentences(prompt: str, edge_chars: int = EDGE_CHARS) -> list[str]:
    """Sentences (and lines) of a prompt; never empty, so every prompt gets a score. A prompt
    longer than two edges is read at both ends, where a request such as an appended "think
    step by step" sits, instead of being cut after its first page."""
    if len(prompt) > 2 * edge_chars:
        prompt = f"{prompt[:edge_chars]}\n{prompt[-edge_chars:]}"
    return [s for s in (part.strip() for part in _SENTENCE_END.split(prompt)) if s] or [""]


def lexicon_families(text: str, families: Iterable[str] | None = None) -> set[str]:
    """The lexicon families whose wording occurs in `text`."""
    names = LEXICON if families is None else families
    return {name for name in names if _PATTERNS[name].search(text)}


def _flatten(prompts: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """All sentences, and where each prompt's sentences start (for `np.maximum.reduceat`)."""
    sentences: list[str] = []
    starts = np.empty(len(prompts), dtype=np.int64)
    for index, prompt in enumerate(prompts):
        starts[index] = len(sentences)
        sentences.extend(split_sentences(prompt))
    return sentences, starts


def distil_word_vectors(words: Sequence[str]) -> np.ndarray:
    """A static vector per word: the mean of its MiniLM tokens' static vectors."""
    pieces = minilm().tokenizer(list(words), add_special_tokens=False)["input_ids"]
    vocabulary = sorted({token for ids in pieces for token in ids})
    table = distil_token_vectors(vocabulary)
    rows = {token: row for row, token in enumerate(vocabulary)}
    vectors = np.zeros((len(words), table.shape[1]), dtype=np.float32)
    for index, ids in enumerate(pieces):
        if ids:
            vectors[index] = table[[rows[token] for token in ids]].mean(axis=0)
    return vectors


class StaticWordEmbedding(TransformerMixin, BaseEstimator):
    """Text → unit vector: TF-IDF-weighted mean of distilled MiniLM word vectors.

    The semantic reach of MiniLM at the cost of a TF-IDF transform: no network runs at
    inference, only a sparse (texts × words) by dense (words × 384) product.
    """

    def __init__(self, min_df: int = 2, max_features: int | None = None) -> None:
        self.min_df = min_df
        self.max_features = max_features

    def fit(self, X: Sequence[str], y: object = None) -> Self:
        self.vectorizer_ = TfidfVectorizer(
            min_df=self.min_df,
            max_features=self.max_features,
            sublinear_tf=True,
            dtype=np.float32,
        ).fit(X)
        self.word_vectors_ = distil_word_vectors(self.vectorizer_.get_feature_names_out())
        return self

    def transform(self, X: Sequence[str]) -> np.ndarray:
        check_is_fitted(self, "word_vectors_")
        vectors = np.asarray(self.vectorizer_.transform(X) @ self.word_vectors_)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        # sklearn's `normalize` without its input checks, which cost ~4 % of a worker's time
        return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)


class ReasoningClassifier(ClassifierMixin, BaseEstimator):
    """P(a prompt asks the model to show its reasoning), trained from weakly labelled prompts.

    `fit(prompts)` labels each sentence with the lexicon (minus `exclude_families`, whose
    prompts are left out of training altogether so they can test generalisation), fits on a
    seeded sample, and sets `threshold_` on a validation split of unmatched prompts.

    >>> clf = ReasoningClassifier.load_or_train()  # doctest: +SKIP
    >>> prompts = ["What is 17 * 23?", "What is 17 * 23? Show your reasoning."]
    >>> clf.reasoning_probability(prompts).round(2)  # doctest: +SKIP
    array([0., 1.])
    """

    def __init__(
        self,
        exclude_families: tuple[str, ...] = (),
        max_negatives: int = 60_000,
        C: float = 1.0,
        target_fpr: float = 0.01,
        validation_fraction: float = 0.2,
        balance_families: bool = True,
        random_state: int = 20261128,
    ) -> None:
        self.exclude_families = exclude_families
        self.max_negatives = max_negatives
        self.C = C
        self.target_fpr = target_fpr
        self.validation_fraction = validation_fraction
        self.balance_families = balance_families
        self.random_state = random_state

    def fit(self, X: Sequence[str], y: None = None) -> Self:
        """Fit on prompts; labels come from the lexicon, so `y` must be None."""
        if y is not None:
            raise ValueError("labels come from the lexicon: call fit(prompts)")
        unknown = set(self.exclude_families) - LEXICON.keys()
        if unknown:
            raise ValueError(f"unknown lexicon families: {sorted(unknown)}")
        rng = np.random.default_rng(self.random_state)
        validation = rng.random(len(X)) < self.validation_fraction
        sentences: list[str] = []
        found_families: list[set[str]] = []
        unmatched_validation: list[str] = []
        for prompt, held in zip(X, validation, strict=True):
            parts = split_sentences(prompt)
            found = [lexicon_families(part) for part in parts]
            if any(names & set(self.exclude_families) for names in found):
                continue  # the excluded wordings are seen neither as positives nor negatives
            if held:
                if not any(found):
                    unmatched_validation.append(prompt)
                continue
            sentences.extend(parts)
            found_families.extend(found)
        target = np.array([bool(names) for names in found_families])
        negatives = np.flatnonzero(~target)
        if len(negatives) > self.max_negatives:
            negatives = rng.choice(negatives, self.max_negatives, replace=False)
        chosen = np.sort(np.concatenate([np.flatnonzero(target), negatives]))
        weights = self._sample_weights([found_families[i] for i in chosen])
        self.pipeline_: Pipeline = make_pipeline(
            StaticWordEmbedding(),
            LogisticRegression(C=self.C, max_iter=3000),
        ).fit(
            [sentences[i] for i in chosen],
            target[chosen],
            logisticregression__sample_weight=weights,
        )
        self.classes_ = np.array([0, 1])
        self.threshold_ = float(
            np.quantile(self.reasoning_probability(unmatched_validation), 1 - self.target_fpr)
        )
        self.training_summary_ = {
            "prompts": len(X),
            "sentences": len(chosen),
            "positive_sentences": int(target[chosen].sum()),
            "validation_prompts": len(unmatched_validation),
            "vocabulary": len(self.pipeline_[0].word_vectors_),
        }
        return self

    def _sample_weights(self, families: list[set[str]]) -> np.ndarray:
        """Both classes weigh the same in total and, with `balance_families`, so does every
        lexicon family within the positives: "step by step" is most of ShareGPT's reasoning
        requests, and a model that learns only it would not reach other wordings."""
        positive = np.array([bool(names) for names in families])
        counts = Counter(name for names in families for name in names)
        weights = np.full(len(families), 0.5 / max(1, (~positive).sum()))
        for index in np.flatnonzero(positive):
            if self.balance_families:
                shares = [1 / (counts[name] * len(counts)) for name in families[index]]
                weights[index] = 0.5 * float(np.mean(shares))
            else:
                weights[index] = 0.5 / positive.sum()
        return weights * len(families)  # mean weight near 1, so `C` keeps its usual scale

    def reasoning_probability(self, X: Sequence[str]) -> np.ndarray:
        """P(reasoning request) per prompt: that of its most reasoning-seeking sentence."""
        check_is_fitted(self, "pipeline_")
        if not len(X):
            return np.zeros(0)
        sentences, starts = _flatten(X)
        return np.maximum.reduceat(self.pipeline_.predict_proba(sentences)[:, 1], starts)

    def predict_proba(self, X: Sequence[str]) -> np.ndarray:
        positive = self.reasoning_probability(X)
        return np.column_stack([1 - positive, positive])

    def predict(self, X: Sequence[str]) -> np.ndarray:
        return (self.reasoning_probability(X) >= self.threshold_).astype(int)

    def cache_path(self, cache_dir: Path) -> Path:
        """Where this configuration's fitted model lives: the name changes with the lexicon,
        the parameters and the scikit-learn version, so a stale model is never loaded."""
        import sklearn

        fingerprint = repr(
            (VERSION, LEXICON, sorted(self.get_params().items()), sklearn.__version__)
        )
        digest = hashlib.blake2b(fingerprint.encode(), digest_size=6).hexdigest()
        return cache_dir / f"{VERSION}-{digest}.joblib"

    def save(self, cache_dir: Path) -> Path:
        import joblib

        return write_atomically(
            self.cache_path(cache_dir), lambda partial: joblib.dump(self, partial)
        )

    @classmethod
    def load_or_train(cls, cache_dir: Path = DEFAULT_CACHE_DIR, **params: object) -> Self:
        """The fitted model from `cache_dir`, trained on benign ShareGPT prompts if absent."""
        import joblib

        model = cls(**params)
        path = model.cache_path(Path(cache_dir))
        if path.exists():
            return joblib.load(path)
        model.fit(benign_prompts())
        model.save(Path(cache_dir))
        return model


def benign_prompts() -> list[str]:
    """User prompts of the benign side of ShareGPT (attack pools never train the model)."""
    from detectors.corpus import benign_conversations

    return [
        prompt for conversation in benign_conversations() for prompt in conversation.user_prompts
    ]
