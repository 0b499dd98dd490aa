"""Per-prompt language identification, for the language-switching signal.

An account that walks one task set through many languages (harvesting multilingual ability)
changes language from prompt to prompt; benign users mostly keep theirs. Google's CLD2 (through
`pycld2`; its model is compiled into the wheel, so nothing is downloaded) labels ~20,000 prompts/s
on one core, and it says "not reliable" rather than guessing on short or mixed text such as
"continue", which keeps follow-ups from counting as switches. Short texts in a script that names
its language (Hangul, kana, Han, Hebrew, ...) are labelled by the script instead.

>>> detect_languages(["How do I sort a list in Python?",
...                   "Comment puis-je trier une liste en Python, s'il vous plaît ?",
...                   "continue", "계속"])
['en', 'fr', 'und', 'ko']
>>> switch_rate(["en", "und", "fr", "fr", "en"])
0.6666666666666666
"""

from __future__ import annotations

import re

import pycld2

UNDETERMINED = "und"
MAX_CHARS = 2000  # the language of a prompt shows in its first page; longer text only costs time

# Characters CLD2 rejects as invalid UTF-8: C0/C1 controls (except whitespace), noncharacters,
# lone surrogates.
_REJECTED = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufdd0-\ufdef\ufffe\uffff\ud800-\udfff]"
)
# CLD2's legacy or regional codes, reduced to the ISO 639-1 code of the language.
_LEGACY = {"iw": "he", "in": "id", "ji": "yi", "jw": "jv", "mo": "ro"}
# Scripts that name their language, for text too short for CLD2. Han alone reads as Chinese
# unless kana appear (Japanese), which is why kana come first.
_SCRIPTS = (
    ("ko", re.compile("[\uac00-\ud7af\u1100-\u11ff\u3130-\u318f]")),
    ("ja", re.compile("[\u3040-\u30ff]")),
    ("zh", re.compile("[\u4e00-\u9fff\u3400-\u4dbf]")),
    ("he", re.compile("[\u0590-\u05ff]")),
    ("th", re.compile("[\u0e00-\u0e7f]")),
    ("el", re.compile("[\u0370-\u03ff]")),
    ("hy", re.compile("[\u0530-\u058f]")),
    ("ka", re.compile("[\u10a0-\u10ff]")),
)


def _by_script(text: str, min_chars: int = 2) -> str:
    """The language a distinctive script implies, when it makes up most of the letters."""
    letters = sum(ch.isalpha() for ch in text)
    for code, pattern in _SCRIPTS:
        count = len(pattern.findall(text))
        if count >= min_chars and 2 * count >= letters:
            return code
    return UNDETERMINED


def detect_language(prompt: str) -> str:
    """ISO 639-1 code of one prompt's language, or "und" when CLD2 is not confident."""
    text = _REJECTED.sub(" ", prompt[:MAX_CHARS])
    try:
        reliable, _, details = pycld2.detect(text)
    except pycld2.error:  # any input CLD2 still refuses
        return UNDETERMINED
    code = details[0][1].split("-")[0]
    if reliable and code not in ("un", "xx"):
        return _LEGACY.get(code, code)
    return _by_script(text)


def detect_languages(prompts: list[str]) -> list[str]:
    """Language of each prompt (see `detect_language`)."""
    return [detect_language(prompt) for prompt in prompts]


def switch_rate(languages: list[str]) -> float:
    """Fraction of consecutive determined prompts (in order) that change language; 0.0 when
    fewer than two prompts have a determined language."""
    known = [code for code in languages if code != UNDETERMINED]
    if len(known) < 2:
        return 0.0
    changes = sum(a != b for a, b in zip(known, known[1:], strict=False))
    return changes / (len(known) - 1)
