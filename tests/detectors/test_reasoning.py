"""The reasoning-elicitation classifier, trained for real on benign ShareGPT prompts.

The model under test is trained with `HELD_OUT_FAMILIES` left out, so it is judged on wordings
it never saw, and it never sees the attacker's suffixes or the attack-side prompts. It is cached
in the test cache (`tests/conftest.py`) like the teacher: the first run distils MiniLM word
vectors and trains (about a minute on 2 busy cores), later runs load it.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from detectors.reasoning import (
    HELD_OUT_FAMILIES,
    ReasoningClassifier,
    benign_prompts,
    lexicon_families,
    split_sentences,
)
from students.actors import REASONING_SUFFIXES
from students.prompts import attack_pool
from tests.conftest import MODELS_DIR

pytestmark = pytest.mark.models


@pytest.fixture(scope="module")
def prompts() -> list[str]:
    return benign_prompts()


@pytest.fixture(scope="module")
def model() -> ReasoningClassifier:
    return ReasoningClassifier.load_or_train(MODELS_DIR, exclude_families=HELD_OUT_FAMILIES)


def _uses(prompt: str, families: tuple[str, ...] | None = None) -> bool:
    return any(lexicon_families(sentence, families) for sentence in split_sentences(prompt))


def test_held_out_wordings_are_recognised(model: ReasoningClassifier, prompts: list[str]) -> None:
    held = [p for p in prompts if _uses(p, HELD_OUT_FAMILIES)]
    rng = np.random.default_rng(0)
    others = [p for p in rng.choice(np.array(prompts, dtype=object), 3000) if not _uses(p)]
    held_scores = model.reasoning_probability(held)
    other_scores = model.reasoning_probability(others)
    labels = np.r_[np.zeros(len(other_scores)), np.ones(len(held_scores))]
    # measured: n=27, AUC 0.88, recall 0.52 at 5% FPR (a lexicon would score 0.5 and 0.0)
    assert len(held) >= 20
    assert roc_auc_score(labels, np.r_[other_scores, held_scores]) >= 0.8
    assert (held_scores >= np.quantile(other_scores, 0.95)).mean() >= 0.3


def test_attack_suffixes_separate_from_the_same_prompts(model: ReasoningClassifier) -> None:
    pool = list(attack_pool())
    rng = random.Random(7)
    attacked = [f"{prompt}\n\n{rng.choice(REASONING_SUFFIXES)}" for prompt in pool]
    plain = model.reasoning_probability(pool)
    elicited = model.reasoning_probability(attacked)
    labels = np.r_[np.zeros(len(plain)), np.ones(len(elicited))]
    # measured: AUC 0.996, TPR 1.0, FPR 0.017 (some pool prompts do ask for steps themselves)
    assert roc_auc_score(labels, np.r_[plain, elicited]) >= 0.97
    assert (elicited >= model.threshold_).mean() >= 0.9
    assert (plain >= model.threshold_).mean() <= 0.03


def test_long_prompt_is_read_at_both_ends(model: ReasoningClassifier) -> None:
    long_task = " ".join(["Here is a long report about quarterly sales figures."] * 60)
    scores = model.reasoning_probability([long_task, f"{long_task}\n\nLet's think step by step."])
    assert scores[1] > model.threshold_ > scores[0]


def test_training_is_deterministic_and_cached(
    prompts: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = {"max_negatives": 5000, "random_state": 3}
    first = ReasoningClassifier(**params).fit(prompts[:4000])
    second = ReasoningClassifier(**params).fit(prompts[:4000])
    probe = prompts[4000:4500]
    np.testing.assert_array_equal(
        first.pipeline_[-1].coef_, second.pipeline_[-1].coef_
    )  # same sample, same vectors, same fit
    np.testing.assert_array_equal(first.predict_proba(probe), second.predict_proba(probe))
    assert first.threshold_ == second.threshold_

    path = first.save(tmp_path)
    monkeypatch.setattr(ReasoningClassifier, "fit", lambda *_: pytest.fail("retrained"))
    loaded = ReasoningClassifier.load_or_train(tmp_path, **params)
    assert path.exists() and loaded.get_params() == first.get_params()
    np.testing.assert_array_equal(loaded.predict(probe), first.predict(probe))
    other = ReasoningClassifier(max_negatives=5000, random_state=4)
    assert other.cache_path(tmp_path) != path  # parameters name the file


def test_fit_rejects_labels_and_unknown_families() -> None:
    with pytest.raises(ValueError, match="lexicon"):
        ReasoningClassifier().fit(["a"], y=[1])
    with pytest.raises(ValueError, match="unknown"):
        ReasoningClassifier(exclude_families=("nope",)).fit(["a"])
