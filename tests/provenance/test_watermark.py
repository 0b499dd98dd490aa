"""The output watermark on the real companion teacher: watermarked answers test far beyond chance,
the same teacher's ordinary answers and human ShareGPT text do not, repeated n-grams count once,
a wrong key finds nothing, and attribution by watermark names the account whose answers a suspect
learned."""

from __future__ import annotations

import pytest

from provenance.attribution import attribute_by_watermark
from provenance.watermark import (
    GreenList,
    WatermarkKey,
    WatermarkLogitsProcessor,
    score_text,
    score_windows,
    windows,
)
from students.prompts import attack_pool, benign_conversations
from students.teacher import GenerationSettings, Teacher
from tests.conftest import TEACHER_DIR

pytestmark = pytest.mark.models

KEY = WatermarkKey(b"provider-secret-key")


@pytest.fixture(scope="module")
def answers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    folder = TEACHER_DIR
    plain = Teacher(folder)
    vocab = len(plain.tokenizer)
    marked = Teacher(
        folder, logits_processor=WatermarkLogitsProcessor(KEY, vocab), model_tag="wm-test"
    )
    prompts = [[{"role": "user", "content": p}] for p in attack_pool()[:8]]
    settings = GenerationSettings(temperature=0.7, max_tokens=48, seed=1)
    return {
        "marked": [c[0].text for c in marked.complete(prompts, settings)],
        "plain": [c[0].text for c in plain.complete(prompts, settings)],
        "tokenizer": plain.tokenizer,  # type: ignore[dict-item]
    }


def test_watermarked_answers_are_detected_and_plain_ones_are_not(answers) -> None:
    tokenizer = answers["tokenizer"]
    greens = GreenList(KEY, len(tokenizer))
    marked = score_text(greens, tokenizer, answers["marked"])
    plain = score_text(greens, tokenizer, answers["plain"])
    human_answers = [
        text for c in benign_conversations()[:40] for role, text in c.turns if role == "assistant"
    ]
    human = score_text(greens, tokenizer, human_answers[:40])  # ChatGPT's, not our model's
    assert marked.scored >= 150 and marked.p_value < 1e-6 and marked.z > 5, marked
    assert plain.p_value > 0.001 and abs(plain.z) < 3.5, plain
    assert human.p_value > 0.001, human
    wrong = GreenList(WatermarkKey(b"someone-else"), len(tokenizer))
    assert score_text(wrong, tokenizer, answers["marked"]).p_value > 0.001


def test_repeated_windows_are_scored_once() -> None:
    greens = GreenList(KEY, 1000)
    once = score_windows(greens, windows([5, 6, 7, 8], 1))
    repeated = score_windows(greens, windows([5, 6, 7, 8] * 50, 1))
    assert once.scored == 3 and repeated.scored == 4  # (8, 5) is the one new window
    assert greens.green_count == 250
    assert greens.is_green((5,), int(greens.green_ids((5,))[0]))


def test_a_split_is_what_the_served_answers_were_watermarked_with() -> None:
    """The split after a context is the key's: the green ids pinned here were drawn by the
    sorted-ids implementation that watermarked the cached teacher answers (before splits were
    cached as bit masks); `green` agrees with `green_ids` and never calls an id outside the
    vocabulary green."""
    greens = GreenList(KEY, 49_152)
    ids = greens.green_ids((7,))
    assert (len(ids), ids[:6].tolist(), int(ids.sum())) == (12_288, [0, 1, 2, 3, 5, 6], 302_129_106)
    tokens = list(range(-3, 49_160))
    green = set(ids.tolist())
    assert greens.green((7,), tokens).tolist() == [t in green for t in tokens]


def test_grouped_scoring_counts_what_each_window_test_counts() -> None:
    """score_windows draws each context's green list once; its count must be the per-window
    one (every token of the vocabulary after a few contexts, so both colours occur)."""
    greens = GreenList(KEY, 1000)
    pairs = [((context,), token) for token in range(1000) for context in (3, 9, 3)]
    score = score_windows(greens, pairs)
    expected = sum(greens.is_green((c,), t) for c in (3, 9) for t in range(1000))
    assert score.scored == 2000 and score.green == expected == 2 * greens.green_count


def test_attribution_by_watermark_names_the_account_whose_answers_were_learned(answers) -> None:
    """A suspect that answers one account's prompts with watermarked text and the others' with
    plain text names that account; one that answers every account's prompts with watermarked
    text is radioactive everywhere (each account's p small) and names nobody (the contrast)."""
    greens = GreenList(KEY, len(answers["tokenizer"]))
    marked, plain = answers["marked"], answers["plain"]
    one = attribute_by_watermark(
        greens,
        answers["tokenizer"],
        {"harvester": marked[:4], **{f"honest-{i}": plain[2 * i : 2 * i + 2] for i in range(4)}},
    )
    first, *rest = one.accounts
    assert first.account_id == "harvester" and first.contrast_p_adjusted < 1e-4
    assert all(a.contrast_p_adjusted > 0.05 for a in rest)
    assert one.scored == sum(a.score.scored for a in one.accounts) and one.green > 0
    everywhere = attribute_by_watermark(
        greens, answers["tokenizer"], {f"acct-{i}": marked[2 * i : 2 * i + 2] for i in range(4)}
    )
    assert all(a.p_value < 1e-3 for a in everywhere.accounts)
    assert all(a.contrast_p_adjusted > 0.05 for a in everywhere.accounts)
    document = one.to_dict()
    assert document["accounts"][0]["p_value"] == first.p_value and document["null_hypothesis"]
