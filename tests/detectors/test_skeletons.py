"""Template skeletons: `mask` skips a pattern when the text cannot hold a match, and writes its
title pattern as runs of a character class; both are speed only, so the masks must be those of
every pattern applied in full, in order, as first written."""

from __future__ import annotations

import random
import re

import pytest

from detectors.campaigns.skeletons import mask, skeleton_keys

# The patterns as first written, applied to every text unconditionally: what `mask` means.
_WORD = r"(?:[\w'’+#-]|\.(?=\w))*"
_JOIN = r"(?:of|the|a|an|and|in|on|for|to|with|at|by|from|or|de|la|le|von|van|der|vs\.?|&|-|–)"
REFERENCE = (
    (re.compile(r"```.*?(?:```|$)", re.S), "⟨code⟩"),
    (re.compile(r"\b(?:https?://|www\.)\S+|\b[\w.+-]+@[\w-]+\.[\w.]+"), "⟨u⟩"),
    (re.compile(r"`[^`\n]{1,200}`"), "⟨c⟩"),
    (re.compile(r"\"[^\"\n]{1,200}\"|“[^”\n]{1,200}”|(?<!\w)'[^'\n]{1,200}'(?!\w)"), "⟨q⟩"),
    (re.compile(r"\b(?:[A-Za-z]+_\w+|[a-z]+[A-Z]\w*|\w+\(\))"), "⟨i⟩"),
    (re.compile(r"[$€£]?\d(?:[\d,._:/]*\d)?%?"), "⟨n⟩"),
    (re.compile(rf"\b[A-Z]{_WORD}(?:\s+(?:{_JOIN}\s+)*[A-Z0-9]{_WORD})*"), "⟨T⟩"),
    (re.compile(r"[ \t]{2,}|\t"), " "),
)

PIECES = (
    "foo_bar", "fooBar", "getX", "len()", "run_it()", "U.S.", "A..b", "v2.0", "Ab.-c", "D.e",
    "New York", "of the", "Bank of the West", "iPhone", "x", "lower words", "\t", "  ", "   ",
    "`tick`", "```py\ncode\n```", '"quoted"', "“curly”", "'single'", "don't", "http://a.b/c",
    "www.example.org", "me@example.com", "12,345.6%", "$5", "3:45", "’", "-", "#1", "C++",
    "\n", ".", "?", "Árbol", "naïve", "ÉCOLE", "_", "()", "a()", "Stony Brook University",
)  # fmt: skip


def reference_mask(text: str) -> str:
    for pattern, placeholder in REFERENCE:
        text = pattern.sub(placeholder, text)
    return text.strip()


def texts(count: int, seed: int = 20261206) -> list[str]:
    rng = random.Random(seed)
    return [
        rng.choice(("", " ", "\n")).join(rng.choices(PIECES, k=rng.randint(1, 12)))
        for _ in range(count)
    ]


@pytest.mark.parametrize("text", [*PIECES, "Implement two_sum() in Python and fooBar it."])
def test_each_piece_masks_as_every_pattern_in_full_would(text: str) -> None:
    assert mask(text) == reference_mask(text)


def test_mixed_texts_mask_as_every_pattern_in_full_would() -> None:
    different = [t for t in texts(3000) if mask(t) != reference_mask(t)]
    assert different == []


def test_the_shortcuts_are_taken_and_change_nothing_they_skip() -> None:
    """Texts with no underscore, no "()" and no camel case, no double blank: the skipped
    patterns would have left them as they are."""
    plain = "Write a comprehensive overview of Stony Brook University: key facts."
    assert mask(plain) == reference_mask(plain) == "⟨T⟩ a comprehensive overview of ⟨T⟩: key facts."
    assert skeleton_keys(plain) == skeleton_keys(plain.replace("Stony Brook", "Bank of the"))
